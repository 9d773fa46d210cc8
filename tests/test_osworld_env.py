"""The OSWorld env against the test VM: a real HTTP server process (FastAPI/uvicorn) with OSWorld's VM server
API and a QEMU-style monitor over a scripted desktop, then through the real farm (redis-server + an osworld
worker). ``kvm``-marked tests drive a real OSWorld VM (``GUIAGENT_OSWORLD_URL``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from guiagent.agent import run_episode
from guiagent.agent.base import Decision
from guiagent.envs.osworld import OSWorldEnv, OSWorldEnvConfig, build_farm_env, load_osworld_tasks
from guiagent.envs.osworld.code import check_pyautogui
from guiagent.envs.osworld.evaluation import desktop_env_available
from guiagent.envs.osworld.testvm import NS
from guiagent.errors import ActionError, ConfigError, DataError, DeviceNotReady
from guiagent.net import free_port
from guiagent.types import Action, EpisodeStatus, Observation, Step, Task

pytestmark = pytest.mark.timeout(120)

NOTES = "/home/user/notes.txt"
SETTINGS = "/home/user/.config/desk/settings.json"


def start_testvm(port: int, monitor_port: int, *extra: str) -> subprocess.Popen:
    """Start the test VM and wait until its server serves a screenshot."""
    process = subprocess.Popen([sys.executable, "-m", "guiagent.envs.osworld.testvm", "--port", str(port),
                                "--monitor-port", str(monitor_port), *extra],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/screenshot", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise AssertionError(f"the test VM did not start: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def vm():
    port, monitor = free_port(), free_port()
    process = start_testvm(port, monitor)
    try:
        yield {"vm_url": f"http://127.0.0.1:{port}", "monitor": f"127.0.0.1:{monitor}"}
    finally:
        stop(process)


def make_env(vm: dict, **overrides) -> OSWorldEnv:
    options = {**vm, "ready_timeout": 10.0, "retry_interval": 0.1, "settle_s": 0.0, **overrides}
    return OSWorldEnv(OSWorldEnvConfig(**options), env_id="vm-test")


def write_task(directory: Path, *, task_id: str = "desk-notes-dark", evaluator: dict | None = None) -> Path:
    """An OSWorld task file: notes.txt uploaded and opened in the editor, Settings launched behind it."""
    (directory / "data").mkdir(parents=True, exist_ok=True)
    (directory / "data" / "notes.txt").write_text("hello", encoding="utf-8")
    domain = directory / "examples" / "desk"
    domain.mkdir(parents=True, exist_ok=True)
    record = {
        "id": task_id,
        "snapshot": "desk",
        "instruction": "Append ' world' to notes.txt and save it, close the editor, then turn on Dark mode.",
        "source": "guiagent test desktop",
        "config": [
            {"type": "upload_file", "parameters": {"files": [
                {"local_path": str(directory / "data" / "notes.txt"), "path": NOTES}]}},
            {"type": "launch", "parameters": {"command": ["desk-settings"]}},
            {"type": "open", "parameters": {"path": NOTES}},
            {"type": "activate_window", "parameters": {"window_name": "notes.txt - Text Editor", "strict": True}},
            {"type": "sleep", "parameters": {"seconds": 0.05}},
        ],
        "related_apps": ["gedit"],
        "evaluator": evaluator or {
            "func": ["check_include_exclude", "check_json_settings"],
            "conj": "and",
            "result": [{"type": "vm_command_line", "command": ["cat", NOTES]},
                       {"type": "vm_file", "path": SETTINGS, "dest": "settings.json"}],
            "expected": [{"type": "rule", "rules": {"include": ["hello world"], "exclude": []}},
                         {"type": "rule", "rules": {"expected": {"dark_mode": True}}}],
        },
    }
    path = domain / f"{task_id}.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def element_center(tree: str, role: str, name: str | None = None, in_active_frame: bool = True) -> tuple[float, float]:
    """Centre of the first element of ``role`` (and ``name``) in the accessibility tree, read from OSWorld's
    ``cp:screencoord``/``cp:size`` attributes; inside the active frame unless told otherwise."""
    root = ET.fromstring(tree)
    scopes = [f for f in root.iter("frame") if f.get(f"{{{NS['st']}}}active") == "true"] if in_active_frame else [root]
    for scope in scopes:
        for element in scope.iter(role):
            if name is None or element.get("name") == name:
                x, y = json.loads(element.get(f"{{{NS['cp']}}}screencoord").replace("(", "[").replace(")", "]"))
                w, h = json.loads(element.get(f"{{{NS['cp']}}}size").replace("(", "[").replace(")", "]"))
                return x + w / 2, y + h / 2
    raise AssertionError(f"no {role} {name!r} on screen:\n{tree}")


class DeskAgent:
    """Plays the desk task from the accessibility tree alone, as an a11y-tree agent would."""

    def reset(self, task: Task) -> None:
        self.plan = iter([
            lambda t: Action.click(*element_center(t, "text")),
            lambda t: Action.type_text(" world"),
            lambda t: Action(type="hotkey", keys=("ctrl", "s")),
            lambda t: Action.click(*element_center(t, "push-button", "Close")),
            lambda t: Action.click(*element_center(t, "check-box", "Dark mode", in_active_frame=False)),
            lambda t: Action.terminate("success"),
        ])

    def act(self, observation: Observation, history: Sequence[Step]) -> Decision:
        return Decision(next(self.plan)(observation.a11y_tree))


class GiveUpAgent:
    """Declares the task infeasible at once (OSWorld's FAIL)."""

    def reset(self, task: Task) -> None:
        pass

    def act(self, observation: Observation, history: Sequence[Step]) -> Decision:
        return Decision(Action.terminate("failure"))


# --- one task end to end -------------------------------------------------------------------------------------


def test_a_task_is_set_up_played_and_judged_by_its_evaluator(vm, tmp_path):
    [task] = load_osworld_tasks(write_task(tmp_path))
    assert task.template == "desk" and task.env == "osworld" and task.max_steps == 15
    with make_env(vm) as env:
        start = env.reset(task)
        # The setup steps ran: the editor shows the uploaded file in front of Settings.
        assert "notes.txt - Text Editor" in start.a11y_tree and "Dark mode" in start.a11y_tree
        assert (start.width, start.height) == env.screen_size == (1280, 800)
        trajectory = run_episode(env, task, DeskAgent(), episode_id="desk-1", policy_version="scripted")
        assert trajectory.info["end"] == "terminate" and len(trajectory) == 6
        assert all(step.refused is None for step in trajectory.steps)
        assert trajectory.outcome.status is EpisodeStatus.SUCCESS and trajectory.outcome.reward == 1.0
        expected = "judged by desktop_env" if desktop_env_available() else "judged by builtin"
        assert trajectory.outcome.message == expected
        # The verdict came from the VM's state: the saved file and the persisted setting.
        env.resume()
        assert env.vm.get_file(NOTES) == b"hello world"
        assert json.loads(env.vm.get_file(SETTINGS)) == {"dark_mode": True}
        # The guest was frozen while the agent decided and let run for every action.
        assert env.counters["pauses"] >= 6 and env.counters["resumes"] >= 6

        # reset() restores the clean snapshot: the episode's files are gone.
        env.reset(None)
        env.resume()
        assert env.vm.get_file(NOTES) is None and env.vm.get_file(SETTINGS) is None
        assert env.counters["restores"] >= 2


def test_a_task_left_undone_fails_and_infeasible_is_judged_by_fail(vm, tmp_path):
    [task] = load_osworld_tasks(write_task(tmp_path))
    infeasible = load_osworld_tasks(write_task(tmp_path / "b", task_id="desk-infeasible",
                                               evaluator={"func": "infeasible"}))[0]
    with make_env(vm) as env:
        # Giving up on a feasible task scores 0, whatever the state.
        gave_up = run_episode(env, task, GiveUpAgent())
        assert gave_up.outcome.status is EpisodeStatus.FAILURE and gave_up.outcome.reward == 0.0
        assert run_episode(env, infeasible, GiveUpAgent()).outcome.success


def test_pyautogui_code_and_computer13_run_inside_the_vm(vm, tmp_path):
    [task] = load_osworld_tasks(write_task(tmp_path))
    with make_env(vm) as env:
        observation = env.reset(task)
        x, y = element_center(observation.a11y_tree, "text")
        env.execute_code(f"import pyautogui\nimport time\npyautogui.click({x}, {y}); pyautogui.typewrite(' code')\n"
                         "pyautogui.hotkey('ctrl', 's')")
        env.execute_computer13({"action_type": "TYPING", "parameters": {"text": "!"}})
        env.execute_computer13({"action_type": "HOTKEY", "parameters": {"keys": ["ctrl", "s"]}})
        env.resume()
        assert env.vm.get_file(NOTES) == b"hello code!"


@pytest.mark.parametrize("code", [
    "import os\nos.system('touch {marker}')",
    "import subprocess; subprocess.run(['touch', '{marker}'])",
    "open('{marker}', 'w')",
    "__import__('os').system('touch {marker}')",
    "exec(\"open('{marker}', 'w')\")",
    "eval(\"__import__('os')\")",
    "pyautogui.os.system('touch {marker}')",
    "pyautogui.__dict__['os'].system('touch {marker}')",
    "pyautogui.click(x=__import__('os').system('touch {marker}'), y=1)",
    "from os import system\nsystem('touch {marker}')",
    "import pyautogui as os\nos.click(1, 1)",
    "pyautogui.click(1, 1)\nimport shutil",
])
def test_code_that_reaches_beyond_pyautogui_is_refused_before_it_is_sent(vm, tmp_path, code):
    marker = tmp_path / "pwned"
    code = code.format(marker=marker)
    with pytest.raises(ActionError):
        check_pyautogui(code)
    with make_env(vm) as env:
        env.reset(None)
        before = env.observe().screenshot
        with pytest.raises(ActionError):
            env.execute_code(code)
        assert env.observe().screenshot == before  # nothing reached the VM either
    assert not marker.exists()


def test_the_test_vm_interprets_code_and_never_runs_it(vm, tmp_path):
    marker = tmp_path / "pwned"
    url = vm["vm_url"]
    with make_env(vm) as env:
        env.reset(None)
        env.resume()
    refused = httpx.post(f"{url}/execute", json={"command": ["python", "-c", f"open('{marker}', 'w')"]}).json()
    assert refused["returncode"] == 1 and "not allowed" in refused["error"]
    assert httpx.post(f"{url}/execute", json={"command": ["touch", str(marker)]}).status_code == 500
    # Code the VM's Python refuses is the action's fault (refused, the episode goes on), not a device failure.
    with make_env(vm) as env, pytest.raises(ActionError, match="failed in the VM"):
        env.vm.run_pyautogui(f"open('{marker}', 'w')")
    assert not marker.exists()


def test_pausing_keeps_the_screen_from_locking_while_the_model_thinks(tmp_path):
    port, monitor = free_port(), free_port()
    # 2.5 s of guest time: well above what a reset takes on a busy machine, so only thinking can lock it.
    process = start_testvm(port, monitor, "--lock-after", "2.5")
    vm = {"vm_url": f"http://127.0.0.1:{port}", "monitor": f"127.0.0.1:{monitor}"}
    try:
        with make_env(vm) as env:
            env.reset(None)
            time.sleep(3.0)  # a slow model: longer than the idle lock
            assert "Unlock" not in env.observe().a11y_tree
            assert env.monitor.command("info status") == "VM status: paused"
        with make_env(vm, pause_while_thinking=False) as env:
            env.reset(None)
            time.sleep(3.0)
            assert "Unlock" in env.observe().a11y_tree  # without the pause the desktop locked itself
    finally:
        stop(process)


def test_a_vm_that_never_answers_is_not_ready_within_its_timeout():
    env = OSWorldEnv(OSWorldEnvConfig(vm_url=f"http://127.0.0.1:{free_port()}", ready_timeout=1.0, retries=0,
                                      retry_interval=0.1))
    start = time.monotonic()
    with pytest.raises(DeviceNotReady, match="not within 1.0s"):
        env.reset(None)
    assert time.monotonic() - start < 5


def test_setup_steps_the_vm_refuses_or_cannot_run_are_config_errors(vm, tmp_path):
    path = write_task(tmp_path)
    record = json.loads(path.read_text())
    with make_env(vm) as env:
        missing = {**record, "config": [{"type": "open", "parameters": {"path": "/home/user/none.txt"}}]}
        path.write_text(json.dumps(missing))
        with pytest.raises(ConfigError, match=r"desk-notes-dark: config\[0\] \(open\).*404"):
            env.reset(load_osworld_tasks(path)[0])
        if not desktop_env_available():
            tabs = {**record, "config": [{"type": "chrome_open_tabs", "parameters": {"urls_to_open": ["x"]}}]}
            path.write_text(json.dumps(tabs))
            with pytest.raises(ConfigError, match="chrome_open_tabs.*desktop_env"):
                env.reset(load_osworld_tasks(path)[0])


# A stand-in for OSWorld's desktop_env with the interface its evaluators have: DesktopEnv-shaped objects
# handed to getters (vm_ip, server_port, cache_dir, controller), PythonController/SetupController signatures,
# metrics called as metric(result, expected, **options).
FAKE_DESKTOP_ENV = {
    "desktop_env/__init__.py": "",
    "desktop_env/controllers/__init__.py": "",
    "desktop_env/controllers/python.py": """
import requests

class PythonController:
    def __init__(self, vm_ip, server_port, pkgs_prefix="import pyautogui; {command}"):
        self.http_server = f"http://{vm_ip}:{server_port}"

    def get_file(self, file_path):
        response = requests.post(self.http_server + "/file", data={"file_path": file_path})
        return response.content if response.status_code == 200 else None

    def get_vm_platform(self):
        return requests.get(self.http_server + "/platform").text
""",
    "desktop_env/controllers/setup.py": """
class SetupController:
    def __init__(self, vm_ip, server_port=5000, chromium_port=9222, vlc_port=8080, cache_dir="cache"):
        self.cache_dir = cache_dir
""",
    "desktop_env/evaluators/__init__.py": "",
    "desktop_env/evaluators/getters.py": """
import os
import requests

def get_rule(env, config):
    return config["rules"]

def get_vm_command_line(env, config):
    reply = requests.post(f"http://{env.vm_ip}:{env.server_port}/execute", json={"command": config["command"]})
    return reply.json()["output"] if reply.status_code == 200 else None

def get_vm_file(env, config):
    data = env.controller.get_file(config["path"])
    if data is None:
        return None
    path = os.path.join(env.cache_dir, config["dest"])
    with open(path, "wb") as f:
        f.write(data)
    return path
""",
    "desktop_env/evaluators/metrics.py": """
import json

def check_include_exclude(result, rules):
    print("osworld metric", result, rules)  # OSWorld's metrics print to stdout
    return float(all(r in result for r in rules["include"]) and not any(r in result for r in rules["exclude"]))

def check_json_settings(actual, expected, **options):
    with open(actual) as f:
        data = json.load(f)
    return float(all(data.get(k) == v for k, v in expected["expected"].items()))

def compare_table(result, expected, **options):
    raise ValueError("this checker crashed")
""",
}


def test_osworlds_own_evaluators_judge_in_their_own_interpreter(vm, tmp_path, monkeypatch):
    for name, text in FAKE_DESKTOP_ENV.items():
        (tmp_path / "osworld" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "osworld" / name).write_text(text)
    [task] = load_osworld_tasks(write_task(tmp_path / "tasks"))
    # The interpreter of "the osworld venv": this one, with the stand-in package on its path.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "osworld"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("GUIAGENT_OSWORLD_PYTHON", sys.executable)
    with make_env(vm) as env:
        trajectory = run_episode(env, task, DeskAgent())
        assert trajectory.outcome.status is EpisodeStatus.SUCCESS and trajectory.outcome.message == "judged by desktop_env"
        assert "desktop_env" not in sys.modules  # the worker process never imported it
        [crashing] = load_osworld_tasks(write_task(tmp_path / "t", task_id="crash", evaluator={
            "func": "compare_table", "result": {"type": "vm_file", "path": NOTES, "dest": "notes.txt"},
            "expected": {"type": "rule", "rules": {}}}))
        env.reset(crashing)
        outcome = env.evaluate(crashing)
        assert outcome.status is EpisodeStatus.ERROR and "ValueError: this checker crashed" in outcome.message
        [unknown] = load_osworld_tasks(write_task(tmp_path / "u", task_id="unknown", evaluator={
            "func": "compare_docx", "result": {"type": "vm_file", "path": NOTES, "dest": "notes.txt"}}))
        env.reset(unknown)
        with pytest.raises(ConfigError, match="no metric 'compare_docx'"):
            env.evaluate(unknown)


@pytest.mark.skipif(desktop_env_available(), reason="OSWorld's desktop_env is importable here")
def test_without_desktop_env_osworld_evaluators_are_a_clear_config_error(vm, tmp_path):
    [task] = load_osworld_tasks(write_task(tmp_path))
    with make_env(vm, evaluator="osworld") as env:
        env.reset(task)
        with pytest.raises(ConfigError, match="desktop_env"):
            env.evaluate(task)
    with make_env(vm, osworld_python=sys.executable) as env:  # an interpreter without it
        env.reset(task)
        with pytest.raises(ConfigError, match="desktop_env"):
            env.evaluate(task)
    [table] = load_osworld_tasks(write_task(tmp_path / "t", task_id="calc", evaluator={
        "func": "compare_table", "result": {"type": "vm_file", "path": "/a.xlsx", "dest": "a.xlsx"}}))
    with make_env(vm) as env:
        env.reset(None)
        with pytest.raises(ConfigError, match="'compare_table' needs OSWorld's desktop_env"):
            env.evaluate(table)


# --- task files ----------------------------------------------------------------------------------------------


def test_tasks_load_from_a_file_an_index_or_a_directory(tmp_path):
    first = write_task(tmp_path, task_id="a")
    write_task(tmp_path, task_id="b")
    (tmp_path / "test_small.json").write_text(json.dumps({"desk": ["b"]}))
    assert [t.task_id for t in load_osworld_tasks(first)] == ["a"]
    assert [t.task_id for t in load_osworld_tasks(tmp_path / "test_small.json")] == ["b"]
    tasks = load_osworld_tasks(tmp_path)  # the index inside the tree is skipped
    assert [t.task_id for t in tasks] == ["a", "b"]
    assert tasks[0].params["config"][0]["type"] == "upload_file" and tasks[0].params["related_apps"] == ["gedit"]
    assert Task.from_json(json.loads(json.dumps(tasks[0].to_json()))) == tasks[0]  # crosses the broker as JSON


@pytest.mark.parametrize(("change", "field"), [
    (lambda r: r.pop("instruction"), "instruction"),
    (lambda r: r.update(config={"type": "open"}), "config"),
    (lambda r: r.update(config=[{"parameters": {}}]), r"config\[0\].type"),
    (lambda r: r.pop("evaluator"), "evaluator"),
    (lambda r: r["evaluator"].update(func=7), "evaluator.func"),
    (lambda r: r["evaluator"].update(result=[r["evaluator"]["result"][0]]), "evaluator.result"),
    (lambda r: r["evaluator"].update(conj="xor"), "evaluator.conj"),
])
def test_a_malformed_task_is_a_data_error_naming_file_and_field(tmp_path, change, field):
    path = write_task(tmp_path)
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))
    with pytest.raises(DataError, match=rf"{path.name}, record {field}"):
        load_osworld_tasks(path)


