"""The one data contract between guiagent's stages.

Every stage (environments, policy, rollout, rewards, trainer, evaluation) takes and returns these frozen
dataclasses, never ad-hoc dicts. All of them serialise to plain JSON (``to_json`` / ``from_json``)
without pickle: bytes become base64, enums their values, tuples lists.

Coordinates are always **device screen pixels** of the screenshot they refer to, ``(x, y)`` with the
origin at the top-left corner. Conversion to a model's coordinate space happens only at the policy
boundary (see :mod:`guiagent.actions`).
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import io
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JSONValue = Any  # a value json.dumps accepts: None, bool, int, float, str, list, dict
Point = tuple[float, float]
PixelBox = tuple[float, float, float, float]  # (x1, y1, x2, y2) in device pixels, x1 <= x2, y1 <= y2


class ActionType(str, enum.Enum):
    """The canonical action space, shared by phones, desktops and browsers."""

    CLICK = "click"
    LONG_PRESS = "long_press"
    DOUBLE_CLICK = "double_click"
    TRIPLE_CLICK = "triple_click"
    RIGHT_CLICK = "right_click"
    MIDDLE_CLICK = "middle_click"
    MOVE = "move"  # pointer move without a click (desktop hover)
    SWIPE = "swipe"  # a finger moves from `point` to `end`
    SCROLL = "scroll"  # the view scrolls in `direction` (see Direction), optionally at `point`
    DRAG = "drag"  # press at `point`, move to `end`, release (mouse drag / drag-and-drop)
    TYPE = "type"
    KEY = "key"  # one key, `keys == (name,)`
    HOTKEY = "hotkey"  # a chord, `keys == ("ctrl", "c")`
    SYSTEM_BUTTON = "system_button"
    OPEN_APP = "open_app"
    WAIT = "wait"
    ANSWER = "answer"
    TERMINATE = "terminate"


class Direction(str, enum.Enum):
    """A direction on screen: up is towards y = 0.

    For ``SCROLL`` it is the direction the *view* moves over the content, as a mouse wheel or the
    words "scroll down" mean it: scrolling down reveals content further down, so on a touch screen
    the finger moves **up**. For a ``SWIPE`` the direction of the finger is ``end - point``.
    """

    UP = "up"
    DOWN = "down"
    LEFT = "left"
    RIGHT = "right"

    def opposite(self) -> Direction:
        return {Direction.UP: Direction.DOWN, Direction.DOWN: Direction.UP,
                Direction.LEFT: Direction.RIGHT, Direction.RIGHT: Direction.LEFT}[self]


class SystemButton(str, enum.Enum):
    BACK = "back"
    HOME = "home"
    MENU = "menu"
    ENTER = "enter"
    APP_SWITCH = "app_switch"


class TerminateStatus(str, enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"


# Which fields each action type requires; everything else must be None.
_REQUIRED: dict[ActionType, tuple[str, ...]] = {
    ActionType.CLICK: ("point",),
    ActionType.LONG_PRESS: ("point",),
    ActionType.DOUBLE_CLICK: ("point",),
    ActionType.TRIPLE_CLICK: ("point",),
    ActionType.RIGHT_CLICK: ("point",),
    ActionType.MIDDLE_CLICK: ("point",),
    ActionType.MOVE: ("point",),
    ActionType.SWIPE: ("point", "end"),
    ActionType.SCROLL: ("direction",),
    ActionType.DRAG: ("point", "end"),
    ActionType.TYPE: ("text",),
    ActionType.KEY: ("keys",),
    ActionType.HOTKEY: ("keys",),
    ActionType.SYSTEM_BUTTON: ("button",),
    ActionType.OPEN_APP: ("text",),
    ActionType.WAIT: (),
    ActionType.ANSWER: ("text",),
    ActionType.TERMINATE: ("status",),
}
_OPTIONAL: dict[ActionType, tuple[str, ...]] = {
    ActionType.LONG_PRESS: ("duration",),
    ActionType.SWIPE: ("duration",),
    ActionType.SCROLL: ("point", "amount"),
    ActionType.DRAG: ("duration",),
    ActionType.WAIT: ("duration",),
    ActionType.TERMINATE: ("text",),
}
_PAYLOAD_FIELDS = ("point", "end", "direction", "text", "keys", "button", "duration", "amount", "status")


@dataclass(frozen=True)
class Action:
    """One canonical action. Coordinates are device pixels ``(x, y)``.

    Construct through the classmethods (``Action.click(x, y)``, ``Action.swipe(...)``) for readability;
    ``__post_init__`` checks that exactly the fields the type needs are set, coordinates are finite, and
    ``duration`` and ``amount`` are finite and not negative (ValueError naming the field).

    Attributes:
        type: The action type.
        point: Click/press/move position; start of a swipe or drag; optional scroll anchor.
        end: End of a swipe or drag.
        direction: Scroll direction of the view (see :class:`Direction`).
        text: Text to type, answer text, app name for ``OPEN_APP``, optional message for ``TERMINATE``.
        keys: Key names, lower case (``("enter",)``, ``("ctrl", "c")``).
        button: The system button.
        duration: Seconds (finite, >= 0): press time for a long press, swipe/drag duration, wait time.
        amount: Scroll amount (finite, >= 0) in wheel clicks (desktop) or pixels (touch); None means the
            device default.
        status: Outcome claimed by ``TERMINATE``.
    """

    type: ActionType
    point: Point | None = None
    end: Point | None = None
    direction: Direction | None = None
    text: str | None = None
    keys: tuple[str, ...] | None = None
    button: SystemButton | None = None
    duration: float | None = None
    amount: float | None = None
    status: TerminateStatus | None = None

    def __post_init__(self) -> None:
        # Coerce the common loose forms (lists, str enums) so that equality and hashing are reliable.
        object.__setattr__(self, "type", ActionType(self.type))
        for name in ("point", "end"):
            value = getattr(self, name)
            if value is not None:
                if len(value) != 2:
                    raise ValueError(f"{self.type.value}: {name} must be (x, y), got {value!r}")
                point = (float(value[0]), float(value[1]))
                if not all(math.isfinite(v) for v in point):
                    raise ValueError(f"{self.type.value}: {name} must be finite, got {value!r}")
                object.__setattr__(self, name, point)
        if self.keys is not None:
            object.__setattr__(self, "keys", tuple(str(k) for k in self.keys))
        for name, enum_type in (("direction", Direction), ("button", SystemButton), ("status", TerminateStatus)):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, enum_type(value))
        for name in ("duration", "amount"):  # seconds; a scroll's magnitude (the direction carries the sign)
            value = getattr(self, name)
            if value is not None:
                number = float(value)
                if not (math.isfinite(number) and number >= 0):
                    raise ValueError(f"{self.type.value}: {name} must be a finite number >= 0, got {value!r}")
                object.__setattr__(self, name, number)
        required = _REQUIRED[self.type]
        allowed = set(required) | set(_OPTIONAL.get(self.type, ()))
        for name in _PAYLOAD_FIELDS:
            value = getattr(self, name)
            if name in required and value is None:
                raise ValueError(f"{self.type.value} needs {name}")
            if name not in allowed and value is not None:
                raise ValueError(f"{self.type.value} takes no {name} (got {value!r})")
        if self.keys is not None and not self.keys:
            raise ValueError(f"{self.type.value} needs at least one key")

    # Readable constructors -------------------------------------------------------------------------
    @classmethod
    def click(cls, x: float, y: float) -> Action:
        return cls(ActionType.CLICK, point=(x, y))

    @classmethod
    def long_press(cls, x: float, y: float, duration: float | None = None) -> Action:
        return cls(ActionType.LONG_PRESS, point=(x, y), duration=duration)

    @classmethod
    def swipe(cls, start: Point, end: Point, duration: float | None = None) -> Action:
        return cls(ActionType.SWIPE, point=start, end=end, duration=duration)

    @classmethod
    def scroll(cls, direction: Direction | str, point: Point | None = None, amount: float | None = None) -> Action:
        return cls(ActionType.SCROLL, direction=Direction(direction), point=point, amount=amount)

    @classmethod
    def type_text(cls, text: str) -> Action:
        return cls(ActionType.TYPE, text=text)

    @classmethod
    def system_button(cls, button: SystemButton | str) -> Action:
        return cls(ActionType.SYSTEM_BUTTON, button=SystemButton(button))

    @classmethod
    def open_app(cls, name: str) -> Action:
        return cls(ActionType.OPEN_APP, text=name)

    @classmethod
    def wait(cls, seconds: float | None = None) -> Action:
        return cls(ActionType.WAIT, duration=seconds)

    @classmethod
    def answer(cls, text: str) -> Action:
        return cls(ActionType.ANSWER, text=text)

    @classmethod
    def terminate(cls, status: TerminateStatus | str, message: str | None = None) -> Action:
        return cls(ActionType.TERMINATE, status=TerminateStatus(status), text=message)

    # Geometry ----------------------------------------------------------------------------------------
    def swipe_direction(self) -> Direction | None:
        """Dominant direction the finger moves for SWIPE/DRAG (ties go to the vertical axis)."""
        if self.point is None or self.end is None:
            return None
        dx, dy = self.end[0] - self.point[0], self.end[1] - self.point[1]
        if abs(dy) >= abs(dx):
            return Direction.DOWN if dy > 0 else Direction.UP
        return Direction.RIGHT if dx > 0 else Direction.LEFT

    def points(self) -> tuple[Point, ...]:
        """Every coordinate this action carries, in order."""
        return tuple(p for p in (self.point, self.end) if p is not None)

    def to_json(self) -> dict[str, JSONValue]:
        return to_json(self)

    @classmethod
    def from_json(cls, data: Mapping[str, JSONValue]) -> Action:
        return from_json(cls, data)


@dataclass(frozen=True)
class Observation:
    """What the agent sees at one step.

    The screenshot is held either as encoded image bytes (PNG or JPEG, in memory, e.g. from a device)
    or as a path into a trajectory store / dataset directory; at least one of them is set.

    Attributes:
        width: Screenshot width in device pixels.
        height: Screenshot height in device pixels.
        screenshot: Encoded image bytes (PNG/JPEG), or None when ``screenshot_path`` is set.
        screenshot_path: Path of the image file, relative to the store that holds it, or absolute.
        a11y_tree: Accessibility tree (uiautomator XML on Android, a11y tree text on desktops).
        instruction: The task's instruction (high-level goal).
        extras: Anything else a source provides (step instruction, app name, URL, ...), JSON values only.
    """

    width: int
    height: int
    screenshot: bytes | None = None
    screenshot_path: str | None = None
    a11y_tree: str | None = None
    instruction: str = ""
    extras: Mapping[str, JSONValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"screenshot size must be positive, got {self.width}x{self.height}")
        if self.screenshot is None and self.screenshot_path is None:
            raise ValueError("an Observation needs screenshot bytes or a screenshot_path")

    def screenshot_source(self, root: str | None = None) -> bytes | str:
        """The screenshot as prompt builders take it: the encoded bytes, else the path (relative paths
        resolved against ``root``)."""
        if self.screenshot is not None:
            return self.screenshot
        import os

        path = self.screenshot_path
        return path if root is None or os.path.isabs(path) else os.path.join(str(root), path)

    def image(self, root: str | None = None):
        """Decode the screenshot into an RGB ``PIL.Image`` (relative paths resolve against ``root``)."""
        from PIL import Image  # deferred: types stays importable without Pillow's import cost

        source = self.screenshot_source(root)
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            return img.convert("RGB")

    def to_json(self) -> dict[str, JSONValue]:
        return to_json(self)

    @classmethod
    def from_json(cls, data: Mapping[str, JSONValue]) -> Observation:
        return from_json(cls, data)


@dataclass(frozen=True)
class Step:
    """One agent step: what was seen, what the policy said, what was done, and what it earned.

    Attributes:
        index: 0-based step index in its trajectory.
        observation: The observation the policy acted on.
        action: The canonical action executed, or None if the response did not parse.
        response: The policy's raw text output ("" for expert/dataset steps).
        parse_error: Why ``response`` did not parse, when ``action`` is None.
        refused: Why the device refused to execute ``action`` (off screen, no equivalent on this device);
            the episode goes on from the unchanged screen.
        reward: Step reward, when one was computed.
        advantage: The advantage the update weighted this step with, once computed (recorded for audit).
        logprobs: Per-token log-probs of the response under the sampling policy.
        token_ids: The response's token ids as the policy generated them (same length as ``logprobs``);
            the trainer scores exactly these tokens, never a re-tokenisation of ``response``.
        matched: Whether the response's action matched the expert action at this step (semi-online
            rollouts, offline evaluation); None where nobody judged it.
        target_boxes: Boxes ``(x1, y1, x2, y2)`` in device pixels of the UI element(s) the expert action
            at this step targets (dataset ground truth, the UI dump); empty when unknown.
        patch: The text that stands for this step in every later prompt instead of ``response`` (UI-S1's
            patch of a mismatched step, arXiv 2509.11543); None when the response itself stands.
        patched: True if this step is context only and never trained on. In UI-S1 semi-online rollouts the
            model's own mismatched response is a sample by default (DESIGN.md: "every generated step is a
            sample") and the patch that replaces it in later prompts is ``patch``.
        timings: Seconds spent per phase of the step (``{"policy": 0.21, "act": 0.05}``).
        info: Anything else, JSON values only.
    """

    index: int
    observation: Observation
    action: Action | None
    response: str = ""
    parse_error: str | None = None
    refused: str | None = None
    reward: float | None = None
    advantage: float | None = None
    logprobs: tuple[float, ...] | None = None
    token_ids: tuple[int, ...] | None = None
    matched: bool | None = None
    target_boxes: tuple[PixelBox, ...] = ()
    patch: str | None = None
    patched: bool = False
    timings: Mapping[str, float] = field(default_factory=dict)
    info: Mapping[str, JSONValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        boxes = tuple(tuple(float(v) for v in box) for box in self.target_boxes)
        for box in boxes:
            if not all(math.isfinite(v) for v in box):
                raise ValueError(f"target_boxes must be finite, got {box!r}")
        object.__setattr__(self, "target_boxes", boxes)
        if self.token_ids is not None:
            object.__setattr__(self, "token_ids", tuple(int(t) for t in self.token_ids))

    def to_json(self) -> dict[str, JSONValue]:
        return to_json(self)

    @classmethod
    def from_json(cls, data: Mapping[str, JSONValue]) -> Step:
        return from_json(cls, data)


class EpisodeStatus(str, enum.Enum):
    SUCCESS = "success"  # the environment (not the agent) says the task is done
    FAILURE = "failure"  # the episode ended and the task is not done
    TIMEOUT = "timeout"  # step or wall-clock budget ran out
    ERROR = "error"  # the environment or policy failed; see Outcome.message


@dataclass(frozen=True)
class Outcome:
    """How an episode ended. ``success`` comes from the environment's own check, never the agent's claim."""

    status: EpisodeStatus
    reward: float = 0.0
    message: str = ""

    @property
    def success(self) -> bool:
        return self.status is EpisodeStatus.SUCCESS

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", EpisodeStatus(self.status))


@dataclass(frozen=True)
class Task:
    """A task an agent is asked to do.

    Attributes:
        task_id: Stable id (``"MobileSim/SettingsToggleWifi/3"``, an AITW episode id, ...).
        instruction: The natural-language goal.
        seed: Seed that fully determines the task's parameters and initial state.
        env: Environment kind that runs it (``"sim"``, ``"android"``, ``"web"``, ``"osworld"``).
        template: Task template / family name (``"SettingsToggleWifi"``), for per-template aggregation.
        max_steps: Step budget.
        params: Template parameters, JSON values only.
        snapshot: The device snapshot the task starts from (an emulator AVD snapshot name); None uses the
            env's configured default.
    """

    task_id: str
    instruction: str
    seed: int = 0
    env: str = "sim"
    template: str = ""
    max_steps: int = 20
    params: Mapping[str, JSONValue] = field(default_factory=dict)
    snapshot: str | None = None

    def to_json(self) -> dict[str, JSONValue]:
        return to_json(self)

    @classmethod
    def from_json(cls, data: Mapping[str, JSONValue]) -> Task:
        return from_json(cls, data)


@dataclass(frozen=True)
class Trajectory:
    """One episode, with everything needed to reproduce and audit it.

    Attributes:
        episode_id: Unique id; episodes are idempotent by it.
        task_id: The task's id.
        seed: The seed the task and environment were reset with.
        env_id: Which device/environment instance ran it.
        policy_version: Version of the weights that sampled it (``"base"``, ``"step-120"``, ``"expert"``).
        steps: The steps, in order.
        outcome: How it ended; None while still running.
        instruction: The task instruction.
        timings: Seconds per phase for the whole episode (``{"reset": 1.2, "total": 30.5}``).
        info: Anything else, JSON values only.
    """

    episode_id: str
    task_id: str
    seed: int
    env_id: str
    policy_version: str
    steps: tuple[Step, ...] = ()
    outcome: Outcome | None = None
    instruction: str = ""
    timings: Mapping[str, float] = field(default_factory=dict)
    info: Mapping[str, JSONValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))

    def __len__(self) -> int:
        return len(self.steps)

    def to_json(self) -> dict[str, JSONValue]:
        return to_json(self)

    @classmethod
    def from_json(cls, data: Mapping[str, JSONValue]) -> Trajectory:
        return from_json(cls, data)


# --- JSON (de)serialisation -----------------------------------------------------------------------------
# A small, explicit walker over dataclass fields: enums → values, bytes → base64, tuples → lists, and
# back using the field type hints. No pickle anywhere: these objects cross process and network borders.

_BYTES_KEY = "__b64__"
# Objects and lists nested in one serialised value (a Trajectory is 1, its steps 2, a Step 3, ...). Both
# directions stop here, far below the interpreter's recursion limit, so whatever from_json accepts dumps
# writes back, and dumps never writes a record that from_json refuses.
MAX_JSON_DEPTH = 100
_TOO_DEEP = f"{{path}}: nested deeper than {MAX_JSON_DEPTH} objects and lists (the most dumps writes)"


def to_json(obj: Any, _depth: int = 0) -> JSONValue:
    """Convert a contract dataclass (or nested values) into JSON-compatible Python values.

    Raises:
        ValueError: objects and lists nest deeper than ``MAX_JSON_DEPTH``.
    """
    is_instance = dataclasses.is_dataclass(obj) and not isinstance(obj, type)
    if _depth >= MAX_JSON_DEPTH and (is_instance or isinstance(obj, (Mapping, list, tuple, bytes))):
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} objects and lists")
    if is_instance:
        return {f.name: to_json(getattr(obj, f.name), _depth + 1) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, bytes):
        return {_BYTES_KEY: base64.b64encode(obj).decode("ascii")}
    if isinstance(obj, Mapping):
        return {str(k): to_json(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v, _depth + 1) for v in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps(to_json(obj))``."""
    return json.dumps(to_json(obj), ensure_ascii=False, **kwargs)


