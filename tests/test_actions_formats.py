"""Model output formats: parsing never raises, format -> parse is the identity, coordinates round-trip."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from guiagent.actions import (
    ActionFormat,
    ModelGeometry,
    ParseFailure,
    format_action,
    model_geometry,
    model_geometry_for,
    parse_action,
)
from guiagent.errors import ActionError
from guiagent.types import Action, ActionType, Direction, SystemButton, TerminateStatus

PHONE = model_geometry(1080, 2400)  # -> 1092 x 2408 model pixels (DESIGN.md machine notes)
ALL_FORMATS = list(ActionFormat)
MOBILE_FORMATS = [ActionFormat.QWEN25VL_MOBILE, ActionFormat.QWEN3VL_MOBILE, ActionFormat.UIS1]
COMPUTER_FORMATS = [ActionFormat.QWEN25VL_COMPUTER, ActionFormat.QWEN3VL_COMPUTER]
RELATIVE = (ActionFormat.QWEN3VL_MOBILE, ActionFormat.QWEN3VL_COMPUTER)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def tool_call(name: str, args: dict) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': args})}\n</tool_call>"


# --- Geometry ---------------------------------------------------------------------------------------------


def test_model_geometry_matches_smart_resize_facts() -> None:
    # DESIGN.md: (2400, 1080) -> (2408, 1092) with factor 28; with max_pixels=1280*28*28 -> (1484, 672).
    assert (PHONE.resized_width, PHONE.resized_height) == (1092, 2408)
    small = model_geometry(1080, 2400, max_pixels=1280 * 28 * 28)
    assert (small.resized_width, small.resized_height) == (672, 1484)
    qwen3 = model_geometry_for("qwen3vl_mobile", 1080, 2400)
    assert qwen3.resized_width % 32 == 0 and qwen3.resized_height % 32 == 0
    assert model_geometry_for("uis1", 1080, 2400) == PHONE


def test_model_geometry_rejects_nonsense_sizes() -> None:
    with pytest.raises(ValueError, match="resized_width"):
        ModelGeometry(100, 100, 0, 100)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"width": 0}, "width must be positive, got 0"),  # was ZeroDivisionError inside smart_resize
    ({"height": -5}, "height must be positive"),
    ({"max_pixels": 0}, "max_pixels must be positive"),  # was an AssertionError from qwen_vl_utils
    ({"min_pixels": 10**7, "max_pixels": 784}, "min_pixels 10000000 is above max_pixels 784"),
    ({"max_pixels": 700}, "max_pixels 700 is below one 28x28 patch"),
    ({"max_pixels": 784}, "must be greater than or equal to min_pixels"),  # below qwen_vl_utils' default min
])
def test_model_geometry_names_the_bad_size_or_bound(kwargs, message) -> None:
    args = {"width": 1080, "height": 2400, **kwargs}
    with pytest.raises(ValueError, match=message):
        model_geometry(args.pop("width"), args.pop("height"), **args)


def test_action_space_refuses_bounds_no_screenshot_can_meet() -> None:
    # Checked when the config is built, not at the first screenshot of an evaluation.
    from pydantic import ValidationError

    from guiagent.actions import ActionSpaceConfig

    with pytest.raises(ValidationError, match="min_pixels 20000 is above max_pixels 10000"):
        ActionSpaceConfig(min_pixels=20000, max_pixels=10000)
    with pytest.raises(ValidationError, match="below one 4000x4000 patch"):
        ActionSpaceConfig(factor=4000)  # one patch of 16 M pixels, max_pixels 12.8 M


screen_sizes = st.tuples(st.integers(320, 3840), st.integers(480, 2160), st.booleans()).map(
    lambda t: (t[0], t[1]) if t[2] else (t[1], t[0])  # landscape desktops and portrait phones
)
pixel_limits = st.sampled_from([None, 1280 * 28 * 28, 12800 * 28 * 28])


@SETTINGS
@given(
    size=screen_sizes,
    max_pixels=pixel_limits,
    fx=st.floats(0, 1, exclude_max=True),
    fy=st.floats(0, 1, exclude_max=True),
)
def test_device_model_device_round_trip_within_one_model_pixel(size, max_pixels, fx, fy) -> None:
    g = model_geometry(*size, max_pixels=max_pixels)
    point = (fx * g.width, fy * g.height)
    mx, my = g.to_model(point)
    back = g.to_device((round(mx), round(my)))  # what a model writes is an integer model pixel
    sx, sy = g.scale
    assert abs(back[0] - point[0]) <= sx and abs(back[1] - point[1]) <= sy
    exact = g.to_device((mx, my))
    assert math.isclose(exact[0], point[0], abs_tol=1e-6) and math.isclose(exact[1], point[1], abs_tol=1e-6)


# --- Hand-written parses ------------------------------------------------------------------------------------


def test_parse_qwen25vl_mobile_click_scales_model_pixels_to_device() -> None:
    text = "Tap the icon.\n" + tool_call("mobile_use", {"action": "click", "coordinate": [546, 1204]})
    assert parse_action(text, "qwen25vl_mobile", PHONE) == Action.click(540, 1200)


def test_parse_qwen3vl_uses_coordinates_relative_to_1000() -> None:
    text = tool_call("mobile_use", {"action": "long_press", "coordinate": [500, 250], "time": 2})
    assert parse_action(text, "qwen3vl_mobile", PHONE) == Action.long_press(540, 600, 2)


def test_parse_uis1_think_action_block() -> None:
    text = (
        '<think>\nThe search box is at the top.\n</think>\n<action>\n{"action": "type", "text": "coffee"}\n'
    )
    text += "</action>"
    assert parse_action(text, "uis1", PHONE) == Action.type_text("coffee")
    swipe = (
        '<think>x</think><action>{"action": "swipe", "coordinate": [546, 1800], "coordinate2": [546, 600]}'
    )
    swipe += "</action>"
    parsed = parse_action(swipe, "uis1", PHONE)
    assert parsed.type is ActionType.SWIPE and parsed.swipe_direction() is Direction.UP


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"action": "system_button", "button": "Back"}, Action.system_button("back")),
        ({"action": "system_button", "button": "enter"}, Action.system_button("enter")),
        ({"action": "open", "text": "Settings"}, Action.open_app("Settings")),
        ({"action": "wait", "time": 2}, Action.wait(2)),
        ({"action": "wait"}, Action.wait()),
        ({"action": "terminate", "status": "success"}, Action.terminate("success")),
        ({"action": "terminate", "status": "fail"}, Action.terminate("failure")),
        ({"action": "answer", "text": "42"}, Action.answer("42")),
        ({"action": "key", "text": "volume_up"}, Action(ActionType.KEY, keys=("volume_up",))),
    ],
)
def test_parse_mobile_use_actions(args, expected) -> None:
    assert parse_action(tool_call("mobile_use", args), "qwen25vl_mobile", PHONE) == expected


DESKTOP = model_geometry(1920, 1080)  # -> 1932 x 1092


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"action": "left_click", "coordinate": [966, 546]}, Action.click(960, 540)),
        ({"action": "double_click", "coordinate": [0, 0]}, Action(ActionType.DOUBLE_CLICK, point=(0, 0))),
        ({"action": "key", "keys": ["Ctrl", "c"]}, Action(ActionType.HOTKEY, keys=("ctrl", "c"))),
        ({"action": "key", "keys": ["Return"]}, Action(ActionType.KEY, keys=("return",))),
        # computer_use: positive pixels scroll up, negative scroll down (the cookbook's convention).
        ({"action": "scroll", "pixels": -5}, Action.scroll("down", amount=5)),
        ({"action": "scroll", "pixels": 3, "coordinate": [966, 546]}, Action.scroll("up", (960, 540), 3)),
        ({"action": "hscroll", "pixels": 2}, Action.scroll("right", amount=2)),
        (
            {"action": "left_click_drag", "start_coordinate": [0, 0], "coordinate": [966, 546]},
            Action(ActionType.DRAG, point=(0, 0), end=(960, 540)),
        ),
    ],
)
def test_parse_computer_use_actions(args, expected) -> None:
    assert parse_action(tool_call("computer_use", args), "qwen25vl_computer", DESKTOP) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I will click the button.", "no_tool_call"),
        (
            '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [1, 2]}}',
            "no_tool_call",
        ),
        ("<tool_call>{not json}</tool_call>", "bad_json"),
        (
            '<tool_call>{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [NaN, 2]}}'
            "</tool_call>",
            "bad_json",
        ),
        (
            '<tool_call>{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [Infinity, 2]}}'
            "</tool_call>",
            "bad_json",
        ),
        ("<tool_call>[1, 2]</tool_call>", "bad_json"),
        ("<tool_call>" + "[" * 100_000 + "</tool_call>", "bad_json"),
        (tool_call("computer_use", {"action": "left_click", "coordinate": [1, 2]}), "unknown_action"),
        (tool_call("mobile_use", {"action": "fly"}), "unknown_action"),
        (tool_call("mobile_use", {"action": ["click"]}), "unknown_action"),
        (tool_call("mobile_use", {"coordinate": [1, 2]}), "missing_field"),
        (tool_call("mobile_use", {"action": "click"}), "missing_field"),
        (tool_call("mobile_use", {"action": "swipe", "coordinate": [1, 2]}), "missing_field"),
        (tool_call("mobile_use", {"action": "click", "coordinate": [1]}), "bad_coordinate"),
        (tool_call("mobile_use", {"action": "click", "coordinate": ["1", "2"]}), "bad_coordinate"),
        (tool_call("mobile_use", {"action": "click", "coordinate": [True, 2]}), "bad_coordinate"),
        (
            '<tool_call>{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [1e400, 2]}}'
            "</tool_call>",
            "bad_coordinate",
        ),  # a JSON number too big for a float reads as inf
        (tool_call("mobile_use", {"action": "click", "coordinate": [-1, 2]}), "out_of_screen"),
        (tool_call("mobile_use", {"action": "click", "coordinate": [1092, 5]}), "out_of_screen"),
        (tool_call("mobile_use", {"action": "click", "coordinate": [10**30, 5]}), "out_of_screen"),
        (tool_call("mobile_use", {"action": "type", "text": 5}), "bad_value"),
        (tool_call("mobile_use", {"action": "type", "text": "\ud800"}), "bad_value"),
        (tool_call("mobile_use", {"action": "system_button", "button": "Power"}), "bad_value"),
        (tool_call("mobile_use", {"action": "terminate", "status": "maybe"}), "bad_value"),
        (tool_call("mobile_use", {"action": "wait", "time": -1}), "bad_value"),
    ],
)
def test_parse_failures_carry_their_reason(text, reason) -> None:
    result = parse_action(text, "qwen25vl_mobile", PHONE)
    assert isinstance(result, ParseFailure), result
    assert result.reason == reason, result.detail
    assert result.text == text


def test_qwen3_coordinate_1000_is_off_screen() -> None:
    result = parse_action(
        tool_call("mobile_use", {"action": "click", "coordinate": [1000, 10]}), "qwen3vl_mobile", PHONE
    )
    assert isinstance(result, ParseFailure) and result.reason == "out_of_screen"


def test_arguments_given_as_json_string_are_accepted() -> None:
    text = '<tool_call>{"name": "mobile_use", "arguments": "{\\"action\\": \\"wait\\"}"}</tool_call>'
    assert parse_action(text, "qwen25vl_mobile", PHONE) == Action.wait()


def test_format_rejects_actions_the_format_cannot_express() -> None:
    with pytest.raises(ActionError, match="mobile_use cannot express double_click"):
        format_action(Action(ActionType.DOUBLE_CLICK, point=(1, 1)), "qwen25vl_mobile", PHONE)
    with pytest.raises(ActionError, match="computer_use cannot express open_app"):
        format_action(Action.open_app("Chrome"), "qwen25vl_computer", DESKTOP)


def test_mobile_formats_write_a_scroll_as_the_swipe_that_performs_it() -> None:
    text = format_action(Action.scroll("down"), "qwen25vl_mobile", PHONE)
    parsed = parse_action(text, "qwen25vl_mobile", PHONE)
    assert parsed.type is ActionType.SWIPE and parsed.swipe_direction() is Direction.UP  # finger moves up


def test_format_clamps_the_last_device_pixel_onto_the_model_image() -> None:
    g = model_geometry(3840, 2160, max_pixels=1280 * 28 * 28)
    corner = Action.click(g.width - 0.5, g.height - 0.5)
    for fmt in ("qwen25vl_computer", "qwen3vl_computer"):
        assert parse_action(format_action(corner, fmt, g), fmt, g).type is ActionType.CLICK


def test_uis1_writes_thought_in_a_think_block() -> None:
    text = format_action(Action.system_button("home"), "uis1", PHONE, thought="Go home first.")
    assert (
        text == '<think>\nGo home first.\n</think>\n<action>\n{"action": "system_button", "button": "Home"}\n'
        "</action>"
    )


# --- Property: parsing never raises ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
action_names = st.sampled_from(
    [
        "click",
        "long_press",
        "swipe",
        "type",
        "key",
        "system_button",
        "open",
        "wait",
        "terminate",
        "answer",
        "left_click",
        "scroll",
        "hscroll",
        "left_click_drag",
        "mouse_move",
        "double_click",
        "triple_click",
        "right_click",
        "middle_click",
    ]
)
argument_keys = st.sampled_from(
    ["coordinate", "coordinate2", "start_coordinate", "text", "time", "button", "status", "keys", "pixels"]
)
hostile_args = st.builds(
    lambda name, extra: {"action": name, **extra},
    action_names,
    st.dictionaries(
        argument_keys, json_values | st.lists(st.floats() | st.integers(), max_size=3), max_size=4
    ),
)


def wrap(fmt: ActionFormat, payload: str) -> str:
    if fmt is ActionFormat.UIS1:
        return f"<think>t</think><action>{payload}</action>"
    return f"<tool_call>{payload}</tool_call>"


@SETTINGS
@given(
    text=st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    fmt=st.sampled_from(ALL_FORMATS),
)
def test_parse_never_raises_on_arbitrary_text(text, fmt) -> None:
    for candidate in (text, wrap(fmt, text)):
        assert isinstance(parse_action(candidate, fmt, PHONE), (Action, ParseFailure))


@SETTINGS
@given(
    args=hostile_args,
    fmt=st.sampled_from(ALL_FORMATS),
    cut=st.integers(0, 400),
    name=st.sampled_from(["mobile_use", "computer_use", None, 7]),
)
def test_parse_never_raises_on_hostile_json(args, fmt, cut, name) -> None:
    payload = json.dumps(args) if fmt is ActionFormat.UIS1 else json.dumps({"name": name, "arguments": args})
    text = wrap(fmt, payload)
    for candidate in (text, text[:cut]):  # whole, and truncated anywhere
        result = parse_action(candidate, fmt, PHONE)
        assert isinstance(result, (Action, ParseFailure))
        if isinstance(result, Action):  # whatever parses is executable: every point on the screen
            assert all(PHONE.on_screen(p) for p in result.points())


@SETTINGS
@given(
    fmt=st.sampled_from(ALL_FORMATS),
    x=st.one_of(st.integers(-(10**40), 10**40), st.floats()),
    y=st.integers(0, 10),
)
def test_out_of_screen_or_non_finite_coordinates_never_become_actions(fmt, x, y) -> None:
    name = "left_click" if fmt in COMPUTER_FORMATS else "click"
    args = {"action": name, "coordinate": [x, y]}
    text = wrap(
        fmt,
        json.dumps(args)
        if fmt is ActionFormat.UIS1
        else json.dumps(
            {"name": ("computer_use" if fmt in COMPUTER_FORMATS else "mobile_use"), "arguments": args}
        ),
    )
    result = parse_action(text, fmt, PHONE)
    if isinstance(result, Action):
        assert PHONE.on_screen(result.point)
    else:
        assert result.reason in ("out_of_screen", "bad_coordinate", "bad_json")


# --- Property: format -> parse is the identity -----------------------------------------------------------

geometries = st.builds(lambda size, mp: model_geometry(*size, max_pixels=mp), screen_sizes, pixel_limits)
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
seconds = (
    st.none() | st.integers(0, 30).map(float) | st.floats(0, 30, allow_nan=False).map(lambda v: round(v, 2))
)
key_names = st.text(st.characters(min_codepoint=ord("a"), max_codepoint=ord("z")), min_size=1, max_size=8)


def points(g: ModelGeometry):
    return st.tuples(st.floats(0, g.width, exclude_max=True), st.floats(0, g.height, exclude_max=True))


def mobile_actions(g: ModelGeometry):
    p = points(g)
    return st.one_of(
        p.map(lambda q: Action(ActionType.CLICK, point=q)),
        st.builds(lambda q, d: Action(ActionType.LONG_PRESS, point=q, duration=d), p, seconds),
        st.builds(lambda a, b: Action(ActionType.SWIPE, point=a, end=b), p, p),
        texts.map(Action.type_text),
        key_names.map(lambda k: Action(ActionType.KEY, keys=(k,))),
        st.sampled_from([SystemButton.BACK, SystemButton.HOME, SystemButton.MENU, SystemButton.ENTER]).map(
            Action.system_button
        ),
        texts.map(Action.open_app),
        seconds.map(Action.wait),
        st.sampled_from(list(TerminateStatus)).map(Action.terminate),
        texts.map(Action.answer),
    )


def computer_actions(g: ModelGeometry):
    p = points(g)
    clicks = st.sampled_from(
        [
            ActionType.CLICK,
            ActionType.RIGHT_CLICK,
            ActionType.MIDDLE_CLICK,
            ActionType.DOUBLE_CLICK,
            ActionType.TRIPLE_CLICK,
            ActionType.MOVE,
        ]
    )
    return st.one_of(
        st.builds(lambda t, q: Action(t, point=q), clicks, p),
        st.builds(lambda a, b: Action(ActionType.DRAG, point=a, end=b), p, p),
        st.lists(key_names, min_size=1, max_size=3).map(
            lambda ks: Action(ActionType.KEY if len(ks) == 1 else ActionType.HOTKEY, keys=tuple(ks))
        ),
        texts.map(Action.type_text),
        st.builds(
            lambda d, q, n: Action.scroll(d, q, n),
            st.sampled_from(list(Direction)),
            st.none() | p,
            st.integers(1, 50).map(float),
        ),
        seconds.map(Action.wait),
        st.sampled_from(list(TerminateStatus)).map(Action.terminate),
        texts.map(Action.answer),
    )


def model_space(fmt: ActionFormat, g: ModelGeometry, point) -> tuple[float, float]:
    if fmt in RELATIVE:
        return point[0] / g.width * 1000, point[1] / g.height * 1000
    return g.to_model(point)


def assert_same_in_model_space(fmt, g, original: Action, parsed: Action) -> None:
    assert isinstance(parsed, Action), parsed
    assert parsed.type is original.type
    for a, b in zip(original.points(), parsed.points(), strict=True):
        ma, mb = model_space(fmt, g, a), model_space(fmt, g, b)
        # Rounding moves a point by at most half a model pixel, clamping at the edge by less than one.
        assert abs(ma[0] - mb[0]) <= 1 and abs(ma[1] - mb[1]) <= 1, (ma, mb)
    for name in ("direction", "text", "keys", "button", "duration", "amount", "status"):
        assert getattr(parsed, name) == getattr(original, name), name


@SETTINGS
@given(data=st.data(), g=geometries, fmt=st.sampled_from(MOBILE_FORMATS))
def test_format_then_parse_is_identity_for_mobile_formats(data, g, fmt) -> None:
    action = data.draw(mobile_actions(g))
    assert_same_in_model_space(fmt, g, action, parse_action(format_action(action, fmt, g), fmt, g))


@SETTINGS
@given(data=st.data(), g=geometries, fmt=st.sampled_from(COMPUTER_FORMATS))
def test_format_then_parse_is_identity_for_computer_formats(data, g, fmt) -> None:
    action = data.draw(computer_actions(g))
    assume(action.type is not ActionType.SCROLL or action.amount)  # a zero scroll is no action
    assert_same_in_model_space(fmt, g, action, parse_action(format_action(action, fmt, g), fmt, g))