def test_a_file_that_is_not_json_is_a_data_error_naming_it(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match="broken.json.*not a JSON file"):
        load_osworld_tasks(path)


def test_the_farm_builder_takes_the_url_from_options_or_the_entrypoint(monkeypatch):
    worker_options = {"width": 1080, "height": 2400, "step_latency": 0.0, "faults": None, "device_config": None}
    env = build_farm_env("vm-3", {**worker_options, "vm_url": "http://10.0.0.5:5000", "monitor": "127.0.0.1:7100"})
    assert env.env_id == "vm-3" and env.vm.base_url == "http://10.0.0.5:5000" and env.monitor.port == 7100
    monkeypatch.setenv("GUIAGENT_OSWORLD_URL", "http://20.20.20.21:5000")
    assert build_farm_env("vm-4", worker_options).vm.base_url == "http://20.20.20.21:5000"
    with pytest.raises(ConfigError, match="monitr"):
        build_farm_env("vm-5", {**worker_options, "monitr": "x"})
    monkeypatch.delenv("GUIAGENT_OSWORLD_URL")
    with pytest.raises(ConfigError, match="vm_url"):
        build_farm_env("vm-6", worker_options)


# --- through the farm ------------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs Debian's redis-server")
@pytest.mark.timeout(180)
def test_a_vm_that_dies_mid_episode_is_reported_as_an_error_and_recovered(tmp_path):
    from guiagent.farm.client import FarmClient
    from guiagent.farm.config import FarmConfig
    from guiagent.farm.local import LocalFarm
    from guiagent.farm.specs import AgentSpec, EpisodeSpec

    [task] = load_osworld_tasks(write_task(tmp_path / "tasks"))
    port, monitor = free_port(), free_port()
    # The VM dies during the 3rd action of the first episode.
    process = start_testvm(port, monitor, "--die-after-executes", "3")
    config = FarmConfig(store_url=str(tmp_path / "farm" / "trajectories"), visibility_timeout=60.0, time_limit=50.0,
                        soft_time_limit=45.0, unacked_restore_interval=1.0, recheck_interval=1.0,
                        episode_retries=0, recovery_attempts=1)
    options = {"vm_url": f"http://127.0.0.1:{port}", "monitor": f"127.0.0.1:{monitor}", "ready_timeout": 2.0,
               "timeout": 5.0, "retries": 0, "retry_interval": 0.1, "settle_s": 0.0}
    try:
        with LocalFarm(tmp_path / "farm", sims=0, config=config) as farm, FarmClient(farm.config) as client:
            farm.add_worker("osworld", "vm-0", env_options=options)
            farm.wait_ready(1, 60)
            first = EpisodeSpec("dies", task, AgentSpec("random", seed=1), kind="osworld", max_steps=40)
            [result] = client.run([first], timeout=90)
            assert result.status == "error" and result.episode_id == "dies"
            assert "device failed" in result.message and "vm-0" == result.env_id
            [status] = client.device_status().values()
            assert status["failures"] >= 1 and status["state"] == "quarantined"
            assert status["torch_loaded"] is False  # the device side stays small

            # The VM comes back (compose restarts it); the quarantined worker recovers it and plays again.
            process.wait(timeout=10)
            process = start_testvm(port, monitor)
            deadline = time.monotonic() + 60
            while next(iter(client.device_status().values()))["state"] != "ok":
                assert time.monotonic() < deadline, client.device_status()
                time.sleep(0.2)
            # ... and `guiagent eval osworld` plays the task on it and reports (a random agent does not solve it).
            done = subprocess.run(
                [sys.executable, "-m", "guiagent", "eval", "osworld", "--tasks", str(tmp_path / "tasks"),
                 "--farm-dir", str(tmp_path / "farm"), "--agent", "random", "--max-steps", "3",
                 "--timeout", "60", "--out", str(tmp_path / "report")],
                capture_output=True, text=True, timeout=120, check=False)
            assert done.returncode == 0, done.stderr
            report = json.loads((tmp_path / "report" / "report.json").read_text())
            assert report["protocol"] == "osworld" and report["kind"] == "osworld"
            [row] = report["episodes"]
            assert row["status"] in ("failure", "timeout") and row["steps"] == 3 and row["env_id"] == "vm-0"
            assert report["metrics"]["errors"] == 0 and report["metrics"]["score"] == 0.0
            [status] = client.device_status().values()
            assert status["recoveries"] >= 1 and status["episodes"] == 1
    finally:
        stop(process)