def from_json(cls: type, data: Any) -> Any:
    """Rebuild an instance of dataclass ``cls`` from :func:`to_json` output.

    Strict, so that a corrupt record is refused rather than half-read: every message starts with the
    field's path (``Trajectory.steps[3].action``).

    Raises:
        ValueError: a field is missing, unknown, of the wrong kind, or refused by its class (a NaN
            coordinate, a negative duration); bytes that are not valid base64; objects and lists nested
            deeper than ``MAX_JSON_DEPTH``.
    """
    return _decode(cls, data, cls.__name__, 0)


def _decode(tp: Any, value: Any, path: str, depth: int) -> Any:
    """``value`` as type ``tp``; ``depth`` counts the objects and lists around ``value``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        members = [arg for arg in args if arg is not type(None)]
        if len(members) == 1:  # an optional field: its own error says more than "matches none"
            return _decode(members[0], value, path, depth)
        errors = []
        for arg in members:
            try:
                return _decode(arg, value, path, depth)
            except (ValueError, TypeError, KeyError) as exc:
                errors.append(str(exc))
        raise ValueError(f"{path}: {value!r} matches none of {args}: {errors}")
    if isinstance(value, (Mapping, list, tuple)) and depth >= MAX_JSON_DEPTH:
        raise ValueError(_TOO_DEEP.format(path=path))
    if tp is Any or tp is JSONValue:
        _check_depth(value, path, depth)
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ValueError(f"{path}: expected an object for {tp.__name__}, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = set(value) - names
        if unknown:
            raise ValueError(f"{path}: unknown field(s) {sorted(unknown)} for {tp.__name__}")
        kwargs = {k: _decode(hints[k], v, f"{path}.{k}", depth + 1) for k, v in value.items()}
        try:
            return tp(**kwargs)
        except (ValueError, TypeError) as exc:  # a missing field, or __post_init__ refusing a value
            raise ValueError(f"{path}: {exc}") from None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: {exc}") from None
    if tp is bytes:
        if not (isinstance(value, Mapping) and set(value) == {_BYTES_KEY}
                and isinstance(value[_BYTES_KEY], str)):
            raise ValueError(f"{path}: expected a base64 bytes object {{{_BYTES_KEY!r}: str}}")
        try:
            # validate=True: by default b64decode drops every character outside the alphabet, so that
            # garbage decodes to some (often empty) bytes instead of failing.
            return base64.b64decode(value[_BYTES_KEY], validate=True)
        except ValueError as exc:  # binascii.Error, or a str that is not ASCII
            raise ValueError(f"{path}: invalid base64: {exc}") from None
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{path}: expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{path}: expected {len(args)} items, got {len(value)}")
        return tuple(_decode(a, v, f"{path}[{i}]", depth + 1) for i, (a, v) in enumerate(zip(args, value)))
    if origin in (Mapping, dict) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ValueError(f"{path}: expected an object, got {type(value).__name__}")
        args = typing.get_args(tp)
        vt = args[1] if len(args) == 2 else Any
        return {k: _decode(vt, v, f"{path}.{k}", depth + 1) for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ValueError(f"{path}: expected {tp.__name__}, got {value!r}")
        return value
    return value


def _check_depth(value: Any, path: str, depth: int) -> None:
    """Refuse a free-form JSON value (``info``, ``extras``) whose objects and lists nest deeper than
    ``MAX_JSON_DEPTH`` counted from the top of the record (``depth`` objects and lists surround it)."""
    if isinstance(value, (Mapping, list, tuple)):
        if depth >= MAX_JSON_DEPTH:
            raise ValueError(_TOO_DEEP.format(path=path))
        items = value.items() if isinstance(value, Mapping) else enumerate(value)
        for key, item in items:
            _check_depth(item, f"{path}.{key}" if isinstance(value, Mapping) else f"{path}[{key}]", depth + 1)
