"""Image encoding shared by the devices and the dataset readers (low level: imports Pillow only, lazily)."""

from __future__ import annotations

import io
from typing import Any


def encode_png(image: Any) -> bytes:
    """A PIL image as PNG bytes.

    compress_level 1: screenshots dominate conversion time; level 6 is ~3x slower for ~10% smaller files
    (flat-colour screens compress almost as well at 1).
    """
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


__all__ = ["encode_png"]
