"""Conversions between canonical actions and datasets' / environments' own action formats.

Every ``from_*`` returns an :class:`~guiagent.types.Action` in device pixels and every ``to_*`` takes
one; an input that the format cannot express, or a record that is not valid, raises
:class:`~guiagent.errors.ActionError` (dataset readers wrap it in a ``DataError`` naming file and
record).

Scroll and swipe conventions, which datasets disagree on, are stated per format:

* canonical ``SCROLL(direction)`` is the direction the *view* moves ("scroll down" reveals content
  below, the finger moves **up**); canonical ``SWIPE(point -> end)`` is the finger's path.
* AITW: a ``DUAL_POINT`` is the finger's path (touch -> lift); within 0.04 (normalised) it is a tap.
* AndroidControl: ``scroll`` ``direction`` is the view direction ("down": the finger moves up).
* AndroidWorld: ``scroll`` as AndroidControl; ``swipe`` is its "inverse of scroll", executed
  full-screen - vertically the finger moves in ``direction``, horizontally *against* it (its
  ``actuation.py``: "left" drags the finger from x=0 to x=width). We reproduce that exactly.
* GUI-Odyssey: ``SCROLL`` stores the finger's start and end (0-1000 coordinates).
* OSWorld / Qwen computer_use / MiniWoB wheel: scroll up = wheel up = view moves up.

A canonical SCROLL becomes a touch stroke or a wheel turn only through :mod:`guiagent.actions.gestures`,
the rule every env follows too.
"""

from __future__ import annotations

import ast
import enum
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from guiagent.actions.gestures import scroll_stroke, wheel_delta, wheel_scroll
from guiagent.errors import ActionError
from guiagent.types import Action, ActionType, Direction, Point, SystemButton, TerminateStatus

# --- Scroll <-> swipe ---------------------------------------------------------------------------------


def scroll_to_swipe(action: Action, width: int, height: int) -> Action:
    """The touch gesture that performs a SCROLL (:func:`~guiagent.actions.gestures.scroll_stroke`).

    Args:
        action: A SCROLL; its ``point`` is where the finger goes down (default: screen centre) and
            ``amount`` the finger travel in pixels (default: ``SCROLL_TRAVEL`` of the screen side).
        width: Screen width, device pixels.
        height: Screen height, device pixels.

    Returns:
        A SWIPE, the finger moving against the view direction, both ends on the screen.
    """
    if action.type is not ActionType.SCROLL:
        raise ActionError(f"scroll_to_swipe needs a scroll, got {action.type.value}")
    start, end = scroll_stroke(action.direction, (width, height), action.point, action.amount)
    return Action(ActionType.SWIPE, point=start, end=end)


def swipe_to_scroll(action: Action) -> Action:
    """The SCROLL a SWIPE performs: the view moves against the finger's dominant direction.

    The scroll is anchored at the swipe's start and its ``amount`` is the finger travel along the
    dominant axis (pixels).
    """
    if action.type is not ActionType.SWIPE:
        raise ActionError(f"swipe_to_scroll needs a swipe, got {action.type.value}")
    finger = action.swipe_direction()
    dx, dy = action.end[0] - action.point[0], action.end[1] - action.point[1]
    travel = abs(dy) if finger in (Direction.UP, Direction.DOWN) else abs(dx)
    return Action(ActionType.SCROLL, direction=finger.opposite(), point=action.point, amount=travel)


# --- Validation helpers -------------------------------------------------------------------------------


def _number(value: Any, what: str) -> float:
    # numbers.Real admits numpy scalars (np.float32 from TFRecords), which are not Python floats.
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ActionError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ActionError(f"{what} must be a string, got {value!r}")
    return value


def _pair(value: Any, what: str) -> tuple[float, float]:
    # Sequences and numpy arrays (which are not Sequences) of exactly two numbers.
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ActionError(f"{what} must be a pair of numbers, got {value!r}")
    return _number(value[0], what), _number(value[1], what)


def _field(record: Mapping[str, Any], key: str, fmt: str) -> Any:
    if record.get(key) is None:
        raise ActionError(
            f"{fmt} {record.get('action_type', record.get('action'))!r} record needs {key!r}: "
            f"{dict(record)!r}"
        )
    return record[key]


def _on_screen(point: Point, width: int, height: int, fmt: str) -> Point:
    # Edges included: datasets store points rounded to the last pixel or normalised to exactly 1.
    if not (0 <= point[0] <= width and 0 <= point[1] <= height):
        raise ActionError(f"{fmt} point {point} lies outside the {width}x{height} screen")
    return point


def _record_point(record: Mapping[str, Any], width: int, height: int, fmt: str) -> Point:
    """A record's ``x``/``y`` pixel fields as an on-screen point."""
    x = _number(_field(record, "x", fmt), f"{fmt} x")
    y = _number(_field(record, "y", fmt), f"{fmt} y")
    return _on_screen((x, y), width, height, fmt)


def _unsupported(action: Action, fmt: str) -> ActionError:
    button = f" {action.button.value}" if action.button is not None else ""
    return ActionError(f"{fmt} has no action for {action.type.value}{button}")


# --- AITW ---------------------------------------------------------------------------------------------


class AitwActionType(enum.IntEnum):
    """AITW's action_type enum (android_in_the_wild ``action_type.py``; 0-2 and 8-9 unused)."""

    TYPE = 3
    DUAL_POINT = 4
    PRESS_BACK = 5
    PRESS_HOME = 6
    PRESS_ENTER = 7
    STATUS_TASK_COMPLETE = 10
    STATUS_TASK_IMPOSSIBLE = 11


AITW_TAP_DISTANCE = 0.04  # touch-lift distance (normalised) at or below which a dual point is a tap
AITW_NO_POINT = (-1.0, -1.0)  # touch/lift value of non-gesture actions in the dataset


@dataclass(frozen=True)
class AitwAction:
    """One AITW action as the dataset stores it.

    Attributes:
        action_type: :class:`AitwActionType` value.
        touch_yx: Finger-down point, normalised ``(y, x)`` in [0, 1]; ``(-1, -1)`` for non-gestures.
        lift_yx: Finger-up point, normalised ``(y, x)``.
        typed_text: Text of a TYPE action, else "".
    """

    action_type: int
    touch_yx: tuple[float, float] = AITW_NO_POINT
    lift_yx: tuple[float, float] = AITW_NO_POINT
    typed_text: str = ""


