"""The data contract: validation of actions and lossless JSON round trips without pickle."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guiagent.types import (
    Action,
    ActionType,
    Direction,
    EpisodeStatus,
    Observation,
    Outcome,
    Step,
    Task,
    Trajectory,
    dumps,
    from_json,
)

coords = st.floats(min_value=0, max_value=4000, allow_nan=False, allow_infinity=False)
points = st.tuples(coords, coords)
texts = st.text(max_size=40)

actions = st.one_of(
    st.builds(Action.click, coords, coords),
    st.builds(Action.long_press, coords, coords, st.none() | st.floats(0.1, 5)),
    st.builds(Action.swipe, points, points, st.none() | st.floats(0.05, 2)),
    st.builds(Action.scroll, st.sampled_from(list(Direction)), st.none() | points),
    st.builds(Action.type_text, texts),
    st.builds(Action, st.just(ActionType.HOTKEY), keys=st.lists(st.sampled_from(["ctrl", "c", "alt"]), min_size=1, max_size=3).map(tuple)),
    st.builds(Action.system_button, st.sampled_from(["back", "home", "menu", "enter"])),
    st.builds(Action.open_app, texts),
    st.builds(Action.wait, st.none() | st.floats(0, 10)),
    st.builds(Action.answer, texts),
    st.builds(Action.terminate, st.sampled_from(["success", "failure"]), st.none() | texts),
)


@given(actions)
def test_action_json_round_trip(action: Action) -> None:
    assert Action.from_json(json.loads(json.dumps(action.to_json()))) == action


@given(st.lists(actions, max_size=4), st.binary(max_size=64))
def test_trajectory_json_round_trip(acts: list[Action], png: bytes) -> None:
    obs = Observation(1080, 2400, screenshot=png or b"x", a11y_tree="<hierarchy/>", instruction="open wifi",
                      extras={"app": "settings", "n": [1, 2]})
    steps = [Step(i, obs, a, response="<tool_call>…</tool_call>", reward=0.5, logprobs=(-0.1, -2.0),
                  timings={"policy": 0.2}) for i, a in enumerate(acts)]
    traj = Trajectory("ep-1", "task-1", 7, "sim-0", "step-3", steps=steps,
                      outcome=Outcome(EpisodeStatus.SUCCESS, 1.0), instruction="open wifi", timings={"total": 1.5})
    assert from_json(Trajectory, json.loads(dumps(traj))) == traj


def test_action_requires_exactly_its_fields() -> None:
    with pytest.raises(ValueError, match="click needs point"):
        Action(ActionType.CLICK)
    with pytest.raises(ValueError, match="takes no text"):
        Action(ActionType.CLICK, point=(1, 2), text="x")
    with pytest.raises(ValueError, match="at least one key"):
        Action(ActionType.HOTKEY, keys=())
    with pytest.raises(ValueError):
        Action.scroll("sideways")


def test_swipe_direction_is_the_finger_direction() -> None:
    assert Action.swipe((500, 1800), (500, 600)).swipe_direction() is Direction.UP
    assert Action.swipe((100, 100), (900, 150)).swipe_direction() is Direction.RIGHT
    assert Direction.DOWN.opposite() is Direction.UP


def test_observation_needs_an_image_and_a_positive_size() -> None:
    with pytest.raises(ValueError, match="screenshot"):
        Observation(10, 10)
    with pytest.raises(ValueError, match="positive"):
        Observation(0, 10, screenshot=b"x")


def test_observation_decodes_png_bytes_and_paths(tmp_path) -> None:
    from io import BytesIO

    from PIL import Image

    img = Image.new("RGB", (4, 3), (10, 20, 30))
    buf = BytesIO()
    img.save(buf, format="PNG")
    assert Observation(4, 3, screenshot=buf.getvalue()).image().getpixel((0, 0)) == (10, 20, 30)
    img.save(tmp_path / "s.png")
    assert Observation(4, 3, screenshot_path="s.png").image(root=str(tmp_path)).size == (4, 3)


def test_from_json_rejects_unknown_fields_and_wrong_types() -> None:
    good = Task("t", "do it").to_json()
    with pytest.raises(ValueError, match="unknown field"):
        Task.from_json({**good, "instrution": "typo"})
    with pytest.raises(ValueError, match="expected an integer"):
        Task.from_json({**good, "seed": "3"})


# --- Hardening: from_json refuses what the contract cannot hold, naming the field's path -----------------


def test_action_refuses_non_finite_coordinates_and_negative_amounts() -> None:
    nan, inf = float("nan"), float("inf")
    for build, field in [
        (lambda: Action.click(nan, 10), "point"),
        (lambda: Action.swipe((0, 0), (10, -inf)), "end"),
        (lambda: Action.long_press(5, 5, duration=-0.5), "duration"),
        (lambda: Action.wait(inf), "duration"),
        (lambda: Action.scroll("down", amount=-3), "amount"),
        (lambda: Action.scroll("down", amount=nan), "amount"),
    ]:
        with pytest.raises(ValueError, match=field):
            build()
    # Off-screen (negative) coordinates are an action the device may refuse, not a corrupt one.
    assert Action.click(-5, 3000).point == (-5.0, 3000.0)
    assert Action.wait(0).duration == 0.0


def _stored_trajectory() -> dict:
    obs = Observation(1080, 2400, screenshot=b"\x89PNG", instruction="open wifi")
    steps = [Step(0, obs, Action.click(10, 20)), Step(1, obs, Action.long_press(5, 5, duration=1.0))]
    return json.loads(dumps(Trajectory("ep-1", "task-1", 7, "sim-0", "base", steps=steps, info={"k": [1]})))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["steps"][1]["action"].update(point=[float("nan"), 5]),
         r"Trajectory\.steps\[1\]\.action: long_press: point must be finite"),
        (lambda d: d["steps"][0]["action"].update(point=[float("inf"), 5]),
         r"Trajectory\.steps\[0\]\.action: click: point must be finite"),
        (lambda d: d["steps"][1]["action"].update(duration=-1.0),
         r"Trajectory\.steps\[1\]\.action: long_press: duration must be a finite number >= 0"),
        (lambda d: d["steps"][0].update(target_boxes=[[0, 0, float("nan"), 1]]),
         r"Trajectory\.steps\[0\]: target_boxes must be finite"),
        # b64decode drops characters outside the alphabet: "!!!!" used to decode to b"".
        (lambda d: d["steps"][0]["observation"].update(screenshot={"__b64__": "!!!!"}),
         r"Trajectory\.steps\[0\]\.observation\.screenshot: invalid base64"),
        (lambda d: d["steps"][0]["observation"].update(screenshot={"__b64__": "iVBORw=", "x": 1}),
         r"Trajectory\.steps\[0\]\.observation\.screenshot: expected a base64 bytes object"),
        (lambda d: d["steps"][0]["observation"].update(width=0),
         r"Trajectory\.steps\[0\]\.observation: screenshot size must be positive"),
        (lambda d: d["steps"][0]["action"].update(type="tap"),
         r"Trajectory\.steps\[0\]\.action\.type: 'tap' is not a valid ActionType"),
    ],
)
def test_from_json_refuses_a_corrupt_field_by_its_path(change, message) -> None:
    data = _stored_trajectory()
    change(data)
    with pytest.raises(ValueError, match=message):
        from_json(Trajectory, json.loads(json.dumps(data)))


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_from_json_accepts_only_the_nesting_dumps_writes() -> None:
    from guiagent.types import MAX_JSON_DEPTH

    # Trajectory (1) > info (2) > "k" list ...: MAX_JSON_DEPTH containers in all, the most either side takes.
    deepest = _nested(MAX_JSON_DEPTH - 2)
    data = {**_stored_trajectory(), "info": {"k": deepest}}
    trajectory = from_json(Trajectory, data)
    assert from_json(Trajectory, json.loads(dumps(trajectory))) == trajectory
    too_deep = rf"Trajectory\.info\.k(\[0\])+: nested deeper than {MAX_JSON_DEPTH} "
    with pytest.raises(ValueError, match=too_deep):
        from_json(Trajectory, {**data, "info": {"k": [deepest]}})
    # Deeper than json.dumps can go (its recursion limit): refused by path, not a RecursionError.
    with pytest.raises(ValueError, match="nested deeper"):
        from_json(Trajectory, {**data, "info": {"k": _nested(5000)}})
    # And dumps never writes a record that from_json would refuse.
    with pytest.raises(ValueError, match="nested deeper"):
        dumps(dataclasses.replace(trajectory, info={"k": [deepest]}))
