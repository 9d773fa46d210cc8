"""The one gesture rule: how a canonical SCROLL is performed, on a touch screen and with a mouse wheel.

A SCROLL names the direction the *view* moves (see :class:`~guiagent.types.Direction`). Everything that
turns it into a device gesture calls this module — the dataset converters (:mod:`guiagent.actions.convert`),
the model formats (:mod:`guiagent.actions.formats`) and every env — so the swipe a model is trained to
emit for a scroll is the swipe the device performs.

Touch (:func:`scroll_stroke`): one finger stroke, in whole device pixels.

* **Anchor**: the finger goes down on the anchor (default: the screen centre), as android_world's
  ``actuation.py`` starts its scroll at the centre of the target. The view under the touch-down point
  is the one that scrolls, so the anchor names the list to scroll.
* **Travel**: ``amount`` pixels, or :data:`SCROLL_TRAVEL` of the screen side along the scroll axis
  (None or 0). From the centre that stops short of the system gesture edges and is far longer than
  AITW's tap distance (0.04) or Android's touch slop.
* **Sign**: the finger moves against the view: scrolling down moves the finger up.
* **Clamp**: both ends lie on the screen, ``0 <= x <= width - 1`` and ``0 <= y <= height - 1``.

Example (1080 x 2400, no anchor, no amount): scroll down is ``(540, 1200) -> (540, 480)``, scroll up
``(540, 1200) -> (540, 1920)``, scroll right ``(540, 1200) -> (216, 1200)``, scroll left
``(540, 1200) -> (864, 1200)``.

Mouse wheel (:func:`wheel_delta`, :func:`wheel_scroll`): pyautogui's signs, which OSWorld's
``pyautogui`` and ``computer_13`` actions and Qwen's ``computer_use`` ``pixels`` share: ``dy > 0`` scrolls
up, ``dx > 0`` scrolls right; a SCROLL without an amount turns the wheel :data:`DEFAULT_WHEEL_CLICKS`.
"""

from __future__ import annotations

import math

from guiagent.errors import ActionError
from guiagent.types import Direction, Point

SCROLL_TRAVEL = 0.3  # finger travel of a SCROLL without amount, as a fraction of the screen side
DEFAULT_WHEEL_CLICKS = 5  # wheel clicks of a SCROLL without amount

PixelPoint = tuple[int, int]


def _magnitude(amount: float | None) -> float | None:
    """``amount`` as a positive magnitude; None for "the default" (None or 0)."""
    if not amount:
        return None
    if not math.isfinite(amount) or amount < 0:
        raise ActionError(f"a scroll amount is a magnitude (the direction carries the sign), got {amount!r}")
    return amount


def scroll_stroke(
    direction: Direction | str,
    size: tuple[int, int],
    anchor: Point | None = None,
    amount: float | None = None,
) -> tuple[PixelPoint, PixelPoint]:
    """The finger stroke that scrolls the view in ``direction`` on a touch screen.

    Args:
        direction: Where the view moves ("down" reveals content below; the finger moves up).
        size: ``(width, height)`` of the screen, device pixels.
        anchor: Where the finger goes down (default: the screen centre).
        amount: Finger travel in pixels; None or 0 means :data:`SCROLL_TRAVEL` of the screen side.

    Returns:
        ``((x1, y1), (x2, y2))``: finger down and finger up, integer device pixels on the screen.

    Raises:
        ActionError: a negative or non-finite ``amount``.
    """
    direction = Direction(direction)
    width, height = size
    x, y = anchor if anchor is not None else (width / 2, height / 2)
    vertical = direction in (Direction.UP, Direction.DOWN)
    travel = _magnitude(amount) or SCROLL_TRAVEL * (height if vertical else width)
    # Scrolling down (view moves down) means the finger moves up: sign opposite to the view direction.
    sign = -1 if direction in (Direction.DOWN, Direction.RIGHT) else 1
    x1, y1 = _on_screen(round(x), width), _on_screen(round(y), height)
    step = sign * round(travel)
    x2, y2 = (x1, _on_screen(y1 + step, height)) if vertical else (_on_screen(x1 + step, width), y1)
    return (x1, y1), (x2, y2)


def _on_screen(value: int, side: int) -> int:
    return min(max(value, 0), side - 1)


def wheel_delta(direction: Direction | str, amount: float | None = None) -> tuple[int | float, int | float]:
    """The wheel turn that scrolls the view in ``direction``, as pyautogui / computer_13 ``(dx, dy)``.

    Args:
        direction: Where the view moves.
        amount: Wheel clicks (or computer_use pixels); None or 0 means :data:`DEFAULT_WHEEL_CLICKS`.

    Returns:
        ``(dx, dy)`` with exactly one non-zero: ``dy > 0`` up, ``dy < 0`` down, ``dx > 0`` right,
        ``dx < 0`` left. Whole numbers come back as ``int`` (as the formats write them).

    Raises:
        ActionError: a negative or non-finite ``amount``.
    """
    direction = Direction(direction)
    clicks = _magnitude(amount) or DEFAULT_WHEEL_CLICKS
    clicks = int(clicks) if float(clicks).is_integer() else clicks
    sign = 1 if direction in (Direction.UP, Direction.RIGHT) else -1
    if direction in (Direction.UP, Direction.DOWN):
        return 0, sign * clicks
    return sign * clicks, 0


def wheel_scroll(dx: float, dy: float) -> tuple[Direction, float]:
    """The view direction and amount of a wheel turn ``(dx, dy)`` (the inverse of :func:`wheel_delta`).

    Raises:
        ActionError: not exactly one of ``dx``, ``dy`` is non-zero.
    """
    if (dx == 0) == (dy == 0):
        raise ActionError(f"a wheel scroll turns exactly one axis, got dx={dx!r}, dy={dy!r}")
    if dy:
        return (Direction.UP if dy > 0 else Direction.DOWN), abs(float(dy))
    return (Direction.RIGHT if dx > 0 else Direction.LEFT), abs(float(dx))
