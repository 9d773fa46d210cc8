"""MobileSim task templates and the expert oracle: success is read from the simulator state."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guiagent.agent import OracleAgent, run_episode
from guiagent.envs.sim.apps import APPS
from guiagent.envs.sim.device import MobileSim
from guiagent.envs.sim.env import MobileSimEnv
from guiagent.envs.sim.oracle import PLANNERS, UIScreen, expert_actions, plan_actions
from guiagent.envs.sim.tasks import TEMPLATES, all_tasks, make_task
from guiagent.types import Action, ActionType, Task, Trajectory

SEEDS = (0, 1, 2)


def test_registry_has_enough_templates_across_every_app_each_with_an_oracle():
    assert len(TEMPLATES) >= 20
    assert {t.app for t in TEMPLATES.values()} == set(APPS)
    assert set(PLANNERS) == set(TEMPLATES)
    for name in TEMPLATES:
        assert name[0].isupper() and any(name.startswith(a[0].split()[0]) for a in APPS.values())


def test_tasks_are_a_function_of_template_and_seed():
    for name in TEMPLATES:
        a, b = make_task(name, 11), make_task(name, 11)
        assert a == b and a.task_id == f"MobileSim/{name}/11" and a.max_steps == TEMPLATES[name].max_steps
        assert json.loads(json.dumps(a.to_json())) == a.to_json()
        assert Task.from_json(a.to_json()) == a
    varied = [name for name in TEMPLATES if len({json.dumps(dict(make_task(name, s).params)) for s in range(6)}) > 1]
    assert len(varied) >= len(TEMPLATES) - 2  # dark theme / battery saver have fixed targets
    assert [t.template for t in all_tasks(3)] == list(TEMPLATES)
    with pytest.raises(KeyError, match="SettingsToggleWifi"):
        make_task("NoSuchTask", 0)


def _play(sim: MobileSim, env: MobileSimEnv, task: Task) -> list[Action]:
    actions = []
    for action in expert_actions(sim, task):
        env.execute(action)
        actions.append(action)
    return actions


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_oracle_completes_every_template_and_success_comes_from_state(name):
    env = MobileSimEnv(seed=0)
    for seed in SEEDS:
        task = make_task(name, seed)
        env.reset(task)
        assert not env.evaluate(task).success, f"{task.task_id} is already done at reset"
        actions = _play(env.sim, env, task)
        assert env.evaluate(task).success, f"{task.task_id}: {[a.type.value for a in actions]}"
        assert actions[-1].type is ActionType.TERMINATE and len(actions) <= task.max_steps
        assert (actions[-2].type is ActionType.ANSWER) == TEMPLATES[name].answer


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(TEMPLATES)), seed=st.integers(0, 10**9))
def test_oracle_solves_any_seed(name, seed):
    env = MobileSimEnv()
    task = make_task(name, seed)
    env.reset(task)
    _play(env.sim, env, task)
    assert env.evaluate(task).success, task.task_id


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_claiming_success_without_doing_the_task_fails(name):
    env = MobileSimEnv()
    task = make_task(name, 4)
    env.reset(task)
    env.execute(Action.open_app(APPS[TEMPLATES[name].app][0]))
    if TEMPLATES[name].answer:
        env.execute(Action.answer("42"))
    env.execute(Action.terminate("success"))
    assert not env.evaluate(task).success


def test_wrong_action_sequences_do_not_succeed():
    env = MobileSimEnv()
    # Toggling the wrong setting.
    task = make_task("SettingsToggleWifi", 0)
    env.reset(task)
    env.execute(Action.open_app("Settings"))
    env.execute(Action.click(*UIScreen(env.sim.dump_ui_xml(), env.sim.size).first(rid="bluetooth").center))
    assert not env.evaluate(task).success
    # Searching for something else.
    task = make_task("BrowserSearchQuery", 0)
    env.reset(task)
    env.execute(Action.open_app("Browser"))
    env.execute(Action.click(*UIScreen(env.sim.dump_ui_xml(), env.sim.size).first(rid="url_bar").center))
    env.execute(Action.type_text(task.params["query"] + " reviews"))
    env.execute(Action.system_button("enter"))
    assert not env.evaluate(task).success
    # The expert's plan for one task does not solve another task of the same app.
    task, other = make_task("ContactsEditPhone", 1), make_task("ContactsFavoriteContact", 1)
    env.reset(task)
    for action in expert_actions(env.sim, other):
        env.execute(action)
    assert not env.evaluate(task).success
    # Answering with the wrong number.
    task = make_task("CalculatorAnswerProduct", 2)
    env.reset(task)
    env.execute(Action.answer(str(task.params["a"] * task.params["b"] + 1)))
    assert not env.evaluate(task).success


@pytest.mark.parametrize("name", ["SettingsSetTwoToggles", "ContactsEditPhone", "BrowserBookmarkResult",
                                  "ShoppingDeleteItem", "ClockAddAlarm", "CalculatorComputeSum"])
def test_oracle_recovers_from_a_disturbed_start(name):
    """Random taps, swipes and keys first (another app open, half-typed text, a dialog): the expert re-plans."""
    env = MobileSimEnv()
    for seed in (0, 1):
        task = make_task(name, seed)
        env.reset(task)
        rng = random.Random(seed)
        env.execute(Action.open_app(APPS[TEMPLATES[name].app][0]))
        for _ in range(6):
            kind = rng.choice(["tap", "tap", "swipe", "back", "type"])
            if kind == "tap":
                env.execute(Action.click(rng.randint(0, 1079), rng.randint(90, 2260)))
            elif kind == "swipe":
                env.execute(Action.swipe((540, rng.randint(600, 2000)), (540, rng.randint(600, 2000))))
            elif kind == "back":
                env.execute(Action.system_button("back"))
            else:
                env.execute(Action.type_text("zz"))
        env.execute(Action.open_app("Clock" if "Clock" not in name else "Settings"))
        _play(env.sim, env, task)
        assert env.evaluate(task).success, task.task_id


def test_plan_actions_needs_only_the_ui_dump():
    sim = MobileSim()
    task = make_task("ShoppingCheckItem", 3)
    sim.reset(task)
    env = MobileSimEnv(sim)
    for action in plan_actions(task, lambda: (sim.dump_ui_xml(), sim.size)):
        env.execute(action)
    assert sim.is_successful(task)


def test_the_oracle_agent_plays_through_run_episode_to_a_serialisable_judged_trajectory():
    env = MobileSimEnv(env_id="sim-7")
    task = make_task("ClockToggleAlarm", 5)
    trajectory = run_episode(env, task, OracleAgent(), episode_id="ep-1", policy_version="expert")
    assert trajectory.info["end"] == "terminate" and trajectory.steps[-1].action.type is ActionType.TERMINATE
    assert trajectory.outcome.success and trajectory.policy_version == "expert" and trajectory.env_id == "sim-7"
    assert trajectory.steps[0].observation.extras["package"] == "com.guiagent.launcher"
    assert trajectory.steps[0].observation.instruction == task.instruction
    assert Trajectory.from_json(json.loads(json.dumps(trajectory.to_json()))) == trajectory
