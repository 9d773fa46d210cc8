"""MobileSimEnv: canonical actions on the in-process simulator, and the `guiagent sim` CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from guiagent.envs.sim.cli import parse_command
from guiagent.envs.sim.env import MobileSimEnv
from guiagent.envs.sim.oracle import UIScreen
from guiagent.envs.sim.tasks import make_task
from guiagent.errors import ActionError
from guiagent.types import Action, ActionType, Direction, Trajectory


def screen(env: MobileSimEnv) -> UIScreen:
    return UIScreen(env.sim.dump_ui_xml(), env.screen_size)


def test_observation_carries_png_xml_instruction_and_focus():
    env = MobileSimEnv(width=720, height=1600)
    task = make_task("SettingsToggleWifi", 0)
    obs = env.reset(task)
    assert (obs.width, obs.height) == (720, 1600) == env.screen_size
    assert obs.image().size == (720, 1600)
    assert obs.a11y_tree.startswith("<?xml") and obs.instruction == task.instruction
    assert obs.extras == {"package": "com.guiagent.launcher", "activity": ".Launcher"}


def test_scroll_direction_is_the_view_direction():
    env = MobileSimEnv(seed=0)
    env.reset()
    env.execute(Action.open_app("Contacts"))
    top_names = [n.text for n in screen(env).find(rid="contact_title")]
    env.execute(Action.scroll(Direction.DOWN))  # reveals rows further down: the finger moved up
    scrolled = [n.text for n in screen(env).find(rid="contact_title")]
    assert scrolled[0] != top_names[0] and scrolled[0] in top_names
    env.execute(Action.scroll(Direction.UP))
    assert [n.text for n in screen(env).find(rid="contact_title")] == top_names


def test_actions_map_onto_the_device():
    env = MobileSimEnv(seed=0)
    env.reset(make_task("ShoppingAddItem", 0))
    env.execute(Action.open_app("shopping list"))
    assert env.observe().extras["package"] == "com.guiagent.shopping"
    env.execute(Action.click(*screen(env).first(rid="new_item").center))
    env.execute(Action.type_text("Açaí"))
    env.execute(Action(type=ActionType.KEY, keys=("backspace",)))
    env.execute(Action(type=ActionType.KEY, keys=("KEYCODE_I",)))
    assert screen(env).first(rid="new_item").text == "Açai"
    env.execute(Action(type=ActionType.KEY, keys=("enter",)))
    assert env.sim.state()["shopping"][-1]["name"] == "Açai"
    env.execute(Action.long_press(*screen(env).find(rid="item")[0].center))
    assert screen(env).dialog_shown
    env.execute(Action.system_button("back"))
    env.execute(Action.system_button("home"))
    assert env.observe().extras["activity"] == ".Launcher"
    env.execute(Action.system_button("app_switch"))
    assert env.observe().extras["activity"] == ".RecentsActivity"
    env.execute(Action.wait(0.1))
    env.execute(Action.answer("done"))
    assert env.answer == "done"
    env.execute(Action.terminate("success"))


def test_bad_actions_raise_action_error_before_touching_the_device():
    env = MobileSimEnv()
    env.reset()
    before = env.sim.snapshot()
    for action in (Action.click(1080, 10), Action.click(-1, 5), Action.open_app("Camera"),
                   Action(type=ActionType.RIGHT_CLICK, point=(10, 10)),
                   Action(type=ActionType.HOTKEY, keys=("ctrl", "c")),
                   Action(type=ActionType.KEY, keys=("NOT_A_KEY",))):
        with pytest.raises(ActionError):
            env.execute(action)
    assert env.sim.snapshot() == before


def test_parse_command_reads_simple_commands_and_canonical_json():
    assert parse_command("tap 10 20") == Action.click(10, 20)
    assert parse_command("swipe 1 2 3 4") == Action.swipe((1, 2), (3, 4))
    assert parse_command("scroll down") == Action.scroll("down")
    assert parse_command("type Crème brûlée") == Action.type_text("Crème brûlée")
    assert parse_command("open Shopping List") == Action.open_app("Shopping List")
    assert parse_command("back") == Action.system_button("back")
    assert parse_command('{"type": "answer", "text": "7"}') == Action.answer("7")
    assert parse_command("ui") is None
    with pytest.raises(ValueError):
        parse_command("jump 3")


def _cli(*args: str, stdin: str = "", entry_point: bool = False) -> subprocess.CompletedProcess:
    """Run ``guiagent sim ARGS`` in a subprocess: through the installed console script when
    ``entry_point`` (checks the registration), else through the sim sub-app alone (faster start-up)."""
    if entry_point:
        command = [str(Path(sys.executable).with_name("guiagent")), "sim"]
    else:
        command = [sys.executable, "-c", "from guiagent.envs.sim.cli import app; app()"]
    return subprocess.run([*command, *args], input=stdin, capture_output=True, text=True, timeout=120)


def test_cli_runs_the_oracle_and_a_person_and_takes_screenshots(tmp_path: Path):
    listing = _cli("tasks", "--seed", "2", entry_point=True)
    assert listing.returncode == 0 and "SettingsToggleWifi" in listing.stdout
    assert len(listing.stdout.strip().splitlines()) >= 20

    out = tmp_path / "oracle"
    result = _cli("run", "ClockToggleAlarm", "--seed", "1", "--out", str(out), "--oracle")
    assert result.returncode == 0, result.stderr
    trajectory = Trajectory.from_json(json.loads((out / "trajectory.json").read_text()))
    assert trajectory.outcome.success and len(trajectory.steps) >= 2
    for step in trajectory.steps:
        assert Image.open(out / step.observation.screenshot_path).size == (1080, 2400)

    task = make_task("ShoppingAddItem", 0)
    typed = f"open Shopping List\nui\ntap 540 337\ntype {task.params['item']}\nenter\ndone\n"
    human = _cli("run", "ShoppingAddItem", "--seed", "0", "--out", str(tmp_path / "human"), stdin=typed)
    assert human.returncode == 0, human.stdout + human.stderr
    assert "SUCCESS" in human.stdout
    wrong = _cli("run", "ShoppingAddItem", "--seed", "0", "--out", str(tmp_path / "wrong"), stdin="home\ndone\n")
    assert wrong.returncode == 1 and "FAILURE" in wrong.stdout

    shot = tmp_path / "calc.png"
    result = _cli("screenshot", "--app", "Calculator", "--out", str(shot), "--xml", str(tmp_path / "calc.xml"))
    assert result.returncode == 0 and Image.open(shot).size == (1080, 2400)
    assert "com.android.calculator2" in (tmp_path / "calc.xml").read_text()
    assert _cli("screenshot", "--app", "Camera", "--out", str(shot)).returncode == 2