_AITW_BUTTONS = {
    AitwActionType.PRESS_BACK: SystemButton.BACK,
    AitwActionType.PRESS_HOME: SystemButton.HOME,
    AitwActionType.PRESS_ENTER: SystemButton.ENTER,
}


def from_aitw(
    action_type: int,
    touch_yx: Sequence[float],
    lift_yx: Sequence[float],
    typed_text: str,
    width: int,
    height: int,
) -> Action:
    """AITW action -> canonical action in device pixels.

    A DUAL_POINT with touch-lift distance <= 0.04 is a CLICK at the touch point; otherwise a SWIPE
    from touch to lift (the finger's path; see :func:`swipe_to_scroll` for the scroll it performs).
    """
    try:
        kind = AitwActionType(action_type)
    except ValueError:
        raise ActionError(f"unknown AITW action_type {action_type!r}") from None
    if kind is AitwActionType.DUAL_POINT:
        ty, tx = _pair(touch_yx, "AITW touch_yx")
        ly, lx = _pair(lift_yx, "AITW lift_yx")
        for v in (ty, tx, ly, lx):
            if not 0.0 <= v <= 1.0:
                raise ActionError(f"AITW dual point ({touch_yx}, {lift_yx}) is not normalised to [0, 1]")
        touch = (tx * width, ty * height)
        if math.hypot(ty - ly, tx - lx) <= AITW_TAP_DISTANCE:
            return Action(ActionType.CLICK, point=touch)
        return Action(ActionType.SWIPE, point=touch, end=(lx * width, ly * height))
    if kind is AitwActionType.TYPE:
        return Action(ActionType.TYPE, text=_string(typed_text, "AITW typed_text"))
    if kind in _AITW_BUTTONS:
        return Action(ActionType.SYSTEM_BUTTON, button=_AITW_BUTTONS[kind])
    status = (
        TerminateStatus.SUCCESS if kind is AitwActionType.STATUS_TASK_COMPLETE else TerminateStatus.FAILURE
    )
    return Action(ActionType.TERMINATE, status=status)


def to_aitw(action: Action, width: int, height: int) -> AitwAction:
    """Canonical action -> AITW action. SCROLL becomes the swipe that performs it (finger opposite)."""
    if action.type is ActionType.CLICK:
        yx = (action.point[1] / height, action.point[0] / width)
        return AitwAction(AitwActionType.DUAL_POINT, yx, yx)
    if action.type in (ActionType.SWIPE, ActionType.SCROLL):
        swipe = scroll_to_swipe(action, width, height) if action.type is ActionType.SCROLL else action
        touch = (swipe.point[1] / height, swipe.point[0] / width)
        lift = (swipe.end[1] / height, swipe.end[0] / width)
        if math.hypot(touch[0] - lift[0], touch[1] - lift[1]) <= AITW_TAP_DISTANCE:
            raise ActionError(
                f"swipe {swipe.point}->{swipe.end} is within AITW's tap distance; it would read as a tap"
            )
        return AitwAction(AitwActionType.DUAL_POINT, touch, lift)
    if action.type is ActionType.TYPE:
        return AitwAction(AitwActionType.TYPE, typed_text=action.text)
    if action.type is ActionType.SYSTEM_BUTTON:
        for kind, button in _AITW_BUTTONS.items():
            if button is action.button:
                return AitwAction(kind)
    if action.type is ActionType.TERMINATE:
        success = action.status is TerminateStatus.SUCCESS
        return AitwAction(
            AitwActionType.STATUS_TASK_COMPLETE if success else AitwActionType.STATUS_TASK_IMPOSSIBLE
        )
    raise _unsupported(action, "AITW")


# --- AndroidControl -----------------------------------------------------------------------------------

_DIRECTIONS = {d.value: d for d in Direction}


def _direction(value: Any, fmt: str) -> Direction:
    if not isinstance(value, str) or value.strip().lower() not in _DIRECTIONS:
        raise ActionError(f"{fmt} direction must be up/down/left/right, got {value!r}")
    return _DIRECTIONS[value.strip().lower()]


def from_androidcontrol(record: Mapping[str, Any], width: int, height: int) -> Action:
    """AndroidControl action JSON (``{"action_type": "click", "x": 540, "y": 1200}``) -> canonical action.

    ``x``/``y`` are screenshot pixels. ``scroll`` ``direction`` is the view direction, which is the
    canonical SCROLL convention: "down" reveals content below (the finger moves up).
    """
    if not isinstance(record, Mapping):
        raise ActionError(f"AndroidControl action must be an object, got {record!r}")
    kind = record.get("action_type")
    if kind in ("click", "long_press"):
        point = _record_point(record, width, height, "AndroidControl")
        return Action(ActionType.CLICK if kind == "click" else ActionType.LONG_PRESS, point=point)
    if kind == "scroll":
        return Action(
            ActionType.SCROLL,
            direction=_direction(_field(record, "direction", "AndroidControl"), "AndroidControl"),
        )
    if kind == "input_text":
        return Action(
            ActionType.TYPE, text=_string(_field(record, "text", "AndroidControl"), "AndroidControl text")
        )
    if kind == "open_app":
        return Action(
            ActionType.OPEN_APP,
            text=_string(_field(record, "app_name", "AndroidControl"), "AndroidControl app_name"),
        )
    if kind == "navigate_back":
        return Action(ActionType.SYSTEM_BUTTON, button=SystemButton.BACK)
    if kind == "navigate_home":
        return Action(ActionType.SYSTEM_BUTTON, button=SystemButton.HOME)
    if kind == "wait":
        return Action(ActionType.WAIT)
    raise ActionError(f"unknown AndroidControl action_type {kind!r}")


