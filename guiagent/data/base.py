"""What every dataset reader shares: skip-and-count of corrupt records, split files, image helpers.

A reader is a generator function ``read_<dataset>(src, *, skips, ...)`` yielding one converted unit at a
time — ``(Trajectory, images)`` for multi-step datasets or ``(sample, images)`` for grounding
datasets, where ``images`` maps store-relative paths to encoded image bytes. Readers never hold more
than one episode in memory.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guiagent.errors import ActionError, DataError
from guiagent.types import Action

MAX_KEPT_ERRORS = 20


@dataclass
class Skips:
    """Decides what a corrupt record does: raise (default) or get skipped and counted.

    Attributes:
        skip_invalid: Skip corrupt records instead of raising.
        count: How many were skipped.
        errors: The first ``MAX_KEPT_ERRORS`` skipped errors' messages, for the report.
    """

    skip_invalid: bool = False
    count: int = 0
    errors: list[str] = field(default_factory=list)

    def __call__(self, error: DataError) -> None:
        """Raise ``error``, or count it when skipping."""
        if not self.skip_invalid:
            raise error
        self.count += 1
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(str(error))


# What a malformed JSON record raises while a reader converts it.
RECORD_ERRORS = (DataError, ValueError, KeyError, TypeError, IndexError, OSError)


def record_error(exc: Exception, file: str | os.PathLike, record: str | int) -> DataError:
    """``exc`` (one of ``RECORD_ERRORS``) as a DataError naming the file and record."""
    message = str(exc) if isinstance(exc, (DataError, ValueError)) else f"{type(exc).__name__}: {exc}"
    return DataError(message, file=str(file), record=record)


def load_split(split_file: str | os.PathLike | None, split: str | None) -> set[str] | None:
    """Episode ids of one split from a split JSON ``{split name: [episode ids]}``; None without a split.

    This is the layout of AITW's official split files, AndroidControl's ``splits.json`` and
    GUI-Odyssey's ``splits/*.json``. Ids are compared as strings; GUI-Odyssey's ``.json`` suffixes
    are dropped.

    Raises:
        ValueError: only one of ``split_file`` and ``split`` is given.
        DataError: the file is unreadable, not that layout, or has no such split (lists the ones it has).
    """
    if (split_file is None) != (split is None):
        raise ValueError("split_file and split go together")
    if split_file is None:
        return None
    path = str(split_file)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise DataError(f"unreadable split file: {exc}", file=path) from None
    if not isinstance(data, dict):
        raise DataError("a split file must map split names to lists of episode ids", file=path)
    if split not in data:
        raise DataError(f"no split {split!r}; the file has {sorted(data)}", file=path)
    ids = data[split]
    if not isinstance(ids, list):
        raise DataError(f"split {split!r} is not a list of episode ids", file=path)
    return {str(i).removesuffix(".json") for i in ids}


def list_files(src: str | os.PathLike, suffixes: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> list[Path]:
    """``src`` itself if it is a file, else the files under it (recursively, sorted), filtered by suffix.

    Raises:
        DataError: nothing matches.
    """
    root = Path(src)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DataError("no such file or directory", file=str(root))
    files = sorted(
        p for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".")
        and (not suffixes or p.name.endswith(suffixes)) and not p.name.endswith(exclude)
    )
    if not files:
        raise DataError(f"no data files{' (' + ', '.join(suffixes) + ')' if suffixes else ''} found", file=str(root))
    return files


def image_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of encoded image bytes, read from the header only."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.size


def canonical_action(converter: Callable[..., Action], *args: Any, **kwargs: Any) -> Action | None:
    """``converter(*args, **kwargs)`` (a dataset converter of :mod:`guiagent.actions.convert`, e.g.
    ``from_aitw``), or None when the action cannot be expressed canonically (the converter raises
    ``ActionError``); the raw fields stay in ``step.info`` either way.
    """
    try:
        return converter(*args, **kwargs)
    except ActionError:
        return None


def read_json(path: str | os.PathLike) -> Any:
    """Load one JSON file, with a DataError naming it on failure."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise DataError(f"unreadable JSON: {exc}", file=str(path)) from None
