"""Model output formats: parse model text into canonical actions and format actions as model text.

Formats (:class:`ActionFormat`):

* ``qwen25vl_mobile`` / ``qwen25vl_computer``: Qwen2.5-VL cookbook tool calls
  ``<tool_call>\\n{"name": "mobile_use" | "computer_use", "arguments": {"action": ...}}\\n</tool_call>``
  with absolute pixel coordinates on the ``smart_resize``d image (:class:`ModelGeometry`).
* ``qwen3vl_mobile`` / ``qwen3vl_computer``: the same tools, coordinates relative to 1000
  (``x_model = x_device / width * 1000``, valid range 0-999).
* ``uis1``: UI-S1 (arXiv 2509.11543) ``<think>...</think>\\n<action>\\n{json}\\n</action>`` where the JSON
  holds the ``mobile_use`` arguments at top level (``{"action": "click", "coordinate": [x, y]}``) in
  resized-image pixels, as its released code writes them.

Argument names follow the cookbook: ``coordinate``, ``coordinate2`` (swipe end), ``text``, ``time``
(seconds), ``button`` (Back/Home/Menu/Enter), ``status`` (success/failure), ``keys`` and ``pixels``
(computer_use; ``scroll`` pixels > 0 scroll up, ``hscroll`` pixels > 0 scroll right, as pyautogui).
A SCROLL is written and read by the rules of :mod:`guiagent.actions.gestures`: the mobile formats write
it as the finger stroke that every env performs for it, the computer formats as the wheel turn.

:func:`parse_action` never raises on model text: anything it cannot turn into an executable action
comes back as a :class:`ParseFailure` with a machine-readable ``reason`` that rewards and metrics count.
Coordinates outside the screenshot are a failure (``out_of_screen``), never an action.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from guiagent.actions.coords import ModelGeometry
from guiagent.actions.gestures import scroll_stroke, wheel_delta, wheel_scroll
from guiagent.errors import ActionError
from guiagent.types import Action, ActionType, Point, SystemButton, TerminateStatus

# Parse failure reasons (ParseFailure.reason).
NO_TOOL_CALL = "no_tool_call"  # no <tool_call>/<action> block, or the block is not closed
BAD_JSON = "bad_json"  # the block is not a JSON object (or uses NaN/Infinity, or nests absurdly deep)
UNKNOWN_ACTION = "unknown_action"  # unknown tool name or action name
MISSING_FIELD = "missing_field"  # an argument the action needs is absent
BAD_VALUE = "bad_value"  # an argument has the wrong type or an invalid value (button, status, time, text)
BAD_COORDINATE = "bad_coordinate"  # a coordinate is not two finite numbers
OUT_OF_SCREEN = "out_of_screen"  # a coordinate lies outside the screenshot

RELATIVE_SCALE = 1000  # Qwen3-VL coordinates are relative to 1000
_DETAIL_TEXT_LIMIT = 200  # how much of a bad value a failure detail quotes


class ActionFormat(str, enum.Enum):
    """Model output formats guiagent parses and emits."""

    QWEN25VL_MOBILE = "qwen25vl_mobile"
    QWEN25VL_COMPUTER = "qwen25vl_computer"
    QWEN3VL_MOBILE = "qwen3vl_mobile"
    QWEN3VL_COMPUTER = "qwen3vl_computer"
    UIS1 = "uis1"


_TOOL_NAME = {
    ActionFormat.QWEN25VL_MOBILE: "mobile_use",
    ActionFormat.QWEN3VL_MOBILE: "mobile_use",
    ActionFormat.QWEN25VL_COMPUTER: "computer_use",
    ActionFormat.QWEN3VL_COMPUTER: "computer_use",
}
_RELATIVE_FORMATS = (ActionFormat.QWEN3VL_MOBILE, ActionFormat.QWEN3VL_COMPUTER)


@dataclass(frozen=True)
class ParseFailure:
    """Why model text is not an action.

    Attributes:
        reason: Machine code: ``no_tool_call``, ``bad_json``, ``unknown_action``, ``missing_field``,
            ``bad_value``, ``bad_coordinate`` or ``out_of_screen``.
        detail: Human-readable explanation.
        text: The model text that failed to parse.
    """

    reason: str
    detail: str
    text: str


class _Failure(Exception):
    """Internal control flow: carries a reason and detail up to parse_action, never escapes it."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# --- Parsing -------------------------------------------------------------------------------------------