def to_androidcontrol(action: Action, width: int, height: int) -> dict[str, Any]:
    """Canonical action -> AndroidControl action JSON (pixels rounded to integers).

    A SWIPE becomes the ``scroll`` it performs (view direction opposite to the finger).
    """
    if action.type in (ActionType.CLICK, ActionType.LONG_PRESS):
        x, y = _on_screen(action.point, width, height, "AndroidControl")
        return {"action_type": action.type.value, "x": round(x), "y": round(y)}
    if action.type in (ActionType.SCROLL, ActionType.SWIPE):
        scroll = swipe_to_scroll(action) if action.type is ActionType.SWIPE else action
        return {"action_type": "scroll", "direction": scroll.direction.value}
    if action.type is ActionType.TYPE:
        return {"action_type": "input_text", "text": action.text}
    if action.type is ActionType.OPEN_APP:
        return {"action_type": "open_app", "app_name": action.text}
    if action.type is ActionType.SYSTEM_BUTTON and action.button in (SystemButton.BACK, SystemButton.HOME):
        return {"action_type": f"navigate_{action.button.value}"}
    if action.type is ActionType.WAIT:
        return {"action_type": "wait"}
    raise _unsupported(action, "AndroidControl")


# --- AndroidWorld JSONAction ----------------------------------------------------------------------------

_AW_BUTTONS = {
    "navigate_back": SystemButton.BACK,
    "navigate_home": SystemButton.HOME,
    "keyboard_enter": SystemButton.ENTER,
}
_AW_TAPS = {
    "click": ActionType.CLICK,
    "double_tap": ActionType.DOUBLE_CLICK,
    "long_press": ActionType.LONG_PRESS,
}
_AW_STATUS = {"complete": TerminateStatus.SUCCESS, "infeasible": TerminateStatus.FAILURE}


def _androidworld_swipe(direction: Direction, width: int, height: int) -> tuple[Point, Point]:
    """The finger path android_world's ``actuation.py`` executes for ``swipe`` (full screen)."""
    mid_x, mid_y = 0.5 * width, 0.5 * height
    if direction is Direction.DOWN:
        return (mid_x, 0.0), (mid_x, float(height))
    if direction is Direction.UP:
        return (mid_x, float(height)), (mid_x, 0.0)
    if direction is Direction.LEFT:  # sic: "left" drags the finger to the right
        return (0.0, mid_y), (float(width), mid_y)
    return (float(width), mid_y), (0.0, mid_y)


def from_androidworld(record: Mapping[str, Any], width: int, height: int) -> Action:
    """android_world ``JSONAction`` dict -> canonical action.

    ``click``/``double_tap``/``long_press`` need ``x``/``y`` (an element ``index`` needs the UI tree,
    which a converter does not have: ActionError). ``input_text`` becomes TYPE; the focusing tap
    android_world performs at its ``x``/``y`` first is not part of the canonical action. ``swipe``
    becomes the full-screen finger path that android_world executes for it.
    """
    if not isinstance(record, Mapping):
        raise ActionError(f"AndroidWorld action must be an object, got {record!r}")
    kind = record.get("action_type")
    if kind in _AW_TAPS:
        if record.get("index") is not None:
            raise ActionError(
                f"AndroidWorld {kind} by element index {record['index']!r} needs the UI tree to locate"
            )
        point = _record_point(record, width, height, "AndroidWorld")
        return Action(_AW_TAPS[kind], point=point)
    if kind == "scroll":
        if record.get("index") is not None:
            raise ActionError(
                f"AndroidWorld scroll inside element {record['index']!r} needs the UI tree to locate"
            )
        return Action(
            ActionType.SCROLL,
            direction=_direction(_field(record, "direction", "AndroidWorld"), "AndroidWorld"),
        )
    if kind == "swipe":
        start, end = _androidworld_swipe(
            _direction(_field(record, "direction", "AndroidWorld"), "AndroidWorld"), width, height
        )
        return Action(ActionType.SWIPE, point=start, end=end)
    if kind == "input_text":
        return Action(
            ActionType.TYPE, text=_string(_field(record, "text", "AndroidWorld"), "AndroidWorld text")
        )
    if kind in _AW_BUTTONS:
        return Action(ActionType.SYSTEM_BUTTON, button=_AW_BUTTONS[kind])
    if kind == "open_app":
        return Action(
            ActionType.OPEN_APP,
            text=_string(_field(record, "app_name", "AndroidWorld"), "AndroidWorld app_name"),
        )
    if kind == "wait":
        return Action(ActionType.WAIT)
    if kind == "answer":
        return Action(
            ActionType.ANSWER, text=_string(_field(record, "text", "AndroidWorld"), "AndroidWorld text")
        )
    if kind == "status":
        status = _field(record, "goal_status", "AndroidWorld")
        if status not in _AW_STATUS:
            raise ActionError(f"AndroidWorld goal_status must be complete or infeasible, got {status!r}")
        return Action(ActionType.TERMINATE, status=_AW_STATUS[status])
    raise ActionError(f"unknown AndroidWorld action_type {kind!r}")


def to_androidworld(action: Action, width: int, height: int) -> dict[str, Any]:
    """Canonical action -> android_world ``JSONAction`` dict (no None fields; pixels as integers).

    A SWIPE becomes android_world's full-screen ``swipe`` whose finger moves along the swipe's dominant
    direction (the exact path is not expressible). Note that android_world executes ``input_text``
    by first tapping its ``x``/``y`` or ``index``; a bare TYPE carries neither.
    """
    if action.type in (ActionType.CLICK, ActionType.DOUBLE_CLICK, ActionType.LONG_PRESS):
        x, y = _on_screen(action.point, width, height, "AndroidWorld")
        kind = {v: k for k, v in _AW_TAPS.items()}[action.type]
        return {"action_type": kind, "x": round(x), "y": round(y)}
    if action.type is ActionType.SCROLL:
        return {"action_type": "scroll", "direction": action.direction.value}
    if action.type is ActionType.SWIPE:
        finger = action.swipe_direction()
        # Invert _androidworld_swipe: vertical names follow the finger, horizontal names oppose it.
        name = finger if finger in (Direction.UP, Direction.DOWN) else finger.opposite()
        return {"action_type": "swipe", "direction": name.value}
    if action.type is ActionType.TYPE:
        return {"action_type": "input_text", "text": action.text}
    if action.type is ActionType.SYSTEM_BUTTON:
        for kind, button in _AW_BUTTONS.items():
            if button is action.button:
                return {"action_type": kind}
    if action.type is ActionType.OPEN_APP:
        return {"action_type": "open_app", "app_name": action.text}
    if action.type is ActionType.WAIT:
        return {"action_type": "wait"}
    if action.type is ActionType.ANSWER:
        return {"action_type": "answer", "text": action.text}
    if action.type is ActionType.TERMINATE:
        return {
            "action_type": "status",
            "goal_status": "complete" if action.status is TerminateStatus.SUCCESS else "infeasible",
        }
    raise _unsupported(action, "AndroidWorld")