# --- the real OSWorld VM -----------------------------------------------------------------------------------------


@pytest.mark.kvm
@pytest.mark.skipif(not os.environ.get("GUIAGENT_OSWORLD_URL"),
                    reason="needs a real OSWorld VM (KVM): set GUIAGENT_OSWORLD_URL (and GUIAGENT_OSWORLD_MONITOR)")
def test_a_real_osworld_vm_observes_acts_and_resets():
    config = OSWorldEnvConfig(vm_url=os.environ["GUIAGENT_OSWORLD_URL"],
                              monitor=os.environ.get("GUIAGENT_OSWORLD_MONITOR"), settle_s=1.0)
    with OSWorldEnv(config, env_id="real-vm") as env:
        observation = env.reset(None)
        assert observation.width > 0 and observation.a11y_tree.startswith("<desktop-frame")
        env.execute(Action(type="move", point=(observation.width / 2, observation.height / 2)))
        assert env.observe().screenshot


@pytest.mark.kvm
@pytest.mark.skipif(not (os.environ.get("GUIAGENT_OSWORLD_URL") and os.environ.get("GUIAGENT_OSWORLD_TASKS")),
                    reason="needs a real OSWorld VM and OSWorld's evaluation_examples (GUIAGENT_OSWORLD_TASKS)")
def test_a_real_osworld_task_is_set_up_and_judged_by_osworlds_evaluators():
    if not desktop_env_available():
        pytest.skip("needs OSWorld's desktop_env package (the osworld worker image)")
    task = load_osworld_tasks(os.environ["GUIAGENT_OSWORLD_TASKS"])[0]
    with OSWorldEnv(OSWorldEnvConfig(vm_url=os.environ["GUIAGENT_OSWORLD_URL"],
                                     monitor=os.environ.get("GUIAGENT_OSWORLD_MONITOR")), env_id="real-vm") as env:
        env.reset(task)
        outcome = env.evaluate(task)
        assert outcome.message == "judged by desktop_env" and outcome.status in (EpisodeStatus.SUCCESS,
                                                                                  EpisodeStatus.FAILURE)