def parse_action(text: str, fmt: ActionFormat | str, geometry: ModelGeometry) -> Action | ParseFailure:
    """Parse one model response into a canonical action in device pixels.

    Args:
        text: The model's raw output.
        fmt: The output format the model was prompted with.
        geometry: How the screenshot the model saw was resized.

    Returns:
        The action (device pixels), or a :class:`ParseFailure`; never raises on any ``text``.

    Raises:
        ValueError: ``fmt`` is not a known format (a caller bug, not a model error).
    """
    fmt = ActionFormat(fmt)
    if not isinstance(text, str):
        return ParseFailure(BAD_VALUE, f"model output must be str, got {type(text).__name__}", repr(text))
    try:
        if fmt is ActionFormat.UIS1:
            args = _json_object(_tag_block(text, "action"), "action block")
        else:
            call = _json_object(_tag_block(text, "tool_call"), "tool call")
            name = call.get("name")
            if name != _TOOL_NAME[fmt]:
                raise _Failure(UNKNOWN_ACTION, f"expected tool {_TOOL_NAME[fmt]!r}, got {_quote(name)}")
            args = call.get("arguments")
            if isinstance(args, str):  # some servers return arguments as a JSON string
                args = _json_object(args, "tool call arguments")
            if not isinstance(args, Mapping):
                raise _Failure(
                    BAD_JSON if args is not None else MISSING_FIELD, "tool call needs an 'arguments' object"
                )
        to_device = _point_reader(fmt, geometry)
        if fmt in (ActionFormat.QWEN25VL_COMPUTER, ActionFormat.QWEN3VL_COMPUTER):
            return _computer_action(args, to_device)
        return _mobile_action(args, to_device)
    except _Failure as failure:
        return ParseFailure(failure.reason, failure.detail, text)