# --- GUI-Odyssey ----------------------------------------------------------------------------------------

ODYSSEY_SCALE = 1000  # GUI-Odyssey coordinates are normalised to [0, 1000]
_ODYSSEY_KEYS = {
    "KEY_BACK": SystemButton.BACK,
    "KEY_HOME": SystemButton.HOME,
    "KEY_APPSELECT": SystemButton.APP_SWITCH,
}


def _odyssey_point(value: Any, width: int, height: int) -> Point:
    x, y = _pair(value, "GUI-Odyssey coordinate")
    if not (0 <= x <= ODYSSEY_SCALE and 0 <= y <= ODYSSEY_SCALE):
        raise ActionError(f"GUI-Odyssey coordinate {value!r} is outside [0, {ODYSSEY_SCALE}]")
    return x * width / ODYSSEY_SCALE, y * height / ODYSSEY_SCALE


def _odyssey_coordinate(point: Point, width: int, height: int) -> list[int]:
    return [round(point[0] / width * ODYSSEY_SCALE), round(point[1] / height * ODYSSEY_SCALE)]


def from_odyssey(step: Mapping[str, Any], width: int, height: int) -> Action:
    """GUI-Odyssey step (its ``action`` and ``info`` fields) -> canonical action.

    ``CLICK``/``LONG_PRESS`` info is ``[[x, y]]`` (0-1000) or a key name (``KEY_BACK``, ``KEY_HOME``,
    ``KEY_APPSELECT``); ``SCROLL`` info is ``[[x1, y1], [x2, y2]]``, the finger's start and end;
    ``TEXT`` info is the typed text; ``COMPLETE``/``INCOMPLETE`` end the episode.
    """
    if not isinstance(step, Mapping):
        raise ActionError(f"GUI-Odyssey step must be an object, got {step!r}")
    kind, info = step.get("action"), step.get("info")
    if kind in ("CLICK", "LONG_PRESS"):
        if isinstance(info, str):
            if info not in _ODYSSEY_KEYS:
                raise ActionError(f"unknown GUI-Odyssey key {info!r}")
            return Action(ActionType.SYSTEM_BUTTON, button=_ODYSSEY_KEYS[info])
        if not isinstance(info, Sequence) or len(info) != 1:
            raise ActionError(f"GUI-Odyssey {kind} info must be [[x, y]] or a key name, got {info!r}")
        point = _odyssey_point(info[0], width, height)
        return Action(ActionType.CLICK if kind == "CLICK" else ActionType.LONG_PRESS, point=point)
    if kind == "SCROLL":
        if isinstance(info, str) or not isinstance(info, Sequence) or len(info) != 2:
            raise ActionError(f"GUI-Odyssey SCROLL info must be [[x1, y1], [x2, y2]], got {info!r}")
        return Action(
            ActionType.SWIPE,
            point=_odyssey_point(info[0], width, height),
            end=_odyssey_point(info[1], width, height),
        )
    if kind in ("TEXT", "TYPE"):  # the annotations say TEXT; the dataset card calls it TYPE
        return Action(ActionType.TYPE, text=_string(info, "GUI-Odyssey TEXT info"))
    if kind == "COMPLETE":
        return Action(ActionType.TERMINATE, status=TerminateStatus.SUCCESS)
    if kind in ("INCOMPLETE", "IMPOSSIBLE"):
        return Action(ActionType.TERMINATE, status=TerminateStatus.FAILURE)
    raise ActionError(f"unknown GUI-Odyssey action {kind!r}")


def to_odyssey(action: Action, width: int, height: int) -> dict[str, Any]:
    """Canonical action -> GUI-Odyssey ``{"action": ..., "info": ...}`` (integer 0-1000 coordinates).

    A canonical SCROLL becomes the finger path that performs it (:func:`scroll_to_swipe`).
    """
    if action.type in (ActionType.CLICK, ActionType.LONG_PRESS):
        return {
            "action": action.type.value.upper(),
            "info": [_odyssey_coordinate(action.point, width, height)],
        }
    if action.type in (ActionType.SWIPE, ActionType.SCROLL):
        swipe = scroll_to_swipe(action, width, height) if action.type is ActionType.SCROLL else action
        return {
            "action": "SCROLL",
            "info": [
                _odyssey_coordinate(swipe.point, width, height),
                _odyssey_coordinate(swipe.end, width, height),
            ],
        }
    if action.type is ActionType.TYPE:
        return {"action": "TEXT", "info": action.text}
    if action.type is ActionType.SYSTEM_BUTTON:
        for key, button in _ODYSSEY_KEYS.items():
            if button is action.button:
                return {"action": "CLICK", "info": key}
    if action.type is ActionType.TERMINATE:
        return {
            "action": "COMPLETE" if action.status is TerminateStatus.SUCCESS else "INCOMPLETE",
            "info": "",
        }
    raise _unsupported(action, "GUI-Odyssey")


# --- OSWorld: pyautogui code ----------------------------------------------------------------------------

_OSWORLD_SPECIAL = {
    "WAIT": Action(ActionType.WAIT),
    "DONE": Action(ActionType.TERMINATE, status=TerminateStatus.SUCCESS),
    "FAIL": Action(ActionType.TERMINATE, status=TerminateStatus.FAILURE),
}
_PYAUTOGUI_CLICKS = {
    "click": ActionType.CLICK,
    "doubleClick": ActionType.DOUBLE_CLICK,
    "tripleClick": ActionType.TRIPLE_CLICK,
    "rightClick": ActionType.RIGHT_CLICK,
    "middleClick": ActionType.MIDDLE_CLICK,
}
_CLICK_VARIANTS = {
    ("left", 1): ActionType.CLICK,
    ("left", 2): ActionType.DOUBLE_CLICK,
    ("left", 3): ActionType.TRIPLE_CLICK,
    ("right", 1): ActionType.RIGHT_CLICK,
    ("middle", 1): ActionType.MIDDLE_CLICK,
}
_MAX_PRESSES = 100


