"""Coordinate mapping between device pixels and a model's image space.

Qwen2.5-VL sees the screenshot after ``qwen_vl_utils.smart_resize`` and answers in absolute pixels of
that resized image; Qwen3-VL answers in coordinates relative to 1000 (see :mod:`guiagent.actions.formats`).
Everything inside guiagent stays in device pixels; :class:`ModelGeometry` is the one place that knows
how a given screenshot was resized.
"""

from __future__ import annotations

from dataclasses import dataclass

from guiagent.types import Point

QWEN25VL_FACTOR = 28  # patch 14 x spatial merge 2
QWEN3VL_FACTOR = 32  # patch 16 x spatial merge 2


@dataclass(frozen=True)
class ModelGeometry:
    """How one screenshot maps onto the model's image.

    Attributes:
        width: Screenshot width in device pixels.
        height: Screenshot height in device pixels.
        resized_width: Width of the image the model sees (model pixels).
        resized_height: Height of the image the model sees (model pixels).
    """

    width: int
    height: int
    resized_width: int
    resized_height: int

    def __post_init__(self) -> None:
        for name in ("width", "height", "resized_width", "resized_height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelGeometry.{name} must be a positive integer, got {value!r}")

    @property
    def scale(self) -> tuple[float, float]:
        """Device pixels per model pixel, ``(sx, sy)``."""
        return self.width / self.resized_width, self.height / self.resized_height

    def to_model(self, point: Point) -> tuple[float, float]:
        """Device pixels ``(x, y)`` -> model-image pixels (unrounded)."""
        return point[0] * self.resized_width / self.width, point[1] * self.resized_height / self.height

    def to_device(self, point: Point) -> tuple[float, float]:
        """Model-image pixels ``(x, y)`` -> device pixels."""
        return point[0] * self.width / self.resized_width, point[1] * self.height / self.resized_height

    def on_screen(self, point: Point) -> bool:
        """True if a device point lies on the screenshot: ``0 <= x < width`` and ``0 <= y < height``."""
        return 0 <= point[0] < self.width and 0 <= point[1] < self.height


def check_resize_bounds(factor: int, min_pixels: int | None, max_pixels: int | None) -> None:
    """Refuse resize bounds no image can meet: ``smart_resize`` would assert, or resize to zero pixels.

    Raises:
        ValueError: naming the bound that is wrong.
    """
    for name, value in (("factor", factor), ("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if value is not None and not value > 0:  # NaN included
            raise ValueError(f"{name} must be positive, got {value!r}")
    if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
        raise ValueError(f"min_pixels {min_pixels} is above max_pixels {max_pixels}")
    if max_pixels is not None and factor * factor > max_pixels:
        raise ValueError(f"max_pixels {max_pixels} is below one {factor}x{factor} patch (factor {factor})")


def model_geometry(
    width: int,
    height: int,
    *,
    factor: int = QWEN25VL_FACTOR,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> ModelGeometry:
    """The geometry Qwen-VL's processor gives a ``width`` x ``height`` screenshot.

    Calls ``qwen_vl_utils.smart_resize`` (note: it takes height first) so that our coordinates always
    agree with the image the model actually saw.

    Args:
        width: Screenshot width in device pixels.
        height: Screenshot height in device pixels.
        factor: 28 for Qwen2.5-VL, 32 for Qwen3-VL.
        min_pixels: Lower bound on resized area; None uses qwen_vl_utils' default for ``factor``.
        max_pixels: Upper bound on resized area; None uses qwen_vl_utils' default for ``factor``.

    Returns:
        The geometry, with ``resized_width``/``resized_height`` multiples of ``factor``.

    Raises:
        ValueError: a size or bound is not positive, the bounds contradict each other
            (:func:`check_resize_bounds`), or the aspect ratio is beyond what ``smart_resize`` accepts (200).
    """
    from qwen_vl_utils import smart_resize

    for name, value in (("width", width), ("height", height)):
        if not value > 0:  # NaN included
            raise ValueError(f"{name} must be positive, got {value!r}")
    check_resize_bounds(factor, min_pixels, max_pixels)
    try:
        resized_height, resized_width = smart_resize(
            height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels
        )
    except AssertionError as exc:  # it asserts min_pixels <= max_pixels after filling in its default for one
        raise ValueError(f"{exc} (min_pixels {min_pixels}, max_pixels {max_pixels}, factor {factor})") from None
    return ModelGeometry(int(width), int(height), int(resized_width), int(resized_height))
