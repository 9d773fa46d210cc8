"""AndroidWorld's protocol against its documented task interface: a registry of task classes with
``complexity``, ``generate_random_params``, ``initialize_task(env)``, ``is_successful(env) -> float`` and
``tear_down(env)``, here a fake android_world whose tasks judge a fake device state. ``kvm``-marked tests run
the real android_world on an emulator."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sys
from collections.abc import Sequence

import pytest

from guiagent.agent import run_episode
from guiagent.agent.base import Decision
from guiagent.envs import androidworld
from guiagent.envs.base import Env, evaluate_with
from guiagent.errors import ConfigError, DeviceLost, DeviceTimeout
from guiagent.eval.online import online_metrics
from guiagent.types import Action, ActionType, EpisodeStatus, Observation, Outcome, Step, Task

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415408d763f8cfc0f0"
                    "1f0005000201e2270ba70000000049454e44ae426082")


# --- a fake android_world: same interface, its own little device -------------------------------------------


class FakeAsyncEnv:
    """android_world's AsyncEnv as its tasks use it: a controller holding the device's state."""

    def __init__(self):
        self.controller = {"wifi": False, "contacts": [], "initialized": [], "torn_down": []}


class FakeTaskEval:
    complexity = 1.0
    template = ""

    def __init__(self, params):
        self.params = params
        self.initialized = False

    @property
    def name(self):
        return type(self).__name__

    @property
    def goal(self):
        return self.template.format(**self.params)

    def initialize_task(self, env):
        if self.initialized:
            raise RuntimeError(f"{self.name}.initialize_task() is already called.")
        self.initialized = True
        env.controller["initialized"].append(self.name)

    def tear_down(self, env):
        self.initialized = False
        env.controller["torn_down"].append(self.name)


class SystemWifiTurnOn(FakeTaskEval):
    template = "Turn wifi on."

    @classmethod
    def generate_random_params(cls):
        return {}

    def initialize_task(self, env):
        super().initialize_task(env)
        env.controller["wifi"] = False

    def is_successful(self, env):
        return 1.0 if env.controller["wifi"] else 0.0


class ContactsAddContact(FakeTaskEval):
    complexity = 1.5
    template = "Create a new contact for {name}. Their number is {number}."

    @classmethod
    def generate_random_params(cls):
        return {"name": random.choice(["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"]),
                "number": "".join(random.choice("0123456789") for _ in range(10))}

    def initialize_task(self, env):
        super().initialize_task(env)
        env.controller["contacts"].clear()  # as android_world's contacts tasks start from an empty list

    def is_successful(self, env):
        return 1.0 if f"{self.params['name']} {self.params['number']}" in env.controller["contacts"] else 0.0


REGISTRY = {"SystemWifiTurnOn": SystemWifiTurnOn, "ContactsAddContact": ContactsAddContact}


class PhoneEnv(Env):
    """A device whose TYPE actions are commands to the fake phone ("wifi on", "add NAME NUMBER"), with the
    AndroidWorld hooks an AndroidEnv gets (task_setup after reset, task_evaluation in evaluate)."""

    def __init__(self, tasks: androidworld.AndroidWorldTasks):
        self.env_id, self.tasks = "emulator-5554", tasks

    @property
    def screen_size(self):
        return (1, 1)

    def reset(self, task=None):
        self.answer = None
        if task is not None:
            self.tasks.setup(self, task)
        return self.observe()

    def observe(self):
        return Observation(width=1, height=1, screenshot=PNG)

    def execute(self, action):
        phone = self.tasks.async_env.controller
        if action.type is ActionType.TYPE and action.text == "wifi on":
            phone["wifi"] = True
        elif action.type is ActionType.TYPE and action.text.startswith("add "):
            phone["contacts"].append(action.text[4:])

    def evaluate(self, task):
        return evaluate_with(self, task, self.tasks.evaluate)


class Solver:
    """Does the task through the phone, then declares it done (or not, with ``declare=False``)."""

    def __init__(self, declare: bool = True, solve: bool = True):
        self.declare, self.solve = declare, solve

    def reset(self, task: Task) -> None:
        goal = task.instruction
        if goal.startswith("Turn wifi"):
            command = "wifi on"
        else:
            name = goal.split(" for ", 1)[1].split(".")[0]
            command = f"add {name} {goal.rsplit(' ', 1)[1].rstrip('.')}"
        self.plan = iter(([Action.type_text(command)] if self.solve else [Action.wait(0)])
                         + ([Action.terminate("success")] if self.declare else []))

    def act(self, observation: Observation, history: Sequence[Step]) -> Decision:
        return Decision(next(self.plan, Action.wait(0)))


# --- the suite ---------------------------------------------------------------------------------------------------


def test_the_suite_uses_android_worlds_seeds_step_budgets_and_goals():
    suite = androidworld.create_suite(REGISTRY, n_task_combinations=2)
    assert [t.task_id for t in suite] == ["AndroidWorld/ContactsAddContact/0", "AndroidWorld/ContactsAddContact/1",
                                          "AndroidWorld/SystemWifiTurnOn/0", "AndroidWorld/SystemWifiTurnOn/1"]
    # Instance seeds: sha256("30_<name>_<i>") mod 2**32, as android_world's create_suite computes them.
    expected = int(hashlib.sha256(b"30_ContactsAddContact_1").hexdigest(), 16) % 2**32
    assert suite[1].seed == expected == androidworld.instance_seed(30, "ContactsAddContact", 1)
    assert suite[0].seed != suite[1].seed
    # Params from random.seed(instance seed) then generate_random_params(): the goal is reproducible.
    random.seed(expected)
    params = ContactsAddContact.generate_random_params()
    assert suite[1].instruction == ContactsAddContact.template.format(**params)
    # Step budget int(10 * complexity): 15 for complexity 1.5, 10 for 1.0.
    assert [t.max_steps for t in suite] == [15, 15, 10, 10]
    assert suite[0].env == "android" and suite[0].params == {"family": "android_world", "suite_seed": 30, "instance": 0}
    assert androidworld.create_suite(REGISTRY) == androidworld.create_suite(REGISTRY)  # seed 30 by default
    assert androidworld.create_suite(REGISTRY, seed=31)[0].seed != suite[0].seed
    with pytest.raises(ConfigError, match="ContactAddContact"):
        androidworld.create_suite(REGISTRY, tasks=["ContactAddContact"])


# --- the protocol ------------------------------------------------------------------------------------------------


def make_env() -> tuple[PhoneEnv, FakeAsyncEnv]:
    phone = FakeAsyncEnv()
    return PhoneEnv(androidworld.AndroidWorldTasks(REGISTRY, lambda: phone)), phone


def test_success_needs_is_successful_and_the_agent_declaring_done():
    env, phone = make_env()
    [task] = androidworld.create_suite(REGISTRY, tasks=["ContactsAddContact"])
    done = run_episode(env, task, Solver(), require_done=True)
    assert done.outcome.status is EpisodeStatus.SUCCESS and done.outcome.reward == 1.0
    assert phone.controller["initialized"] == ["ContactsAddContact"] == phone.controller["torn_down"]
    # The task holds but the agent never said so: a failure under AndroidWorld's protocol.
    undeclared = run_episode(env, task, Solver(declare=False), require_done=True)
    assert undeclared.outcome.status is EpisodeStatus.FAILURE and undeclared.info["end"] == "budget"
    # Declared done but not done: the task's own check says no.
    claimed = run_episode(env, task, Solver(solve=False), require_done=True)
    assert claimed.outcome.status is EpisodeStatus.FAILURE and claimed.outcome.message == "is_successful=0"
    assert len(phone.controller["torn_down"]) == 3  # every instance was torn down after its judgement


def test_the_aggregate_is_the_mean_over_templates():
    env, _ = make_env()
    suite = androidworld.create_suite(REGISTRY, n_task_combinations=2)
    # Contacts: instance 0 solved, instance 1 not; wifi: both solved.
    agents = [Solver(), Solver(solve=False), Solver(), Solver()]
    episodes = [run_episode(env, task, agent, require_done=True) for task, agent in zip(suite, agents)]
    metrics = online_metrics(episodes)
    # Per template: contacts 1/2, wifi 2/2; mean over templates (0.5 + 1.0) / 2 = 0.75, not 3/4 of episodes by
    # chance: with 3 wifi instances it would still be 0.75 while the episode mean moved.
    assert metrics["per_template"] == {"ContactsAddContact": 0.5, "SystemWifiTurnOn": 1.0}
    assert metrics["template_success_rate"] == 0.75


def test_an_instance_is_rebuilt_from_its_seed_on_the_worker_and_checked():
    env, phone = make_env()
    [task] = androidworld.create_suite(REGISTRY, tasks=["ContactsAddContact"])
    env.reset(task)
    _, instance = env.tasks.current
    assert instance.params["seed"] == task.seed and instance.goal == task.instruction
    # A worker whose android_world draws other params for that seed refuses to run the episode.
    drifted = Task(**{**task.to_json(), "instruction": "Create a new contact for Nobody. Their number is 0."})
    with pytest.raises(ConfigError, match="build the suite with this worker's android_world"):
        env.reset(Task.from_json(drifted.to_json()))
    # The unjudged instance was torn down before the next one was set up.
    assert phone.controller["torn_down"] == ["ContactsAddContact"]
    with pytest.raises(ConfigError, match="no task 'Nope'"):
        env.reset(Task("AndroidWorld/Nope/0", "x", template="Nope", env="android"))
    other = androidworld.create_suite(REGISTRY, tasks=["SystemWifiTurnOn"])[0]
    with pytest.raises(ConfigError, match="not set up for this task"):
        env.evaluate(other)


def test_android_world_is_imported_only_where_it_is_used(monkeypatch):
    assert "android_world" not in sys.modules
    monkeypatch.setitem(sys.modules, "android_world", None)  # not installed here
    with pytest.raises(ConfigError, match="android_world package"):
        androidworld.load_registry()
    with pytest.raises(ConfigError, match="emulator-PORT"):
        androidworld.emulator_async_env("127.0.0.1:5555", "adb", None)


def test_step_budget_follows_complexity():
    assert [androidworld.step_budget(c) for c in (1, 1.2, 2, 4.5)] == [10, 12, 20, 45]
    with pytest.raises(ConfigError):
        androidworld.step_budget(None)


def test_a_suite_file_round_trips_and_a_bad_one_is_refused_by_the_cli(tmp_path):
    import subprocess

    suite = androidworld.create_suite(REGISTRY, n_task_combinations=2)
    androidworld.save_suite(suite, tmp_path / "suite.json")
    assert androidworld.load_suite(tmp_path / "suite.json") == suite
    (tmp_path / "bad.json").write_text('[{"task_id": "x", "instruction": "y", "colour": 1}]')
    done = subprocess.run([sys.executable, "-m", "guiagent", "eval", "androidworld", "--suite", str(tmp_path / "bad.json"),
                           "--agent", "random", "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2 and "bad.json, record 0" in done.stderr and "colour" in done.stderr


# --- on an android farm worker's device ----------------------------------------------------------------------


WORKER_OPTIONS = {"width": 1080, "height": 2400, "step_latency": 0.0, "faults": None}


def test_a_worker_image_without_android_world_fails_at_start(tmp_path, monkeypatch):
    from guiagent.envs.android.adb_env import build_farm_env

    (tmp_path / "device.yaml").write_text("serial: emulator-5554\n")
    monkeypatch.setitem(sys.modules, "android_world", None)
    with pytest.raises(ConfigError, match="android_world package"):
        build_farm_env("emu-0", {**WORKER_OPTIONS, "device_config": str(tmp_path / "device.yaml"),
                                 "androidworld": True})


@pytest.mark.skipif(shutil.which("adb") is None, reason="needs Debian's adb")
def test_the_android_worker_runs_android_worlds_hooks_around_the_episode(tmp_path, monkeypatch):
    from guiagent.config import dump_config
    from guiagent.envs.android.adb_env import build_farm_env, private_adb_server
    from guiagent.envs.android.config import AndroidEnvConfig
    from guiagent.envs.sim.adbd import serve
    from guiagent.envs.sim.apps import LAUNCHER
    from guiagent.envs.sim.device import MobileSim

    phone = FakeAsyncEnv()
    monkeypatch.setattr(androidworld, "load_registry", lambda family=androidworld.FAMILY: REGISTRY)
    monkeypatch.setattr(androidworld, "emulator_async_env", lambda serial, adb_path, grpc: phone)

    class TurnsWifiOn:
        """Turns wifi on (on the fake phone android_world's task reads) and declares the task done."""

        def reset(self, task):
            self.steps = iter([Action.click(10, 10), Action.terminate("success")])

        def act(self, observation, history):
            phone.controller["wifi"] = True
            return Decision(next(self.steps))

    [task] = androidworld.create_suite(REGISTRY, tasks=["SystemWifiTurnOn"])
    with private_adb_server() as port:
        adbd = serve(MobileSim())
        try:
            config = AndroidEnvConfig(serial=adbd.serial, adb_server_port=port, start_adb_server=False,
                                      launcher_package=LAUNCHER, timeout=5.0, ready_timeout=10.0)
            (tmp_path / "device.yaml").write_text(dump_config(config))
            with build_farm_env("emu-0", {**WORKER_OPTIONS, "device_config": str(tmp_path / "device.yaml"),
                                          "androidworld": True}) as env:
                trajectory = run_episode(env, task, TurnsWifiOn(), require_done=True)
        finally:
            adbd.close()
    assert trajectory.outcome.status is EpisodeStatus.SUCCESS and trajectory.steps[0].refused is None
    assert phone.controller["initialized"] == ["SystemWifiTurnOn"] == phone.controller["torn_down"]


# --- android_world in its own interpreter -------------------------------------------------------------------------

# A stand-in android_world package with the real one's import paths: registry.TaskRegistry().get_registry(family)
# and env.env_launcher.load_and_setup_env(...); the phone's state is a JSON file the test's device writes.
FAKE_ANDROID_WORLD = {
    "android_world/__init__.py": "",
    "android_world/env/__init__.py": "",
    "android_world/env/env_launcher.py": """
import json, os

class Phone(dict):
    def __init__(self):
        super().__init__(json.load(open(os.environ["FAKE_PHONE"])))

    def save(self):
        json.dump(self, open(os.environ["FAKE_PHONE"], "w"))

class AsyncEnv:
    @property
    def controller(self):
        return Phone()

def load_and_setup_env(console_port, emulator_setup, freeze_datetime, adb_path, grpc_port):
    assert (console_port, emulator_setup, grpc_port) == (5554, False, 8554)
    return AsyncEnv()
""",
    "android_world/registry.py": """
class SystemWifiTurnOn:
    complexity = 1.0

    def __init__(self, params):
        self.params = params

    @property
    def goal(self):
        return "Turn wifi on."

    @classmethod
    def generate_random_params(cls):
        return {}

    def initialize_task(self, env):
        print("initializing", self.goal)  # task code prints to stdout; the replies must survive it
        phone = env.controller
        phone.update(wifi=False, initialized=phone["initialized"] + [type(self).__name__])
        phone.save()

    def is_successful(self, env):
        return 1.0 if env.controller["wifi"] else 0.0

    def tear_down(self, env):
        phone = env.controller
        phone["torn_down"].append(type(self).__name__)
        phone.save()

class TaskRegistry:
    def get_registry(self, family):
        if family != "android_world":
            raise ValueError(f"Unsupported family: {family}")
        return {"SystemWifiTurnOn": SystemWifiTurnOn}
""",
}


def test_android_world_runs_in_its_own_interpreter_behind_the_worker(tmp_path, monkeypatch):
    import json
    import subprocess

    from guiagent.envs.androidworld.runner import RemoteAndroidWorldTasks

    for name, text in FAKE_ANDROID_WORLD.items():
        (tmp_path / "aw" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "aw" / name).write_text(text)
    phone = tmp_path / "phone.json"
    phone.write_text(json.dumps({"wifi": False, "initialized": [], "torn_down": []}))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "aw"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("FAKE_PHONE", str(phone))
    # The suite is built where android_world is installed ...
    subprocess.run([sys.executable, "-m", "guiagent.envs.androidworld.runner", "suite", "--out",
                    str(tmp_path / "suite.json")], check=True, capture_output=True, timeout=60)
    [task] = androidworld.load_suite(tmp_path / "suite.json")
    assert task.task_id == "AndroidWorld/SystemWifiTurnOn/0" and task.seed == androidworld.instance_seed(30, "SystemWifiTurnOn", 0)

    class FilePhoneEnv(PhoneEnv):
        def execute(self, action):
            if action.type is ActionType.TYPE and action.text == "wifi on":
                phone.write_text(json.dumps({**json.loads(phone.read_text()), "wifi": True}))

    # ... and run, task by task, by the worker's runner process.
    remote = androidworld.worker_tasks("emulator-5554", "adb", None, python=sys.executable)
    assert isinstance(remote, RemoteAndroidWorldTasks)
    try:
        env = FilePhoneEnv(remote)
        assert run_episode(env, task, Solver(), require_done=True).outcome.status is EpisodeStatus.SUCCESS
        assert run_episode(env, task, Solver(declare=False), require_done=True).outcome.status is EpisodeStatus.FAILURE
        state = json.loads(phone.read_text())
        assert state["initialized"] == ["SystemWifiTurnOn"] * 2 == state["torn_down"]
        with pytest.raises(ConfigError, match="not set up for this task"):  # typed errors cross the pipe
            env.evaluate(task)
    finally:
        remote.close()
    assert remote._process is None


@pytest.mark.parametrize(("script", "error", "match"), [
    ("exec sleep 30", DeviceTimeout, "took over 0.5s"),  # a runner that hangs
    ("exit 3", DeviceLost, r"exited \(3\)|runner is gone"),  # one that dies (before or after the request)
])
def test_a_runner_that_hangs_or_dies_is_a_typed_device_error(tmp_path, script, error, match):
    from guiagent.envs.androidworld.runner import RemoteAndroidWorldTasks

    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\n{script}\n")
    python.chmod(0o755)
    remote = RemoteAndroidWorldTasks(str(python), "emulator-5554", timeout=0.5)
    task = Task("AndroidWorld/SystemWifiTurnOn/0", "Turn wifi on.", template="SystemWifiTurnOn", env="android")
    try:
        with pytest.raises(error, match=match):
            remote.setup(None, task)
    finally:
        remote.close()


# --- the real android_world ---------------------------------------------------------------------------------------


@pytest.mark.kvm
@pytest.mark.skipif(not os.environ.get("GUIAGENT_ANDROIDWORLD_SERIAL"),
                    reason="needs android_world installed (or GUIAGENT_ANDROIDWORLD_PYTHON, the android image's venv) "
                           "and an AndroidWorld emulator (KVM): set GUIAGENT_ANDROIDWORLD_SERIAL=emulator-5554")
def test_the_real_suite_has_116_templates_and_a_task_is_set_up_and_judged(tmp_path):
    import subprocess

    python = os.environ.get(androidworld.PYTHON_VAR) or sys.executable
    subprocess.run([python, "-m", "guiagent.envs.androidworld.runner", "suite", "--out", str(tmp_path / "suite.json")],
                   check=True, timeout=600)
    suite = androidworld.load_suite(tmp_path / "suite.json")
    assert len({t.template for t in suite}) == 116
    tasks = androidworld.worker_tasks(os.environ["GUIAGENT_ANDROIDWORLD_SERIAL"], os.environ.get("ADB_PATH", "adb"),
                                      None, python=python)
    task = next(t for t in suite if t.template == "SystemWifiTurnOn")
    tasks.setup(None, task)
    outcome = tasks.evaluate(None, task)
    assert isinstance(outcome, Outcome) and outcome.status is EpisodeStatus.FAILURE  # nobody turned wifi on