def _click_variant(button: Any, clicks: Any, what: str) -> ActionType:
    variant = (button, clicks)
    if not (isinstance(button, str) and type(clicks) is int) or variant not in _CLICK_VARIANTS:
        raise ActionError(f"{what} with button={button!r}, clicks={clicks!r} has no canonical action")
    return _CLICK_VARIANTS[variant]


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError) as exc:
        raise ActionError(f"pyautogui argument is not a literal: {ast.dump(node)[:120]}") from exc


def _keys(value: Any, what: str) -> tuple[str, ...]:
    keys = [value] if isinstance(value, str) else value
    if (
        not isinstance(keys, (list, tuple))
        or not keys
        or not all(isinstance(k, str) and k.strip() for k in keys)
    ):
        raise ActionError(f"{what} must be a key name or a list of key names, got {value!r}")
    return tuple(k.strip().lower() for k in keys)


class _PyAutoGuiReader:
    """Turns a sequence of pyautogui calls into canonical actions, tracking the cursor they imply."""

    def __init__(self) -> None:
        self.actions: list[Action] = []
        self.cursor: Point | None = None
        self.pending_move: Point | None = None  # a moveTo not yet known to start a drag or a click
        self.pressed_at: Point | None = None  # mouseDown position while the button is held

    def flush_move(self) -> None:
        if self.pending_move is not None and self.pressed_at is None:
            self.actions.append(Action(ActionType.MOVE, point=self.pending_move))
        self.pending_move = None

    def point(
        self, args: list[Any], kwargs: dict[str, Any], name: str, *, required: bool = True
    ) -> Point | None:
        x, y = kwargs.get("x"), kwargs.get("y")
        if args and isinstance(args[0], (tuple, list)):
            x, y = _pair(args[0], f"pyautogui.{name} position")
        elif len(args) >= 2:
            x, y = args[0], args[1]
        if x is None and y is None:
            if required and self.cursor is None:
                raise ActionError(
                    f"pyautogui.{name}() without a position needs a known cursor (a moveTo before it)"
                )
            return self.cursor
        return _number(x, f"pyautogui.{name} x"), _number(y, f"pyautogui.{name} y")

    def call(self, module: str, name: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        if module == "time":
            if name != "sleep" or len(args) + len(kwargs) != 1:
                raise ActionError(f"unsupported call time.{name}")
            self.flush_move()
            seconds = _number(args[0] if args else kwargs.get("secs"), "time.sleep seconds")
            self.actions.append(Action(ActionType.WAIT, duration=seconds))
            return
        if name == "moveTo":
            self.flush_move()
            self.cursor = self.point(args, kwargs, name)
            self.pending_move = self.cursor
            return
        if name in _PYAUTOGUI_CLICKS:
            moved, self.pending_move = self.pending_move, None
            point = self.point(args[:2], kwargs, name)
            if moved is not None and point != moved:
                self.actions.append(Action(ActionType.MOVE, point=moved))
            kind = _PYAUTOGUI_CLICKS[name]
            if name == "click":
                kind = _click_variant(
                    kwargs.get("button", args[4] if len(args) > 4 else "left"),
                    kwargs.get("clicks", args[2] if len(args) > 2 else 1),
                    "pyautogui.click",
                )
            self.cursor = point
            self.actions.append(Action(kind, point=point))
            return
        if name in ("dragTo", "drag", "dragRel"):
            self.pending_move = None
            if self.cursor is None:
                raise ActionError(f"pyautogui.{name} needs a known start (a moveTo before it)")
            target = self.point(args[:2], kwargs, name, required=False)
            if target is None:
                raise ActionError(f"pyautogui.{name} needs a target")
            if name != "dragTo":
                target = (self.cursor[0] + target[0], self.cursor[1] + target[1])
            duration = kwargs.get("duration", args[2] if len(args) > 2 else None)
            self.actions.append(
                Action(
                    ActionType.DRAG,
                    point=self.cursor,
                    end=target,
                    duration=None if duration is None else _number(duration, "drag duration"),
                )
            )
            self.cursor = target
            return
        if name == "mouseDown":
            self.pending_move = None
            self.pressed_at = self.cursor = self.point(args[:2], kwargs, name)
            return
        if name == "mouseUp":
            if self.pressed_at is None:
                raise ActionError("pyautogui.mouseUp without a mouseDown")
            self.pending_move = None
            end = self.point(args[:2], kwargs, name)
            start, self.pressed_at, self.cursor = self.pressed_at, None, end
            self.actions.append(
                Action(ActionType.CLICK, point=start)
                if end == start
                else Action(ActionType.DRAG, point=start, end=end)
            )
            return
        self.flush_move()
        if name in ("scroll", "vscroll", "hscroll"):
            clicks = _number(args[0] if args else kwargs.get("clicks"), f"pyautogui.{name} clicks")
            if clicks == 0:
                raise ActionError(f"pyautogui.{name}(0) scrolls nothing")
            anchor = (
                self.point(args[1:3], kwargs, name, required=False)
                if (len(args) > 1 or "x" in kwargs)
                else None
            )
            direction, amount = wheel_scroll(clicks, 0) if name == "hscroll" else wheel_scroll(0, clicks)
            self.actions.append(Action(ActionType.SCROLL, direction=direction, point=anchor, amount=amount))
        elif name in ("typewrite", "write"):
            message = args[0] if args else kwargs.get("message")
            if isinstance(message, str):
                self.actions.append(Action(ActionType.TYPE, text=message))
            else:  # a list of key names is pressed key by key
                self.actions.extend(
                    Action(ActionType.KEY, keys=(k,)) for k in _keys(message, f"pyautogui.{name}")
                )
        elif name == "press":
            keys = _keys(args[0] if args else kwargs.get("keys"), "pyautogui.press keys")
            presses = kwargs.get("presses", args[1] if len(args) > 1 else 1)
            if isinstance(presses, bool) or not isinstance(presses, int) or not 1 <= presses <= _MAX_PRESSES:
                raise ActionError(
                    f"pyautogui.press presses must be an integer in 1..{_MAX_PRESSES}, got {presses!r}"
                )
            self.actions.extend(Action(ActionType.KEY, keys=(k,)) for _ in range(presses) for k in keys)
        elif name == "hotkey":
            keys = _keys(list(args), "pyautogui.hotkey keys")
            self.actions.append(Action(ActionType.KEY if len(keys) == 1 else ActionType.HOTKEY, keys=keys))
        else:
            raise ActionError(f"pyautogui.{name} has no canonical action")


def from_osworld_pyautogui(code: str) -> tuple[Action, ...]:
    """OSWorld ``pyautogui`` action code -> the canonical actions it performs, in order.

    The code is parsed with :mod:`ast` and never executed: only ``pyautogui.<fn>(literals...)`` and
    ``time.sleep(n)`` statements are accepted (imports are skipped), plus OSWorld's special codes
    ``WAIT``, ``DONE`` and ``FAIL``. ``moveTo`` + ``dragTo`` (or ``mouseDown`` ... ``mouseUp``) is one DRAG;
    a ``moveTo`` that neither starts a drag nor positions a click is a MOVE.

    Raises:
        ActionError: the code is not valid Python, calls anything else, or holds no action.
    """
    if not isinstance(code, str):
        raise ActionError(f"pyautogui code must be a string, got {type(code).__name__}")
    if code.strip() in _OSWORLD_SPECIAL:
        return (_OSWORLD_SPECIAL[code.strip()],)
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError) as exc:  # ValueError: null bytes
        raise ActionError(f"pyautogui code does not parse: {str(exc)[:200]}") from None
    reader = _PyAutoGuiReader()
    for statement in tree.body:
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            continue
        call = statement.value if isinstance(statement, ast.Expr) else None
        func = call.func if isinstance(call, ast.Call) else None
        if not (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id in ("pyautogui", "time")
        ):
            raise ActionError(
                f"unsupported statement at line {statement.lineno}: only pyautogui.* and time.sleep calls"
            )
        if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
            raise ActionError(f"line {statement.lineno}: *args/**kwargs are not supported")
        reader.call(
            func.value.id,
            func.attr,
            [_literal(a) for a in call.args],
            {k.arg: _literal(k.value) for k in call.keywords},
        )
    if reader.pressed_at is not None:
        raise ActionError("pyautogui code leaves the mouse button pressed")
    reader.flush_move()
    if not reader.actions:
        raise ActionError("pyautogui code performs no action")
    return tuple(reader.actions)


