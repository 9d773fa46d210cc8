"""The MiniWoB++ env on the real thing: the ``miniwob`` package's pages in Debian's headless Chromium.

Shown here: every registered task is addressable by name; observations carry the task area's screenshot, the
instruction and a DOM tree that reads back exactly; canonical actions reach the page through the MiniWoB++
converters and the verdict is the task's own reward; actions MiniWoB++ has no equivalent for are refused;
a dead browser is a DeviceLost; and the browser is reaped when its owner is SIGKILLed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from guiagent.agent import run_episode
from guiagent.agent.web import MiniWoBDomAgent
from guiagent.envs.web import build_farm_env, miniwob_tasks
from guiagent.envs.web.dom import parse_dom_tree
from guiagent.envs.web.miniwob import miniwob_task_names, resolve_task_name
from guiagent.errors import ActionError, ConfigError, DeviceLost
from guiagent.farm.local import _alive
from guiagent.types import Action, ActionType

pytestmark = [
    pytest.mark.skipif(shutil.which("chromium") is None or shutil.which("chromedriver") is None,
                       reason="needs Debian's chromium and chromium-driver"),
    pytest.mark.timeout(120),
]


@pytest.fixture(scope="module")
def env():
    env = build_farm_env("web-test", {"reward": "raw", "width": 1080, "faults": None})  # worker options ignored
    try:
        yield env
    finally:
        env.close()


def test_every_registered_task_is_addressable_by_name():
    import gymnasium

    names = miniwob_task_names()  # imports miniwob, which registers its environments
    registered = [k for k in gymnasium.envs.registry if k.startswith("miniwob/")]
    assert len(names) == len(registered) >= 100
    assert resolve_task_name("miniwob/click-test-v1") == resolve_task_name("click-test") == "click-test"
    assert "flight.AA" in names
    (task,) = miniwob_tasks(["miniwob/login-user-v1"], [7])
    assert (task.task_id, task.template, task.seed, task.env) == ("MiniWoB/login-user/7", "login-user", 7, "web")
    with pytest.raises(ConfigError, match="click-tests"):
        miniwob_tasks(["click-tests"])


def test_every_registered_task_starts_in_the_browser_with_an_instruction(env):
    sizes, failed = {}, []
    for task in miniwob_tasks(miniwob_task_names(), [0]):
        try:
            observation = env.reset(task)
        except Exception as exc:  # noqa: BLE001  (collect every task that fails, not just the first)
            failed.append(f"{task.template}: {type(exc).__name__}: {exc}")
            continue
        if not observation.instruction or not parse_dom_tree(observation.a11y_tree):
            failed.append(f"{task.template}: no instruction or no DOM")
        sizes[(observation.width, observation.height)] = sizes.get((observation.width, observation.height), 0) + 1
    assert not failed, failed
    assert sizes[(160, 210)] >= 100 and sizes[(375, 667)] == 3  # MiniWoB's task area; FlightWoB's phone page


def test_a_tree_line_out_of_format_is_named():
    assert parse_dom_tree('div ref=1 box=[0,0,10,10]\n  t ref=-1 text="a b" box=[1,1,2,2]')[1].parent == 0
    with pytest.raises(ValueError, match="line 2"):
        parse_dom_tree('div ref=1 box=[0,0,10,10]\n  button text="no ref" box=[1,1,2,2]')


def test_an_observation_is_the_task_area_with_its_instruction_and_a_dom_tree_that_reads_back(env):
    import io

    from PIL import Image

    (task,) = miniwob_tasks(["login-user"], [3])
    first = env.reset(task)
    assert (first.width, first.height) == env.screen_size == (160, 210)
    with Image.open(io.BytesIO(first.screenshot)) as image:
        assert image.size == (160, 210) and image.convert("L").getextrema()[0] < 100  # text drawn, not blank
    fields = dict(first.extras["fields"])
    assert fields["username"] in first.instruction and first.extras == {**first.extras, "task": "login-user",
                                                                        "done": False}
    nodes = parse_dom_tree(first.a11y_tree)
    username = next(n for n in nodes if n.id == "username")
    assert username.tag == "input_text" and username.value == "" and nodes[username.parent].tag == "p"
    # The same seed gives the same task; a click at a node's centre focuses it (device pixels = page pixels).
    assert env.reset(task).instruction == first.instruction
    env.execute(Action.click(*username.center))
    env.execute(Action.type_text(fields["username"]))
    typed = next(n for n in parse_dom_tree(env.observe().a11y_tree) if n.id == "username")
    assert typed.focused and typed.value == fields["username"]


def test_the_initial_state_depends_on_the_task_and_seed_only(env):
    # jQuery's datepicker remembers the month it showed across MiniWoB's own resets; a fresh page does not.
    (task,) = miniwob_tasks(["choose-date"], [4])
    first = env.reset(task)
    field = next(n for n in parse_dom_tree(first.a11y_tree) if n.tag == "input_text")
    env.execute(Action.click(*field.center))
    previous = next(n for n in parse_dom_tree(env.observe().a11y_tree) if "ui-datepicker-prev" in n.classes)
    env.execute(Action.click(*previous.center))
    assert env.reset(task).a11y_tree == first.a11y_tree


def test_the_verdict_is_the_tasks_own_reward_and_the_finished_episode_refuses_actions(env):
    (task,) = miniwob_tasks(["click-button"], [5])
    observation = env.reset(task)
    assert env.evaluate(task).reward == 0.0 and not env.evaluate(task).success  # still running
    nodes = parse_dom_tree(observation.a11y_tree)
    wrong = next(n for n in nodes if n.tag == "button" and n.text != dict(observation.extras["fields"])["target"])
    env.execute(Action.click(*wrong.center))
    outcome = env.evaluate(task)
    assert (outcome.success, outcome.reward) == (False, -1.0), outcome
    assert env.observe().extras["done"] is True
    with pytest.raises(ActionError, match="episode is over"):
        env.execute(Action.click(10, 100))


def test_actions_without_a_miniwob_equivalent_are_refused_before_the_page(env):
    (task,) = miniwob_tasks(["click-test"], [0])
    env.reset(task)
    for action in (Action.swipe((10, 100), (10, 50)), Action.system_button("back"), Action.scroll("down"),
                   Action.click(170, 10), Action(ActionType.HOTKEY, keys=("alt", "f4"))):
        with pytest.raises(ActionError):
            env.execute(action)
    assert not env.observe().extras["done"]  # nothing reached the page
    env.execute(Action.answer("42"))
    assert env.answer == "42"


def test_the_dom_expert_solves_a_drag_and_a_multi_step_form(env):
    for task in miniwob_tasks(["drag-box", "login-user"], [11]):
        trajectory = run_episode(env, task, MiniWoBDomAgent())
        assert trajectory.outcome.success and trajectory.outcome.reward == 1.0, trajectory.outcome
        # MiniWoB++ ends the episode itself once its check holds: the loop stops there (Env.done).
        assert trajectory.info["end"] == "env"


def test_a_dead_browser_is_a_lost_device():
    env = build_farm_env("web-doomed", {})
    try:
        os.kill(env.browser.browser_pid(), signal.SIGKILL)
        with pytest.raises(DeviceLost):
            env.reset(miniwob_tasks(["click-test"])[0])
        with pytest.raises(DeviceLost):
            env.reset(None)  # the farm's reload fails too, so it restarts the device (a new env)
    finally:
        env.close()
    assert env.browser.pids() == []


def test_the_browser_is_reaped_when_its_owner_is_sigkilled(tmp_path):
    owner = subprocess.Popen(
        [sys.executable, "-c", ("import time\nfrom guiagent.envs.web import build_farm_env\n"
                                "env = build_farm_env('web-orphan', {})\n"
                                "print(*env.browser.pids(), flush=True)\ntime.sleep(600)")],
        stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert len(pids) >= 2 and all(_alive(p) for p in pids)  # chromedriver, Chromium and its helpers
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in pids if _alive(p)], "browser processes outlived their owner"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