def _tag_block(text: str, tag: str) -> str:
    """Content of the first ``<tag>...</tag>`` (plain ``find``: linear time on hostile input)."""
    start = text.find(f"<{tag}>")
    if start < 0:
        raise _Failure(NO_TOOL_CALL, f"no <{tag}> block in the output")
    start += len(tag) + 2
    end = text.find(f"</{tag}>", start)
    if end < 0:
        raise _Failure(NO_TOOL_CALL, f"<{tag}> block is not closed (truncated output?)")
    return text[start:end]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json_object(block: str, what: str) -> Mapping[str, Any]:
    try:
        value = json.loads(block.strip(), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError; deep nesting recurses
        raise _Failure(BAD_JSON, f"{what} is not valid JSON: {str(exc)[:_DETAIL_TEXT_LIMIT]}") from None
    if not isinstance(value, dict):
        raise _Failure(BAD_JSON, f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _DETAIL_TEXT_LIMIT else text[:_DETAIL_TEXT_LIMIT] + "..."


def _point_reader(fmt: ActionFormat, geometry: ModelGeometry) -> Callable[[Mapping[str, Any], str], Point]:
    """A function reading ``args[key]`` as a model coordinate and returning an on-screen device point."""

    def read(args: Mapping[str, Any], key: str) -> Point:
        value = args.get(key)
        if value is None:
            raise _Failure(MISSING_FIELD, f"{args.get('action')!s:.40} needs {key!r}")
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise _Failure(BAD_COORDINATE, f"{key} must be [x, y], got {_quote(value)}")
        if not all(_is_number(v) and math.isfinite(v) for v in value):
            raise _Failure(BAD_COORDINATE, f"{key} must hold two finite numbers, got {_quote(value)}")
        mx, my = float(value[0]), float(value[1])
        if fmt in _RELATIVE_FORMATS:
            point = (mx * geometry.width / RELATIVE_SCALE, my * geometry.height / RELATIVE_SCALE)
        else:
            point = geometry.to_device((mx, my))
        if not (math.isfinite(point[0]) and math.isfinite(point[1]) and geometry.on_screen(point)):
            raise _Failure(OUT_OF_SCREEN, f"{key} {_quote(value)} lies outside the screenshot")
        return point

    return read


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text(args: Mapping[str, Any], key: str = "text") -> str:
    value = args.get(key)
    if value is None:
        raise _Failure(MISSING_FIELD, f"{args.get('action')!s:.40} needs {key!r}")
    if not isinstance(value, str):
        raise _Failure(BAD_VALUE, f"{key} must be a string, got {_quote(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from "\ud800" escapes cannot be typed or logged
        raise _Failure(BAD_VALUE, f"{key} is not valid Unicode text") from None
    return value


def _seconds(args: Mapping[str, Any], key: str = "time") -> float | None:
    value = args.get(key)
    if value is None:
        return None
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise _Failure(BAD_VALUE, f"{key} must be a non-negative number of seconds, got {_quote(value)}")
    return float(value)


def _status(args: Mapping[str, Any]) -> TerminateStatus:
    value = _text(args, "status").strip().lower()
    # "fail" is what several mobile_use prompts (and UI-S1's data) write for failure.
    status = {
        "success": TerminateStatus.SUCCESS,
        "failure": TerminateStatus.FAILURE,
        "fail": TerminateStatus.FAILURE,
    }
    if value not in status:
        raise _Failure(BAD_VALUE, f"status must be success or failure, got {_quote(value)}")
    return status[value]


_MOBILE_BUTTONS = {
    "back": SystemButton.BACK,
    "home": SystemButton.HOME,
    "menu": SystemButton.MENU,
    "enter": SystemButton.ENTER,
}


def _action_name(args: Mapping[str, Any]) -> str:
    name = args.get("action")
    if name is None:
        raise _Failure(MISSING_FIELD, "arguments need 'action'")
    if not isinstance(name, str):
        raise _Failure(UNKNOWN_ACTION, f"action must be a string, got {_quote(name)}")
    return name


# Actions mobile_use and computer_use spell alike.
_SHARED_ACTIONS: dict[str, Callable[[Mapping[str, Any]], Action]] = {
    "type": lambda args: Action(ActionType.TYPE, text=_text(args)),
    "wait": lambda args: Action(ActionType.WAIT, duration=_seconds(args)),
    "terminate": lambda args: Action(ActionType.TERMINATE, status=_status(args)),
    "answer": lambda args: Action(ActionType.ANSWER, text=_text(args)),
}


def _mobile_action(args: Mapping[str, Any], point: Callable[[Mapping[str, Any], str], Point]) -> Action:
    name = _action_name(args)
    if name in _SHARED_ACTIONS:
        return _SHARED_ACTIONS[name](args)
    if name == "click":
        return Action(ActionType.CLICK, point=point(args, "coordinate"))
    if name == "long_press":
        return Action(ActionType.LONG_PRESS, point=point(args, "coordinate"), duration=_seconds(args))
    if name == "swipe":
        return Action(ActionType.SWIPE, point=point(args, "coordinate"), end=point(args, "coordinate2"))
    if name == "key":
        return Action(ActionType.KEY, keys=(_key_name(_text(args)),))
    if name == "system_button":
        button = _text(args, "button").strip().lower()
        if button not in _MOBILE_BUTTONS:
            raise _Failure(BAD_VALUE, f"button must be Back, Home, Menu or Enter, got {_quote(button)}")
        return Action(ActionType.SYSTEM_BUTTON, button=_MOBILE_BUTTONS[button])
    if name == "open":
        return Action(ActionType.OPEN_APP, text=_text(args))
    raise _Failure(UNKNOWN_ACTION, f"unknown mobile_use action {_quote(name)}")


def _key_name(key: str) -> str:
    key = key.strip().lower()
    if not key or not key.isprintable():
        raise _Failure(BAD_VALUE, f"key name must be printable text, got {_quote(key)}")
    return key


_COMPUTER_CLICKS = {
    "left_click": ActionType.CLICK,
    "right_click": ActionType.RIGHT_CLICK,
    "middle_click": ActionType.MIDDLE_CLICK,
    "double_click": ActionType.DOUBLE_CLICK,
    "triple_click": ActionType.TRIPLE_CLICK,
    "mouse_move": ActionType.MOVE,
}


def _computer_action(args: Mapping[str, Any], point: Callable[[Mapping[str, Any], str], Point]) -> Action:
    name = _action_name(args)
    if name in _SHARED_ACTIONS:
        return _SHARED_ACTIONS[name](args)
    if name in _COMPUTER_CLICKS:
        return Action(_COMPUTER_CLICKS[name], point=point(args, "coordinate"))
    if name == "left_click_drag":
        # The cookbook drags from the current cursor, which a stateless parser cannot know; the drag's
        # start travels in `start_coordinate` (as in Anthropic's computer tool, which Qwen's mirrors).
        return Action(ActionType.DRAG, point=point(args, "start_coordinate"), end=point(args, "coordinate"))
    if name == "key":
        keys = args.get("keys")
        if keys is None:
            raise _Failure(MISSING_FIELD, "key needs 'keys'")
        if isinstance(keys, str):
            keys = [keys]
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
            raise _Failure(BAD_VALUE, f"keys must be a non-empty list of strings, got {_quote(keys)}")
        names = tuple(_key_name(k) for k in keys)
        return Action(ActionType.KEY if len(names) == 1 else ActionType.HOTKEY, keys=names)
    if name in ("scroll", "hscroll"):
        pixels = args.get("pixels")
        if pixels is None:
            raise _Failure(MISSING_FIELD, f"{name} needs 'pixels'")
        if not _is_number(pixels) or not math.isfinite(pixels) or pixels == 0:
            raise _Failure(BAD_VALUE, f"pixels must be a non-zero finite number, got {_quote(pixels)}")
        direction, amount = wheel_scroll(pixels, 0) if name == "hscroll" else wheel_scroll(0, pixels)
        anchor = point(args, "coordinate") if args.get("coordinate") is not None else None
        return Action(ActionType.SCROLL, direction=direction, point=anchor, amount=amount)
    raise _Failure(UNKNOWN_ACTION, f"unknown computer_use action {_quote(name)}")


# --- Formatting ----------------------------------------------------------------------------------------


def format_action(
    action: Action, fmt: ActionFormat | str, geometry: ModelGeometry, *, thought: str | None = None
) -> str:
    """Write a canonical action as the model text of ``fmt`` (coordinates in model space).

    Model coordinates are rounded to integers and clamped onto the model image, so that the text
    always parses back (within one model pixel). Fields a format cannot express are dropped: a
    swipe's duration, a terminate message. A mobile format writes SCROLL as the equivalent swipe.

    Args:
        action: The action, device pixels.
        fmt: Target format.
        geometry: How the screenshot is resized for the model.
        thought: Optional reasoning, written as UI-S1's ``<think>`` block or as plain text before a
            tool call.

    Returns:
        The model text.

    Raises:
        ActionError: the format has no way to express this action (e.g. double_click in mobile_use).
    """
    fmt = ActionFormat(fmt)
    to_model = _point_writer(fmt, geometry)
    args = _shared_args(action)
    if args is None and fmt in (ActionFormat.QWEN25VL_COMPUTER, ActionFormat.QWEN3VL_COMPUTER):
        args = _computer_args(action, to_model)
    elif args is None:
        args = _mobile_args(action, to_model, geometry)
    if fmt is ActionFormat.UIS1:
        body = f"<action>\n{json.dumps(args, ensure_ascii=False)}\n</action>"
        return f"<think>\n{thought}\n</think>\n{body}" if thought is not None else body
    call = {"name": _TOOL_NAME[fmt], "arguments": args}
    body = f"<tool_call>\n{json.dumps(call, ensure_ascii=False)}\n</tool_call>"
    return f"{thought}\n{body}" if thought is not None else body


def _point_writer(fmt: ActionFormat, geometry: ModelGeometry) -> Callable[[Point], list[int]]:
    if fmt in _RELATIVE_FORMATS:
        limit_x = limit_y = RELATIVE_SCALE - 1

        def scale(p: Point) -> tuple[float, float]:
            return p[0] / geometry.width * RELATIVE_SCALE, p[1] / geometry.height * RELATIVE_SCALE
    else:
        limit_x, limit_y = geometry.resized_width - 1, geometry.resized_height - 1
        scale = geometry.to_model

    def write(point: Point) -> list[int]:
        mx, my = scale(point)
        # Clamp: a device point on the last pixel row can round up to the image's edge, which is off-screen.
        return [min(max(round(mx), 0), limit_x), min(max(round(my), 0), limit_y)]

    return write


def _number(value: float) -> int | float:
    """Seconds as the models write them: integers without a trailing .0."""
    return int(value) if float(value).is_integer() else value


_BUTTON_NAMES = {
    SystemButton.BACK: "Back",
    SystemButton.HOME: "Home",
    SystemButton.MENU: "Menu",
    SystemButton.ENTER: "Enter",
}


def _shared_args(action: Action) -> dict[str, Any] | None:
    """Arguments of the actions mobile_use and computer_use spell alike; None for the others."""
    t = action.type
    if t is ActionType.TYPE:
        return {"action": "type", "text": action.text}
    if t is ActionType.WAIT:
        args = {"action": "wait"}
        if action.duration is not None:
            args["time"] = _number(action.duration)
        return args
    if t is ActionType.TERMINATE:
        return {"action": "terminate", "status": action.status.value}
    if t is ActionType.ANSWER:
        return {"action": "answer", "text": action.text}
    return None


def _mobile_args(
    action: Action, to_model: Callable[[Point], list[int]], geometry: ModelGeometry
) -> dict[str, Any]:
    t = action.type
    if t is ActionType.CLICK:
        return {"action": "click", "coordinate": to_model(action.point)}
    if t is ActionType.LONG_PRESS:
        args = {"action": "long_press", "coordinate": to_model(action.point)}
        if action.duration is not None:
            args["time"] = _number(action.duration)
        return args
    if t is ActionType.SWIPE:
        return {"action": "swipe", "coordinate": to_model(action.point), "coordinate2": to_model(action.end)}
    if t is ActionType.SCROLL:
        screen = (geometry.width, geometry.height)
        start, end = scroll_stroke(action.direction, screen, action.point, action.amount)
        return {"action": "swipe", "coordinate": to_model(start), "coordinate2": to_model(end)}
    if t is ActionType.KEY:
        return {"action": "key", "text": action.keys[0]}
    if t is ActionType.SYSTEM_BUTTON and action.button in _BUTTON_NAMES:
        return {"action": "system_button", "button": _BUTTON_NAMES[action.button]}
    if t is ActionType.OPEN_APP:
        return {"action": "open", "text": action.text}
    raise ActionError(f"mobile_use cannot express {_describe(action)}")


_COMPUTER_CLICK_NAMES = {v: k for k, v in _COMPUTER_CLICKS.items()}


def _computer_args(action: Action, to_model: Callable[[Point], list[int]]) -> dict[str, Any]:
    t = action.type
    if t in _COMPUTER_CLICK_NAMES:
        return {"action": _COMPUTER_CLICK_NAMES[t], "coordinate": to_model(action.point)}
    if t is ActionType.DRAG:
        return {
            "action": "left_click_drag",
            "start_coordinate": to_model(action.point),
            "coordinate": to_model(action.end),
        }
    if t in (ActionType.KEY, ActionType.HOTKEY):
        return {"action": "key", "keys": list(action.keys)}
    if t is ActionType.SCROLL:
        dx, dy = wheel_delta(action.direction, action.amount)
        args = {"action": "scroll", "pixels": dy} if dy else {"action": "hscroll", "pixels": dx}
        if action.point is not None:
            args["coordinate"] = to_model(action.point)
        return args
    raise ActionError(f"computer_use cannot express {_describe(action)}")


def _describe(action: Action) -> str:
    return action.type.value + (f" {action.button.value}" if action.button is not None else "")


def model_geometry_for(
    fmt: ActionFormat | str,
    width: int,
    height: int,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> ModelGeometry:
    """The geometry of a ``width`` x ``height`` screenshot for the model family ``fmt`` is written for.

    Qwen3-VL resizes by 32-pixel blocks, Qwen2.5-VL (and UI-S1, a Qwen2.5-VL fine-tune) by 28.
    """
    from guiagent.actions.coords import QWEN3VL_FACTOR, QWEN25VL_FACTOR, model_geometry

    factor = QWEN3VL_FACTOR if ActionFormat(fmt) in _RELATIVE_FORMATS else QWEN25VL_FACTOR
    return model_geometry(width, height, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