def _coordinate_text(point: Point) -> str:
    return f"{round(point[0])}, {round(point[1])}"


def to_osworld_pyautogui(action: Action) -> str:
    """Canonical action -> OSWorld ``pyautogui`` code (integer pixels; no imports, as OSWorld adds them)."""
    names = {v: k for k, v in _PYAUTOGUI_CLICKS.items()}
    if action.type in names:
        return f"pyautogui.{names[action.type]}({_coordinate_text(action.point)})"
    if action.type is ActionType.MOVE:
        return f"pyautogui.moveTo({_coordinate_text(action.point)})"
    if action.type is ActionType.DRAG:
        duration = "" if action.duration is None else f", duration={action.duration!r}"
        return (
            f"pyautogui.moveTo({_coordinate_text(action.point)})\n"
            f"pyautogui.dragTo({_coordinate_text(action.end)}{duration}, button='left')"
        )
    if action.type is ActionType.SCROLL:
        dx, dy = wheel_delta(action.direction, action.amount)
        anchor = "" if action.point is None else f", x={round(action.point[0])}, y={round(action.point[1])}"
        return f"pyautogui.scroll({dy}{anchor})" if dy else f"pyautogui.hscroll({dx}{anchor})"
    if action.type is ActionType.TYPE:
        return f"pyautogui.typewrite({action.text!r})"
    if action.type is ActionType.KEY:
        return f"pyautogui.press({action.keys[0]!r})"
    if action.type is ActionType.HOTKEY:
        return f"pyautogui.hotkey({', '.join(repr(k) for k in action.keys)})"
    if action.type is ActionType.WAIT:
        return "WAIT" if action.duration is None else f"time.sleep({action.duration!r})"
    if action.type is ActionType.TERMINATE:
        return "DONE" if action.status is TerminateStatus.SUCCESS else "FAIL"
    raise _unsupported(action, "OSWorld pyautogui")


# --- OSWorld: computer_13 -------------------------------------------------------------------------------

_C13_SPECIAL = {"WAIT": ActionType.WAIT, "DONE": TerminateStatus.SUCCESS, "FAIL": TerminateStatus.FAILURE}


def _records(records: Any, fmt: str) -> list[Mapping[str, Any]]:
    """One record or a list of them (what the ``to_*`` side emits for DRAG) as a list of records."""
    items = [records] if isinstance(records, (Mapping, str)) else records
    if not isinstance(items, Sequence) or not 1 <= len(items) <= 2:
        raise ActionError(f"{fmt} input must be one action or a list of one or two, got {records!r}")
    out = []
    for item in items:
        if isinstance(item, str) and fmt == "computer_13":
            item = {"action_type": item}
        if not isinstance(item, Mapping):
            raise ActionError(f"{fmt} action must be an object, got {item!r}")
        out.append(item)
    return out


def _c13_parts(record: Mapping[str, Any]) -> tuple[Any, Mapping[str, Any]]:
    params = record.get("parameters")
    if params is None:  # OSWorld's README nests "parameters"; many agents write the fields flat
        params = {k: v for k, v in record.items() if k != "action_type"}
    if not isinstance(params, Mapping):
        raise ActionError(f"computer_13 parameters must be an object, got {params!r}")
    return record.get("action_type"), params


def _c13_point(params: Mapping[str, Any], kind: str) -> Point:
    if params.get("x") is None or params.get("y") is None:
        raise ActionError(
            f"computer_13 {kind} without x/y acts at the cursor, whose position is unknown here"
        )
    return _number(params["x"], f"computer_13 {kind} x"), _number(params["y"], f"computer_13 {kind} y")


