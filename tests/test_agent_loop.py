"""The one agent loop (``run_episode``), the agents it drives, and the env contract for outcomes."""

from __future__ import annotations

import ast
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from guiagent.actions.coords import ModelGeometry
from guiagent.agent import Decision, OracleAgent, PolicyAgent, RandomAgent, ReplayAgent, run_episode
from guiagent.envs.sim.env import MobileSimEnv
from guiagent.envs.sim.tasks import make_task
from guiagent.errors import ConfigError
from guiagent.policy.base import Generation, SamplingParams
from guiagent.policy.prompts import PromptConfig
from guiagent.types import Action, ActionType, EpisodeStatus, Task, Trajectory

PACKAGE = Path(__file__).resolve().parents[1] / "guiagent"
needs_adb = pytest.mark.skipif(shutil.which("adb") is None, reason="needs the Debian adb binary")


class Script:
    """An agent that says the given texts' actions in order (None entries: a response that does not parse)."""

    def __init__(self, actions):
        self.actions = list(actions)

    def reset(self, task):
        self.i = 0

    def act(self, observation, history):
        assert len(history) == self.i  # the loop hands over the episode so far
        action = self.actions[self.i]
        self.i += 1
        if action is None:
            return Decision(None, response="gibberish", parse_error="no_tool_call: nothing to parse")
        return Decision(action, response=f"said {action.type.value}")


def test_oracle_episode_is_judged_by_the_env_and_records_every_step():
    task = make_task("SettingsToggleWifi", 0)
    trajectory = run_episode(MobileSimEnv(env_id="sim-3"), task, OracleAgent(), episode_id="e1",
                             policy_version="expert")
    assert trajectory.outcome.success and trajectory.outcome.status is EpisodeStatus.SUCCESS
    assert (trajectory.episode_id, trajectory.env_id, trajectory.task_id) == ("e1", "sim-3", task.task_id)
    assert trajectory.info["end"] == "terminate" and trajectory.steps[-1].action.type is ActionType.TERMINATE
    assert [s.index for s in trajectory.steps] == list(range(len(trajectory)))
    assert all(s.observation.screenshot and s.observation.a11y_tree for s in trajectory.steps)
    assert all({"decide", "act"} <= set(s.timings) for s in trajectory.steps)
    assert {"reset", "decide", "act", "observe", "evaluate", "total"} <= set(trajectory.timings)
    assert Trajectory.from_json(json.loads(json.dumps(trajectory.to_json()))) == trajectory


def test_parse_failures_refusals_and_the_budget():
    env = MobileSimEnv(width=540, height=1200)
    task = make_task("SettingsToggleWifi", 0)
    # A response that does not parse, a click off the screen (refused; the episode goes on), then waits.
    agent = Script([None, Action.click(5000, 10), Action.wait(0.0), Action.wait(0.0)])
    trajectory = run_episode(env, task, agent, max_steps=4)
    first, second = trajectory.steps[:2]
    assert first.action is None and first.parse_error.startswith("no_tool_call") and first.response == "gibberish"
    assert second.action == Action.click(5000, 10) and "outside" in second.refused
    assert second.observation.screenshot == first.observation.screenshot  # nothing happened on the device
    assert len(trajectory) == 4 and trajectory.info["end"] == "budget"
    assert trajectory.outcome.status is EpisodeStatus.TIMEOUT and not trajectory.outcome.success


def test_success_without_declaring_done_counts_only_when_the_protocol_allows_it():
    task = make_task("SettingsToggleWifi", 0)
    expert = run_episode(MobileSimEnv(), task, OracleAgent(), policy_version="expert")
    undeclared = [s.action for s in expert.steps[:-1]]  # everything but the TERMINATE
    lenient = run_episode(MobileSimEnv(), task, Script(undeclared), max_steps=len(undeclared))
    strict = run_episode(MobileSimEnv(), task, Script(undeclared), max_steps=len(undeclared), require_done=True)
    assert lenient.outcome.success and lenient.info["end"] == "budget"
    assert not strict.outcome.success and "never declared" in strict.outcome.message


