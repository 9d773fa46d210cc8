"""The Android backend against the real Debian adb server and MobileSim's virtual adbd.

Path under test: AndroidEnv -> adbutils -> adb server (private port, started and killed here) -> TCP ->
virtual adbd -> MobileSim. Task success is read from the simulator object in this process, never from
anything the backend reports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import socket
import subprocess
import threading
import time

import pytest

from guiagent.agent import OracleAgent, run_episode
from guiagent.envs.android.adb_env import AndroidEnv, private_adb_server, wait_for_device
from guiagent.envs.android.config import AndroidEnvConfig
from guiagent.envs.sim.adbd import serve
from guiagent.envs.sim.apps import LAUNCHER
from guiagent.envs.sim.device import MobileSim
from guiagent.envs.sim.emulator_grpc import serve_emulator
from guiagent.envs.sim.env import mobilesim_evaluation, mobilesim_setup
from guiagent.envs.sim.oracle import UIScreen, plan_actions
from guiagent.envs.sim.tasks import TEMPLATES, make_task
from guiagent.errors import ActionError, DeviceError, DeviceLost, DeviceNotReady, DeviceTimeout
from guiagent.types import Action, Direction

pytestmark = [
    pytest.mark.skipif(shutil.which("adb") is None, reason="needs the Debian adb binary (scripts/run.sh installs it)"),
    pytest.mark.timeout(120),
]


@pytest.fixture(scope="module")
def adb_port():
    """A private adb server for this module, killed at the end even when tests fail."""
    with private_adb_server() as port:
        yield port


def _config(serial: str, adb_port: int, **overrides) -> AndroidEnvConfig:
    values = dict(serial=serial, adb_server_port=adb_port, start_adb_server=False, launcher_package=LAUNCHER,
                  timeout=5.0, ready_timeout=10.0, observe_a11y=True)
    values.update(overrides)
    return AndroidEnvConfig(**values)


@contextlib.contextmanager
def _served(adb_port: int, adb_keyboard: bool = True, **overrides):
    """``(sim, adbd, env)`` wired through the adb server; everything closed afterwards."""
    sim = MobileSim()
    adbd = serve(sim, adb_keyboard=adb_keyboard)
    env = None
    try:
        env = AndroidEnv(_config(adbd.serial, adb_port, **overrides), task_setup=mobilesim_setup(sim),
                         task_evaluation=mobilesim_evaluation(sim))
        yield sim, adbd, env
    finally:
        if env is not None:
            env.close()
        adbd.close()
        subprocess.run(["adb", "-P", str(adb_port), "disconnect", adbd.serial], capture_output=True, timeout=10)


@pytest.fixture()
def device(adb_port):
    with _served(adb_port) as served:
        yield served


def test_observation_matches_the_simulated_screen(device):
    sim, _, env = device
    obs = env.reset()
    assert (obs.width, obs.height) == sim.size == env.screen_size == (1080, 2400)
    assert obs.screenshot == sim.screenshot_png()
    assert env.current_focus() == (LAUNCHER, ".Launcher")


def test_oracle_completes_every_template_through_adb(device):
    sim, _, env = device
    apps_done: set[str] = set()
    for name in TEMPLATES:
        task = make_task(name, seed=3)
        # The oracle plans from the uiautomator dump read over adb; the env judges through the task hook.
        trajectory = run_episode(env, task, OracleAgent(), policy_version="expert")
        assert trajectory.outcome.success, f"{name} failed through adb"
        assert sim.is_successful(task)
        apps_done.add(name[:4])
    assert len(apps_done) >= 6  # settings, contacts, browser, shopping, clock, calculator
    assert env.counters == {"retries": 0, "reconnects": 0, "timeouts": 0, "lost": 0}


def test_actions_reach_the_device(device):
    sim, _, env = device
    env.reset()
    env.execute(Action.open_app("Settings"))
    assert sim.current_focus()[0] == "com.android.settings"
    env.execute(Action.system_button("home"))
    assert sim.current_focus()[0] == LAUNCHER
    env.execute(Action.open_app("Clock"))  # resolved from 'pm list packages': com.android.deskclock
    assert sim.current_focus()[0] == "com.android.deskclock"
    env.execute(Action.scroll(Direction.DOWN))
    env.execute(Action.long_press(540, 1200))
    with pytest.raises(ActionError):
        env.execute(Action.click(2000, 10))  # off screen: rejected before touching the device
    with pytest.raises(ActionError):
        env.execute(Action.open_app("NoSuchApp"))


def test_wait_ready_names_the_check_that_failed(device):
    sim, _, env = device
    sim.props["sys.boot_completed"] = "0"
    with pytest.raises(DeviceNotReady, match="boot_completed"):
        env.wait_ready(timeout=0.5)
    sim.props["sys.boot_completed"] = "1"
    sim.start_app("com.android.settings")
    env.wait_ready(timeout=5)  # presses HOME once to reach the launcher
    assert sim.current_focus()[0] == LAUNCHER


def _focus_text_field(env: AndroidEnv) -> None:
    env.execute(Action.open_app("Browser"))
    screen = UIScreen(env.ui_dump(), env.screen_size)
    field = next(n for n in screen.nodes if n.cls == "android.widget.EditText")
    env.execute(Action.click(*field.center))


def _field_text(env: AndroidEnv) -> str:
    screen = UIScreen(env.ui_dump(), env.screen_size)
    return next(n for n in screen.nodes if n.cls == "android.widget.EditText").text


def test_typing_escapes_ascii_and_uses_the_input_method_for_unicode(device):
    sim, _, env = device
    env.reset()
    _focus_text_field(env)
    text = "50%s off it's $5 & more"
    env.execute(Action.type_text(text))
    assert _field_text(env) == text
    env.execute(Action.type_text(" héllo 世界"))
    assert _field_text(env) == text + " héllo 世界"


def test_unicode_without_an_input_method_is_rejected_not_mistyped(adb_port):
    with _served(adb_port, adb_keyboard=False) as (_, _, env):
        env.reset()
        _focus_text_field(env)
        with pytest.raises(ActionError, match="input method"):
            env.execute(Action.type_text("héllo"))
        assert _field_text(env) == ""


# --- faults --------------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_adbd_killed_mid_episode_raises_device_lost_within_the_timeout(device):
    sim, adbd, env = device
    task = make_task("SettingsToggleWifi", seed=0)
    env.reset(task)
    actions = plan_actions(task, lambda: (env.ui_dump(), env.screen_size))
    env.execute(next(actions))
    adbd.close()  # the device dies between two steps
    start = time.monotonic()
    with pytest.raises(DeviceLost):
        env.observe()
    assert time.monotonic() - start < env.config.timeout
    assert env.counters["lost"] >= 1 and env.counters["reconnects"] >= 1


@pytest.mark.timeout(30)
def test_adbd_killed_during_a_call_raises_device_lost(device):
    _, adbd, env = device
    env.reset()
    threading.Timer(0.3, adbd.close).start()
    start = time.monotonic()
    with pytest.raises(DeviceLost):
        env.shell("sleep 3", idempotent=False)
    assert time.monotonic() - start < 2.5  # well before the command would have finished


@pytest.mark.timeout(30)
def test_adbd_that_stops_answering_raises_device_timeout_then_recovers(adb_port):
    with _served(adb_port, timeout=1.0, max_retries=1) as (sim, adbd, env):
        env.reset()
        adbd.hang()
        start = time.monotonic()
        with pytest.raises(DeviceTimeout):
            env.observe()
        elapsed = time.monotonic() - start
        assert 1.0 <= elapsed < 1.0 * (1 + 1) + 1.5  # one try plus one retry, each bounded by the timeout
        assert env.counters["timeouts"] == 2 and env.counters["retries"] == 1
        with pytest.raises(DeviceTimeout):
            env.execute(Action.click(10, 10))  # actions are never retried: one timeout
        adbd.resume()
        assert env.observe().screenshot == sim.screenshot_png()


@pytest.mark.timeout(30)
def test_dropped_connection_is_reconnected_and_counted(adb_port):
    with _served(adb_port, timeout=1.5) as (sim, adbd, env):
        env.reset()
        adbd.drop()
        start = time.monotonic()
        with pytest.raises(DeviceLost):
            env.observe()
        assert time.monotonic() - start < 1.5 + 1.0  # reconnect is bounded by the call timeout
        adbd.resume()
        before = env.counters["reconnects"]
        assert env.observe().screenshot == sim.screenshot_png()
        assert env.counters["reconnects"] == before + 1


# --- emulator surfaces ---------------------------------------------------------------------------------------


@pytest.fixture()
def emulator(adb_port):
    sim = MobileSim()
    emu = serve_emulator(sim)
    try:
        emu.register(adb_port)
        wait_for_device(emu.serial, adb_port)
        yield sim, emu
    finally:
        subprocess.run(["adb", "-P", str(adb_port), "disconnect", emu.adbd.serial], capture_output=True, timeout=10)
        emu.close()


@pytest.mark.parametrize("method", ["adb_emu", "grpc"])
def test_reset_loads_the_snapshot(emulator, adb_port, method):
    sim, emu = emulator
    task = make_task("SettingsToggleWifi", seed=0)
    sim.reset(task)
    emu.store.save("task-start")  # the farm's way: one snapshot per task's initial state
    config = _config(emu.serial, adb_port, snapshot_name="task-start", reset_method=method,
                     grpc_endpoint=emu.grpc_endpoint if method == "grpc" else None)
    env = AndroidEnv(config)
    try:
        start = env.reset(task).screenshot
        for action in plan_actions(task, lambda: (env.ui_dump(), env.screen_size)):
            env.execute(action)
        assert sim.is_successful(task)
        assert env.reset(task).screenshot == start
        assert not sim.is_successful(task)  # the snapshot load undid the episode
    finally:
        env.close()


def test_the_task_names_its_snapshot(emulator, adb_port):
    """A Task's snapshot overrides the env's configured one: one device serves tasks with different starts."""
    sim, emu = emulator
    task = dataclasses.replace(make_task("ClockToggleAlarm", seed=1), snapshot="alarm-start")
    sim.reset(task)
    emu.store.save("alarm-start")
    env = AndroidEnv(_config(emu.serial, adb_port, snapshot_name="never-saved"), task_setup=None,
                     task_evaluation=mobilesim_evaluation(sim))
    try:
        start = env.reset(task).screenshot
        trajectory = run_episode(env, task, OracleAgent(), policy_version="expert")
        assert trajectory.outcome.success
        assert env.reset(task).screenshot == start and not env.evaluate(task).success
    finally:
        env.close()


def test_missing_snapshot_is_an_error_not_a_silent_reset(emulator, adb_port):
    _, emu = emulator
    env = AndroidEnv(_config(emu.serial, adb_port, snapshot_name="never-saved"))
    try:
        with pytest.raises(DeviceError, match="never-saved"):
            env.reset()
    finally:
        env.close()


def test_console_requires_the_auth_token():
    from guiagent.envs.sim.emulator_grpc import EmulatorConsole, SnapshotStore

    sim = MobileSim()
    console = EmulatorConsole(SnapshotStore(sim), auth_token="s3cret")
    try:
        with socket.create_connection(("127.0.0.1", console.port), timeout=5) as sock, sock.makefile("rb") as reader:
            def ask(line: str) -> str:
                sock.sendall(line.encode() + b"\n")
                reply = reader.readline().decode()
                while not (reply.startswith("OK") or reply.startswith("KO")):
                    reply = reader.readline().decode()
                return reply.strip()

            while not reader.readline().startswith(b"OK"):  # banner
                pass
            assert ask("avd snapshot save base").startswith("KO")
            assert ask("auth wrong").startswith("KO")
            assert ask("auth s3cret") == "OK"
            assert ask("avd snapshot save base") == "OK"
            assert ask("avd snapshot load base") == "OK"
            assert ask("avd snapshot load other").startswith("KO")
    finally:
        console.close()


def test_grpc_screenshot_touch_and_keys(emulator, adb_port):
    import grpc
    from android_env.proto import emulator_controller_pb2 as ec
    from android_env.proto import emulator_controller_pb2_grpc as ec_grpc

    sim, emu = emulator
    env = AndroidEnv(_config(emu.serial, adb_port, grpc_endpoint=emu.grpc_endpoint, grpc_image_format="rgb888"))
    try:
        obs = env.observe()
        assert obs.image().tobytes() == sim.screenshot_rgb().convert("RGB").tobytes()
        with grpc.insecure_channel(emu.grpc_endpoint) as channel:
            stub = ec_grpc.EmulatorControllerStub(channel)
            icon = UIScreen(sim.dump_ui_xml(), sim.size).first(text="Settings")
            x, y = (int(v) for v in icon.center)
            stub.sendTouch(ec.TouchEvent(touches=[ec.Touch(x=x, y=y, pressure=1)]), timeout=5)
            stub.sendTouch(ec.TouchEvent(touches=[ec.Touch(x=x, y=y, pressure=0)]), timeout=5)
            assert sim.current_focus()[0] == "com.android.settings"
            stub.sendKey(ec.KeyboardEvent(key="GoHome", eventType=ec.KeyboardEvent.keypress), timeout=5)
            assert sim.current_focus()[0] == LAUNCHER
            status = stub.getStatus(ec.google_dot_protobuf_dot_empty__pb2.Empty(), timeout=5)
            assert status.booted
    finally:
        env.close()


def test_guiagent_sim_adbd_command_serves_a_device(adb_port):
    import sys
    from pathlib import Path

    entry = Path(sys.executable).with_name("guiagent")  # the installed console script
    proc = subprocess.Popen([str(entry), "sim", "adbd", "--port", "0",
                             "--template", "ShoppingAddItem", "--seed", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    env = None
    try:
        first = proc.stdout.readline()
        assert first.startswith("adbd listening on "), first + proc.stderr.read()
        serial = first.split()[3].rstrip(":")
        env = AndroidEnv(_config(serial, adb_port))
        assert env.screen_size == (1080, 2400)
        assert env.getprop("ro.product.model") == "MobileSim"
        env.execute(Action.open_app("Shopping"))
        assert env.current_focus()[0] == "com.guiagent.shopping"
    finally:
        if env is not None:
            env.close()
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0