def from_computer13(records: Mapping[str, Any] | str | Sequence[Mapping[str, Any] | str]) -> Action:
    """OSWorld ``computer_13`` action dict(s) -> one canonical action.

    Accepts ``{"action_type": "CLICK", "parameters": {...}}`` or the flat form, the special strings
    ``WAIT``/``DONE``/``FAIL``, and the two-record forms :func:`to_computer13` emits:
    ``[MOVE_TO, DRAG_TO]`` is a DRAG and ``[MOVE_TO, SCROLL]`` a SCROLL anchored there.
    ``SCROLL`` ``dy > 0`` scrolls up and ``dx > 0`` right (pyautogui's signs).
    """
    items = _records(records, "computer_13")
    anchor: Point | None = None
    if len(items) == 2:
        first_kind, first = _c13_parts(items[0])
        if first_kind != "MOVE_TO" or items[1].get("action_type") not in ("DRAG_TO", "SCROLL"):
            raise ActionError(f"computer_13 pair must be MOVE_TO then DRAG_TO or SCROLL, got {records!r}")
        anchor = _c13_point(first, "MOVE_TO")
    kind, params = _c13_parts(items[-1])
    if kind in ("CLICK", "RIGHT_CLICK", "DOUBLE_CLICK", "MOVE_TO"):
        point = _c13_point(params, kind)
        if kind == "MOVE_TO":
            return Action(ActionType.MOVE, point=point)
        if kind == "RIGHT_CLICK":
            return Action(ActionType.RIGHT_CLICK, point=point)
        if kind == "DOUBLE_CLICK":
            return Action(ActionType.DOUBLE_CLICK, point=point)
        return Action(
            _click_variant(params.get("button", "left"), params.get("num_clicks", 1), "computer_13 CLICK"),
            point=point,
        )
    if kind == "DRAG_TO":
        if anchor is None:
            raise ActionError("computer_13 DRAG_TO drags from the cursor; send [MOVE_TO, DRAG_TO]")
        return Action(ActionType.DRAG, point=anchor, end=_c13_point(params, kind))
    if kind == "SCROLL":
        dx, dy = (
            _number(params.get("dx", 0), "computer_13 dx"),
            _number(params.get("dy", 0), "computer_13 dy"),
        )
        direction, amount = wheel_scroll(dx, dy)  # ActionError unless exactly one of dx, dy is non-zero
        return Action(ActionType.SCROLL, direction=direction, point=anchor, amount=amount)
    if kind == "TYPING":
        return Action(ActionType.TYPE, text=_string(params.get("text"), "computer_13 TYPING text"))
    if kind == "PRESS":
        return Action(ActionType.KEY, keys=_keys(params.get("key"), "computer_13 PRESS key")[:1])
    if kind == "HOTKEY":
        keys = _keys(params.get("keys"), "computer_13 HOTKEY keys")
        return Action(ActionType.KEY if len(keys) == 1 else ActionType.HOTKEY, keys=keys)
    if kind == "WAIT":
        return Action(ActionType.WAIT)
    if kind in ("DONE", "FAIL"):
        return Action(ActionType.TERMINATE, status=_C13_SPECIAL[kind])
    raise ActionError(f"computer_13 action_type {kind!r} has no canonical action")


def _c13(kind: str, **params: Any) -> dict[str, Any]:
    return {"action_type": kind, "parameters": params} if params else {"action_type": kind}


def to_computer13(action: Action) -> list[dict[str, Any]]:
    """Canonical action -> OSWorld ``computer_13`` dicts (MOVE_TO first for a DRAG or an anchored SCROLL)."""
    variants = {v: k for k, v in _CLICK_VARIANTS.items()}
    if action.type in variants:
        button, clicks = variants[action.type]
        x, y = action.point
        return [_c13("CLICK", button=button, x=round(x), y=round(y), num_clicks=clicks)]
    if action.type is ActionType.MOVE:
        return [_c13("MOVE_TO", x=round(action.point[0]), y=round(action.point[1]))]
    if action.type is ActionType.DRAG:
        return [
            _c13("MOVE_TO", x=round(action.point[0]), y=round(action.point[1])),
            _c13("DRAG_TO", x=round(action.end[0]), y=round(action.end[1])),
        ]
    if action.type is ActionType.SCROLL:
        dx, dy = wheel_delta(action.direction, action.amount)
        scroll = _c13("SCROLL", dx=dx, dy=dy)
        if action.point is None:
            return [scroll]
        return [_c13("MOVE_TO", x=round(action.point[0]), y=round(action.point[1])), scroll]
    if action.type is ActionType.TYPE:
        return [_c13("TYPING", text=action.text)]
    if action.type is ActionType.KEY:
        return [_c13("PRESS", key=action.keys[0])]
    if action.type is ActionType.HOTKEY:
        return [_c13("HOTKEY", keys=list(action.keys))]
    if action.type is ActionType.WAIT:
        return [_c13("WAIT")]
    if action.type is ActionType.TERMINATE:
        return [_c13("DONE" if action.status is TerminateStatus.SUCCESS else "FAIL")]
    raise _unsupported(action, "computer_13")


# --- MiniWoB++ ------------------------------------------------------------------------------------------

_MINIWOB_POINTER = {
    "MOVE_COORDS": ActionType.MOVE,
    "CLICK_COORDS": ActionType.CLICK,
    "DBLCLICK_COORDS": ActionType.DOUBLE_CLICK,
}
_MINIWOB_SCROLL = {"SCROLL_UP_COORDS": Direction.UP, "SCROLL_DOWN_COORDS": Direction.DOWN}
# MiniWoB key names (miniwob.constants.DEFAULT_ALLOWED_KEYS) <-> canonical (pyautogui-style) names.
_MINIWOB_KEYS = {
    "<ArrowUp>": "up",
    "<ArrowDown>": "down",
    "<ArrowLeft>": "left",
    "<ArrowRight>": "right",
    "<PageUp>": "pageup",
    "<PageDown>": "pagedown",
    "<Backspace>": "backspace",
    "<Delete>": "delete",
    "<Enter>": "enter",
    "<Tab>": "tab",
    "<Space>": "space",
    "<NumpadAdd>": "add",
    "<NumpadMultiply>": "multiply",
    "<NumpadSubtract>": "subtract",
    "<NumpadDivide>": "divide",
    "<NumpadDecimal>": "decimal",
    "<NumpadEnter>": "numpadenter",
    **{f"<Numpad{i}>": f"num{i}" for i in range(10)},
}
_MINIWOB_MODIFIERS = {"C-": "ctrl", "S-": "shift", "A-": "alt", "M-": "meta"}