def test_claiming_done_does_not_make_a_success():
    task = make_task("ClockToggleAlarm", 1)
    trajectory = run_episode(MobileSimEnv(), task, Script([Action.terminate("success")]))
    assert trajectory.info["end"] == "terminate" and trajectory.outcome.status is EpisodeStatus.FAILURE


def test_replay_reproduces_a_recorded_episode():
    task = make_task("ShoppingAddItem", 2)
    recorded = run_episode(MobileSimEnv(), task, OracleAgent(), policy_version="expert")
    replayed = run_episode(MobileSimEnv(), task, ReplayAgent(recorded), policy_version="replay")
    assert [s.action for s in replayed.steps] == [s.action for s in recorded.steps]
    assert [s.observation.screenshot for s in replayed.steps] == [s.observation.screenshot for s in recorded.steps]
    assert replayed.outcome == recorded.outcome


def test_random_agent_is_reproducible_per_task_seed_and_stays_on_screen():
    task = make_task("BrowserSearchQuery", 3)
    a = run_episode(MobileSimEnv(), task, RandomAgent(seed=7), max_steps=8)
    b = run_episode(MobileSimEnv(), task, RandomAgent(seed=7), max_steps=8)
    assert [s.action for s in a.steps] == [s.action for s in b.steps]
    assert all(s.refused is None for s in a.steps)
    other = run_episode(MobileSimEnv(), dataclasses.replace(task, seed=4), RandomAgent(seed=7), max_steps=8)
    assert [s.action for s in other.steps] != [s.action for s in a.steps]


class FakePolicy:
    """A policy that answers from a list of texts and records what it was asked."""

    def __init__(self, texts):
        self.texts = list(texts)
        self.calls = []

    def generate(self, requests, sampling):
        self.calls.append((requests, sampling))
        text = self.texts.pop(0)
        return [Generation(text=text, token_ids=(1, 2, 3), logprobs=(-0.1, -0.2, -0.3), finish_reason="stop",
                           prompt_tokens=10, model="fake")]


def _tool_call(**arguments) -> str:
    return '<tool_call>{"name": "mobile_use", "arguments": %s}</tool_call>' % json.dumps(arguments)


