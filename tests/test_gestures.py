"""One gesture rule: a SCROLL is one finger stroke (or one wheel turn), the same in the converters, the model
formats and every env.

The device checks read the stroke back from MobileSim's own input log (``MobileSim.inputs()``), whichever
path it came by: in-process, the real ``adb`` binary through the virtual adbd, or ``AndroidEnv`` through the
adb server. Screen for the phone examples: 1080 x 2400 device pixels.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guiagent.actions import (
    SCROLL_TRAVEL,
    format_action,
    from_computer13,
    from_osworld_pyautogui,
    model_geometry_for,
    parse_action,
    scroll_stroke,
    scroll_to_swipe,
    to_aitw,
    to_computer13,
    to_odyssey,
    to_osworld_pyautogui,
    wheel_delta,
    wheel_scroll,
)
from guiagent.envs.android.appium_env import AppiumEnv
from guiagent.envs.android.config import AppiumEnvConfig
from guiagent.envs.sim.env import MobileSimEnv
from guiagent.errors import ActionError
from guiagent.types import Action, Direction

W, H = 1080, 2400
DIRECTIONS = list(Direction)
needs_adb = pytest.mark.skipif(shutil.which("adb") is None, reason="needs the Debian adb binary")


def converted_stroke(action: Action, width: int = W, height: int = H) -> tuple[int, int, int, int]:
    """The finger path a dataset converter writes for ``action``, as ``input swipe`` arguments."""
    swipe = scroll_to_swipe(action, width, height)
    return (*map(round, swipe.point), *map(round, swipe.end))


# --- The rule, by hand --------------------------------------------------------------------------------------


def test_the_finger_starts_on_the_anchor_and_moves_against_the_view():
    # Default anchor: the centre (540, 1200). Default travel: 0.3 of the side, 0.3*2400 = 720, 0.3*1080 = 324.
    assert SCROLL_TRAVEL == 0.3
    assert scroll_stroke("down", (W, H)) == ((540, 1200), (540, 480))  # view down: finger up
    assert scroll_stroke("up", (W, H)) == ((540, 1200), (540, 1920))
    assert scroll_stroke("right", (W, H)) == ((540, 1200), (216, 1200))  # view right: finger left
    assert scroll_stroke("left", (W, H)) == ((540, 1200), (864, 1200))
    # An anchor and an amount (pixels of finger travel): 300 - 250 = 50.
    assert scroll_stroke("down", (W, H), (100, 300), 250) == ((100, 300), (100, 50))
    # Amount 0 means the default travel, not a tap.
    assert scroll_stroke("left", (1000, 2000), None, 0) == ((500, 1000), (800, 1000))


def test_the_stroke_is_whole_pixels_clamped_onto_the_screen():
    # 2300 + 600 = 2900 stops at the last row, 2399; 10 - 600 stops at column 0.
    assert scroll_stroke("up", (W, H), (100, 2300), 600) == ((100, 2300), (100, 2399))
    assert scroll_stroke("right", (W, H), (10, 500), 600) == ((10, 500), (0, 500))
    # An odd screen: centre (540.5, 1200.5) rounds (half to even) to (540, 1200); 0.3*2401 = 720.3 -> 720.
    assert scroll_stroke("down", (1081, 2401)) == ((540, 1200), (540, 480))
    # An anchor on the far edge (x = width, as datasets allow) starts on the last column.
    assert scroll_stroke("up", (W, H), (W, 100), 50) == ((W - 1, 100), (W - 1, 150))
    with pytest.raises(ActionError, match="magnitude"):
        scroll_stroke("down", (W, H), None, -100)


@settings(max_examples=200, deadline=None)
@given(
    direction=st.sampled_from(DIRECTIONS),
    size=st.tuples(st.integers(320, 3000), st.integers(320, 3000)),
    anchor=st.none() | st.tuples(st.floats(0, 1), st.floats(0, 1)),
    amount=st.none() | st.floats(1, 4000),
)
def test_every_stroke_is_on_screen_and_never_moves_with_the_view(direction, size, anchor, amount):
    width, height = size
    point = None if anchor is None else (anchor[0] * width, anchor[1] * height)
    (x1, y1), (x2, y2) = scroll_stroke(direction, size, point, amount)
    assert all(isinstance(v, int) for v in (x1, y1, x2, y2))
    assert 0 <= min(x1, x2) and max(x1, x2) < width and 0 <= min(y1, y2) and max(y1, y2) < height
    dx, dy = x2 - x1, y2 - y1
    view = {Direction.UP: (0, -1), Direction.DOWN: (0, 1), Direction.LEFT: (-1, 0), Direction.RIGHT: (1, 0)}
    vx, vy = view[direction]
    # Along the scroll axis, against the view (or of length 0 when the anchor sits on that edge).
    assert dx * vx + dy * vy <= 0 and dx * vy == dy * vx == 0


# --- The wheel rule -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "delta"), [("up", (0, 5)), ("down", (0, -5)), ("right", (5, 0)), ("left", (-5, 0))]
)
def test_the_wheel_turns_with_pyautogui_signs_in_every_format(direction, delta):
    # pyautogui / computer_13: dy > 0 scrolls up, dx > 0 right; 5 clicks when the SCROLL gives no amount.
    assert wheel_delta(direction) == delta
    assert wheel_scroll(*delta) == (Direction(direction), 5.0)
    dx, dy = delta
    anchored = Action.scroll(direction, (960, 540))
    code = to_osworld_pyautogui(anchored)
    assert code == (f"pyautogui.scroll({dy}" if dy else f"pyautogui.hscroll({dx}") + ", x=960, y=540)"
    assert from_osworld_pyautogui(code) == (Action.scroll(direction, (960, 540), 5),)
    records = to_computer13(anchored)
    assert records[-1] == {"action_type": "SCROLL", "parameters": {"dx": dx, "dy": dy}}
    assert from_computer13(records) == Action.scroll(direction, (960, 540), 5)
    # Qwen computer_use: `scroll` pixels carry dy, `hscroll` pixels dx, with the same signs.
    g = model_geometry_for("qwen25vl_computer", 1920, 1080)
    text = format_action(Action.scroll(direction, amount=3), "qwen25vl_computer", g)
    call = json.loads(text.removeprefix("<tool_call>").removesuffix("</tool_call>"))
    sign = 1 if direction in ("up", "right") else -1
    assert call["arguments"] == {"action": "scroll" if dy else "hscroll", "pixels": 3 * sign}
    assert parse_action(text, "qwen25vl_computer", g) == Action.scroll(direction, amount=3)


def test_a_wheel_turn_needs_exactly_one_axis():
    for dx, dy in ((0, 0), (1, 2)):
        with pytest.raises(ActionError, match="exactly one axis"):
            wheel_scroll(dx, dy)
    assert wheel_delta("down", 2.5) == (0, -2.5) and wheel_delta("up", 3.0) == (0, 3)  # whole numbers as int


# --- Converters and model formats write the stroke ----------------------------------------------------------


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize(("anchor", "amount"), [(None, None), ((300, 1500), 400)])
def test_converters_and_mobile_formats_write_the_same_stroke(direction, anchor, amount):
    scroll = Action.scroll(direction, anchor, amount)
    (x1, y1), (x2, y2) = scroll_stroke(direction, (W, H), anchor, amount)
    assert converted_stroke(scroll) == (x1, y1, x2, y2)
    aitw = to_aitw(scroll, W, H)
    assert aitw.touch_yx == (y1 / H, x1 / W) and aitw.lift_yx == (y2 / H, x2 / W)
    swipe = Action.swipe((x1, y1), (x2, y2))
    assert to_odyssey(scroll, W, H) == to_odyssey(swipe, W, H)
    for fmt in ("qwen25vl_mobile", "qwen3vl_mobile", "uis1"):
        g = model_geometry_for(fmt, W, H)
        # What a model is trained to emit for the scroll is, token for token, the swipe of the stroke.
        assert format_action(scroll, fmt, g) == format_action(swipe, fmt, g)


# --- Every env performs the stroke --------------------------------------------------------------------------


def last_swipe(sim) -> tuple:
    event = sim.inputs()[-1]
    assert event[0] == "swipe", event
    return event[1:]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_mobilesim_env_performs_the_converted_stroke(direction):
    env = MobileSimEnv()
    env.reset()
    env.execute(Action.open_app("Contacts"))
    for scroll in (Action.scroll(direction), Action.scroll(direction, (300, 1500), 400)):
        env.execute(scroll)
        assert last_swipe(env.sim) == (*converted_stroke(scroll), 300)


def test_appium_env_hands_the_converted_stroke_to_its_touch_pointer(monkeypatch):
    # No Appium server here: stand in for the driver at the one method that sends the W3C pointer actions.
    env = AppiumEnv.__new__(AppiumEnv)
    env.config = AppiumEnvConfig(udid="emulator-5554", system_port=8200, mjpeg_server_port=9200)
    env._size = (W, H)
    gestures = []
    monkeypatch.setattr(env, "_gesture", lambda points, press_s, move_ms: gestures.append((points, move_ms)))
    for direction in DIRECTIONS:
        env.execute(Action.scroll(direction))
        x1, y1, x2, y2 = converted_stroke(Action.scroll(direction))
        assert gestures[-1] == ([(x1, y1), (x2, y2)], env.config.swipe_ms)


@pytest.fixture(scope="module")
def served():
    """MobileSim behind its virtual adbd, a private adb server and an AndroidEnv on it (``ServedSim``); all
    stopped at the end of the module, also when a test fails."""
    from guiagent.envs.sim.served import adb_served_mobilesim

    with adb_served_mobilesim() as served:
        yield served


@needs_adb
@pytest.mark.timeout(120)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_the_adb_binary_and_android_env_perform_the_converted_stroke(served, direction):
    sim, env, port = served.sim, served.env, served.adb_port
    assert env.screen_size == sim.size == (W, H)
    scroll = Action.scroll(direction)
    stroke = converted_stroke(scroll)
    # The converter's swipe sent the way a script would: the real adb binary, the real adb server, adbd.
    command = ["input", "swipe", *map(str, stroke), "300"]
    subprocess.run(["adb", "-P", str(port), "-s", env.config.serial, "shell", *command], check=True,
                   capture_output=True, timeout=20)
    assert last_swipe(sim) == (*stroke, 300)
    # The Android backend executing the canonical SCROLL performs the very same stroke.
    env.execute(scroll)
    assert last_swipe(sim) == (*stroke, env.config.swipe_ms)
    anchored = Action.scroll(direction, (300, 1500), 400)
    env.execute(anchored)
    assert last_swipe(sim) == (*converted_stroke(anchored), env.config.swipe_ms)