def _miniwob_key(key: Any) -> tuple[str, ...]:
    """``"C-c"`` -> ``("ctrl", "c")``; ``"<Enter>"`` -> ``("enter",)``; ``"A"`` -> ``("shift", "a")``."""
    if not isinstance(key, str) or not key:
        raise ActionError(f"MiniWoB key must be a non-empty string, got {key!r}")
    modifiers = []
    while len(key) > 2 and key[:2] in _MINIWOB_MODIFIERS:
        modifiers.append(_MINIWOB_MODIFIERS[key[:2]])
        key = key[2:]
    if key in _MINIWOB_KEYS:
        name = _MINIWOB_KEYS[key]
    elif key.startswith("<") and key.endswith(">") and len(key) > 2:
        name = key[1:-1].lower()
    elif len(key) == 1:
        if key.isupper():
            modifiers.append("shift")
        name = key.lower()
    else:
        raise ActionError(f"unknown MiniWoB key {key!r}")
    return (*modifiers, name)


def _miniwob_key_name(keys: tuple[str, ...]) -> str:
    *modifiers, name = keys
    prefixes = {v: k for k, v in _MINIWOB_MODIFIERS.items()}
    if len(name) == 1 and "shift" in modifiers and name.isalpha():
        modifiers.remove("shift")  # MiniWoB writes shifted letters as capitals
        name = name.upper()
    elif len(name) > 1:
        name = {v: k for k, v in _MINIWOB_KEYS.items()}.get(name, f"<{name.capitalize()}>")
    if any(m not in prefixes for m in modifiers):
        raise ActionError(f"MiniWoB has no modifier for {keys!r}")
    return "".join(prefixes[m] for m in modifiers) + name


def _miniwob_coords(record: Mapping[str, Any]) -> Point:
    return _pair(_field(record, "coords", "MiniWoB"), "MiniWoB coords")


def from_miniwob(records: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Action:
    """MiniWoB++ action dict(s) -> one canonical action.

    ``action_type`` is a ``miniwob.action.ActionTypes`` name (``"CLICK_COORDS"``; the enum members are
    str and equal their names); the integer index a gymnasium action holds depends on the env's
    ``ActionSpaceConfig`` and must be mapped to the name first. ``coords`` are page pixels ``[left, top]``.
    ``[MOUSEDOWN_COORDS, MOUSEUP_COORDS]`` is a DRAG. Element actions (``CLICK_ELEMENT``, ``TYPE_FIELD``,
    ...) refer to DOM refs, not to the screen, and have no canonical form.
    """
    items = _records(records, "MiniWoB")
    kinds = [item.get("action_type") for item in items]
    if len(items) == 2:
        if kinds != ["MOUSEDOWN_COORDS", "MOUSEUP_COORDS"]:
            raise ActionError(f"MiniWoB pair must be MOUSEDOWN_COORDS then MOUSEUP_COORDS, got {kinds!r}")
        return Action(ActionType.DRAG, point=_miniwob_coords(items[0]), end=_miniwob_coords(items[1]))
    record, kind = items[0], kinds[0]
    if isinstance(kind, int) and not isinstance(kind, bool):
        raise ActionError(
            f"MiniWoB action_type index {kind} needs the env's ActionSpaceConfig; pass the ActionTypes name"
        )
    if kind in _MINIWOB_POINTER:
        return Action(_MINIWOB_POINTER[kind], point=_miniwob_coords(record))
    if kind in _MINIWOB_SCROLL:
        return Action(ActionType.SCROLL, direction=_MINIWOB_SCROLL[kind], point=_miniwob_coords(record))
    if kind == "TYPE_TEXT":
        return Action(ActionType.TYPE, text=_string(_field(record, "text", "MiniWoB"), "MiniWoB text"))
    if kind == "PRESS_KEY":
        keys = _miniwob_key(_field(record, "key", "MiniWoB"))
        return Action(ActionType.KEY if len(keys) == 1 else ActionType.HOTKEY, keys=keys)
    if kind == "NONE":
        return Action(ActionType.WAIT)
    raise ActionError(f"MiniWoB action_type {kind!r} has no canonical action")


def to_miniwob(action: Action) -> list[dict[str, Any]]:
    """Canonical action -> MiniWoB++ action dicts (two for a DRAG: mouse down, then up).

    SCROLL needs an anchor point (MiniWoB scrolls the wheel at coordinates) and only goes up or down;
    the scroll distance is the env's ``scroll_amount``.
    """
    pointer = {v: k for k, v in _MINIWOB_POINTER.items()}
    if action.type in pointer:
        return [{"action_type": pointer[action.type], "coords": list(action.point)}]
    if action.type is ActionType.DRAG:
        return [
            {"action_type": "MOUSEDOWN_COORDS", "coords": list(action.point)},
            {"action_type": "MOUSEUP_COORDS", "coords": list(action.end)},
        ]
    if (
        action.type is ActionType.SCROLL
        and action.point is not None
        and action.direction in (Direction.UP, Direction.DOWN)
    ):
        kind = "SCROLL_UP_COORDS" if action.direction is Direction.UP else "SCROLL_DOWN_COORDS"
        return [{"action_type": kind, "coords": list(action.point)}]
    if action.type is ActionType.TYPE:
        return [{"action_type": "TYPE_TEXT", "text": action.text}]
    if action.type in (ActionType.KEY, ActionType.HOTKEY):
        return [{"action_type": "PRESS_KEY", "key": _miniwob_key_name(action.keys)}]
    if action.type is ActionType.WAIT:
        return [{"action_type": "NONE"}]
    raise _unsupported(action, "MiniWoB")