def test_policy_agent_builds_prompts_and_parses_with_one_action_space():
    env = MobileSimEnv(width=540, height=1200)
    prompt = PromptConfig.model_validate({"actions": {"max_pixels": 64 * 28 * 28}})
    geometry = prompt.geometry(540, 1200)
    # The model answers in pixels of the resized image it saw: the centre of that image is the screen centre.
    centre = [geometry.resized_width // 2, geometry.resized_height // 2]
    policy = FakePolicy([_tool_call(action="click", coordinate=centre), "not an action",
                         _tool_call(action="terminate", status="success")])
    agent = PolicyAgent(policy, prompt, SamplingParams(max_tokens=16, seed=100), model="policy-v3")
    trajectory = run_episode(env, make_task("SettingsToggleWifi", 0), agent, policy_version="v3")
    click, failed, done = trajectory.steps
    assert click.action.type is ActionType.CLICK
    assert click.action.point == pytest.approx(geometry.to_device(centre))
    assert click.token_ids == (1, 2, 3) and click.logprobs == (-0.1, -0.2, -0.3)
    assert failed.action is None and failed.parse_error and done.action.type is ActionType.TERMINATE
    assert trajectory.policy_version == "v3" and trajectory.info["end"] == "terminate"
    (requests, sampling), *_ = policy.calls
    assert requests[0].model == "policy-v3"
    assert [s.seed for _, s in policy.calls] == [100, 101, 102]  # step t samples with seed + t
    # The image the model is shown has the resized size the prompt states.
    image = next(p["image"] for p in requests[0].messages[-1]["content"] if p["type"] == "image")
    assert image.size == (geometry.resized_width, geometry.resized_height)
    # Step 2's prompt holds step 1's answer as history.
    second = policy.calls[1][0][0].messages
    assert any(m["role"] == "assistant" and "click" in m["content"] for m in second) or "click" in json.dumps(
        [m["content"] for m in second if isinstance(m["content"], str)])


def test_a_handed_over_geometry_gives_the_same_image_and_refuses_another_screen():
    prompt = PromptConfig.model_validate({"actions": {"max_pixels": 64 * 28 * 28}})
    geometry = prompt.geometry(540, 1200)
    texts = [_tool_call(action="terminate", status="success")]
    local, remote = FakePolicy(list(texts)), FakePolicy(list(texts))
    task = make_task("SettingsToggleWifi", 0)
    run_episode(MobileSimEnv(width=540, height=1200), task, PolicyAgent(local, prompt, SamplingParams()))
    run_episode(MobileSimEnv(width=540, height=1200), task,
                PolicyAgent(remote, prompt, SamplingParams(), geometry=geometry))

    def image(policy):
        return next(p["image"] for p in policy.calls[0][0][0].messages[-1]["content"] if p["type"] == "image")

    assert image(local).tobytes() == image(remote).tobytes()  # fetch_image's pixels, without qwen-vl-utils
    wrong = PolicyAgent(FakePolicy(list(texts)), prompt, SamplingParams(), geometry=ModelGeometry(1080, 2400, 28, 56))
    with pytest.raises(ConfigError, match="1080x2400"):
        run_episode(MobileSimEnv(width=540, height=1200), task, wrong)


DEVICE_SIDE = ("guiagent.agent", "guiagent.envs.sim.env", "guiagent.envs.android.adb_env",
               "guiagent.envs.android.appium_env", "guiagent.policy.client", "guiagent.policy.prompts")


def test_the_device_side_imports_and_runs_an_episode_without_torch():
    """A farm worker per device: env + loop + HTTP policy client + prompt geometry, and no torch."""
    code = f"""
import sys, json
for name in {DEVICE_SIDE!r}:
    __import__(name)
from guiagent.actions.coords import ModelGeometry
from guiagent.agent import PolicyAgent, run_episode
from guiagent.envs.sim.env import MobileSimEnv
from guiagent.envs.sim.tasks import make_task
from guiagent.policy.base import Generation, SamplingParams
from guiagent.policy.prompts import PromptConfig

class Answer:
    def generate(self, requests, sampling):
        text = '<tool_call>{{"name": "mobile_use", "arguments": {{"action": "click", "coordinate": [100, 200]}}}}</tool_call>'
        return [Generation(text, (1,), (-0.5,), "stop", 5)]

agent = PolicyAgent(Answer(), PromptConfig(), SamplingParams(), geometry=ModelGeometry(1080, 2400, 1092, 2408))
trajectory = run_episode(MobileSimEnv(), make_task("SettingsToggleWifi", 0), agent, max_steps=2)
assert trajectory.steps[0].action is not None
# VmHWM: this process's peak resident set (getrusage's ru_maxrss would carry the forking parent's peak).
peak_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({{"torch": "torch" in sys.modules, "rss_mb": peak_kb / 1024}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["torch"] is False
    assert report["rss_mb"] < 300, report


def _calls(tree: ast.AST, attribute: str) -> list[int]:
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == attribute]


def _nested_in_other_function(function: ast.FunctionDef, line: int) -> bool:
    """True when ``line`` lies in a function defined inside ``function`` (counted with that one instead)."""
    return any(isinstance(inner, ast.FunctionDef) and inner is not function and inner.lineno <= line <= inner.end_lineno
               for inner in ast.walk(function))


def test_there_is_one_agent_loop():
    """Only ``guiagent/agent/loop.py`` asks an agent to act and executes its actions on an env (an env's own
    module, which defines ``execute``, may call it on itself). The farm worker's session handler executes
    one action per call on behalf of a ``RemoteEnv``, whose caller runs ``run_episode``."""
    proxies = {("farm/worker.py", "session_call")}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defines_execute = any(isinstance(n, ast.FunctionDef) and n.name == "execute" for n in ast.walk(tree))
        if rel == "agent/loop.py" or defines_execute:
            continue
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef) or (rel, function.name) in proxies:
                continue
            for attribute in ("execute", "act"):
                offenders += [f"{rel}:{line} .{attribute}() in {function.name}" for line in _calls(function, attribute)
                              if not _nested_in_other_function(function, line)]
    assert offenders == [], "a second agent loop: " + ", ".join(offenders)


def test_the_callers_run_the_one_loop(tmp_path, monkeypatch):
    """The oracle's expert data, the online evaluation and `guiagent sim run` produce trajectories that only
    run_episode makes (its end marker and its evaluate timing)."""
    from guiagent.eval.online import online_metrics, run_online
    from guiagent.rollout.experts import record_expert_episodes

    task = make_task("ClockToggleAlarm", 0)
    experts = record_expert_episodes(MobileSimEnv(), [task])
    online = run_online(MobileSimEnv(), [task], ReplayAgent(experts[0]), policy_version="replay")
    cli = subprocess.run([sys.executable, "-c", "from guiagent.envs.sim.cli import app; app()", "run",
                          "ClockToggleAlarm", "--out", str(tmp_path), "--oracle"], capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode == 0, cli.stderr
    from_cli = Trajectory.from_json(json.loads((tmp_path / "trajectory.json").read_text()))
    for trajectory in (*experts, *online, from_cli):
        assert trajectory.info["end"] == "terminate" and "evaluate" in trajectory.timings
        assert trajectory.outcome.success
    metrics = online_metrics(online)
    assert metrics["success_rate"] == metrics["template_success_rate"] == 1.0
    assert metrics["per_template"] == {"ClockToggleAlarm": 1.0} and metrics["parse_failures"] == 0


def test_expert_steps_carry_their_target_boxes_and_uis1_labels():
    from guiagent.rollout.experts import record_expert_episodes

    (expert,) = record_expert_episodes(MobileSimEnv(), [make_task("SettingsToggleWifi", 0)])
    clicks = [s for s in expert.steps if s.action.type is ActionType.CLICK]
    assert clicks
    for step in clicks:
        (x1, y1, x2, y2), = step.target_boxes
        x, y = step.action.point
        assert x1 <= x <= x2 and y1 <= y <= y2
        assert step.info["uis1"]["check_options"]["candidate_bbox"] == [[x1, y1, x2, y2]]


def test_an_env_without_an_evaluation_hook_says_so():
    from guiagent.envs.base import evaluate_with

    class Bare:
        env_id = "dev-1"

    with pytest.raises(ConfigError, match="task_evaluation"):
        evaluate_with(Bare(), Task("t-1", "do it"), None)


@needs_adb
@pytest.mark.timeout(180)
def test_answer_tasks_are_judged_through_evaluate_over_the_real_adb_path():
    from guiagent.envs.sim.served import adb_served_mobilesim

    task = make_task("CalculatorAnswerProduct", 2)
    right = str(task.params["a"] * task.params["b"])
    with adb_served_mobilesim() as served:
        expert = run_episode(served.env, task, OracleAgent(), policy_version="expert")
        assert expert.outcome.success and expert.info["answer"] == right
        wrong_steps = [dataclasses.replace(s, action=Action.answer(str(int(right) + 1)))
                       if s.action.type is ActionType.ANSWER else s for s in expert.steps]
        wrong = run_episode(served.env, task, ReplayAgent(dataclasses.replace(expert, steps=tuple(wrong_steps))))
        assert wrong.info["end"] == "terminate" and not wrong.outcome.success
        # The in-process MobileSim judges the same episode the same way (one judgement).
        assert run_episode(MobileSimEnv(), task, ReplayAgent(expert)).outcome.success
        assert not run_episode(MobileSimEnv(), task, ReplayAgent(wrong)).outcome.success
