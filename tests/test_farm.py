"""The environment farm on the real thing: redis-server and Celery device workers, each a process owning one
MobileSim device, started by :class:`LocalFarm` and by ``guiagent farm up --local``.

Shown here: a GRPO group's G episodes start from one screen on G devices; a 200-episode run with injected
device crashes and hangs and a worker SIGKILLed mid-episode loses and duplicates nothing, and its sick devices
are quarantined and come back; a pickled broker message is refused without running; a kind with no worker
fails fast; an episode id runs at most once to a stored result; step-level sessions hold one device; the
CLI starts, shows and stops exactly its processes.

Screens are 540x1200 and the limits small (visibility timeout 20 s), so that redelivery after a dead worker
and the whole file fit in a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from guiagent.agent import OracleAgent, ReplayAgent, run_episode
from guiagent.data.store import TrajectoryStore
from guiagent.envs.sim.env import MobileSimEnv
from guiagent.envs.sim.faults import FaultyEnv
from guiagent.envs.sim.tasks import make_task
from guiagent.errors import DeviceLost, FarmError
from guiagent.farm.app import EPISODE_TASK
from guiagent.farm.client import FarmClient
from guiagent.farm.config import FarmConfig
from guiagent.farm.local import LocalFarm, read_state, stop_recorded
from guiagent.farm.session import RemoteEnv
from guiagent.farm.specs import AgentSpec, EpisodeSpec

pytestmark = [
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs Debian's redis-server"),
    pytest.mark.timeout(300),
]

WIDTH, HEIGHT = 540, 1200
# Small limits: a dead worker's episode is delivered again 20 s later, found by a scan every second.
LIMITS = {"visibility_timeout": 20.0, "time_limit": 15.0, "soft_time_limit": 10.0,
          "unacked_restore_interval": 1.0, "recheck_interval": 1.0}
ORACLE = AgentSpec("oracle")


def _config(directory: Path) -> FarmConfig:
    return FarmConfig(store_url=str(directory / "trajectories"), **LIMITS)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(interval)


def _broker_idle(config: FarmConfig) -> bool:
    """No episode waits in the sim queue and none is held unacknowledged (every delivery was finished)."""
    client = redis.Redis.from_url(config.broker_url, socket_timeout=5)
    try:
        return client.llen(config.queue("sim")) == 0 and client.hlen("unacked") == 0
    finally:
        client.close()


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    """Four MobileSim workers; inputs take 50 ms, so an episode lasts a few hundred ms."""
    directory = tmp_path_factory.mktemp("farm")
    with LocalFarm(directory, sims=4, config=_config(directory), width=WIDTH, height=HEIGHT,
                   step_latency=0.05) as farm:
        yield farm


@pytest.fixture(scope="module")
def client(farm):
    with FarmClient(farm.config) as client:
        yield client


# --- GRPO groups ---------------------------------------------------------------------------------------------


def test_a_group_starts_from_one_screen_on_four_devices_and_the_oracle_completes_it(farm, client):
    # First leave the four devices in different states: random play of four different tasks.
    scramble = [EpisodeSpec(f"scramble-{i}", make_task(name, i), AgentSpec("random", seed=i), max_steps=4)
                for i, name in enumerate(["ContactsAddContact", "BrowserSearchQuery", "ShoppingAddItem",
                                          "ClockAddAlarm"])]
    scrambled = client.run(scramble, timeout=60)
    assert len({r.env_id for r in scrambled}) == 4, scrambled

    task = make_task("SettingsToggleWifi", 7)
    handles = client.submit_group(task, ORACLE, size=4, group="wifi-7")
    results = list(client.results(handles, timeout=60))

    assert sorted(r.episode_id for r in results) == [f"wifi-7-{i}" for i in range(4)]
    assert len({r.env_id for r in results}) == 4 and len({r.worker for r in results}) == 4, results
    assert all(r.success and r.reward == 1.0 and r.group == "wifi-7" and r.stored for r in results), results

    store = TrajectoryStore(farm.config.store_url, create=False)
    trajectories = [store.get(h.episode_id) for h in handles]
    assert {t.env_id for t in trajectories} == {r.env_id for r in results}
    assert all(t.info["group"] == "wifi-7" and (t.task_id, t.seed) == (task.task_id, task.seed)
               for t in trajectories)
    assert all(t.outcome.success for t in trajectories)
    # The same first screen on every device: the one a fresh device shows after a reset for the task.
    reference_env = MobileSimEnv(width=WIDTH, height=HEIGHT)
    reference = reference_env.reset(task)
    first_screens = {store.read_image(t.steps[0].observation.screenshot_path) for t in trajectories}
    assert first_screens == {reference.screenshot}
    assert {t.steps[0].observation.a11y_tree for t in trajectories} == {reference.a11y_tree}
    # Success is the device's verdict: the task does not hold at the start, and the recorded actions
    # replayed on a fresh device make it hold.
    assert not reference_env.evaluate(task).success
    assert run_episode(reference_env, task, ReplayAgent(trajectories[0])).outcome.success


# --- what the farm refuses -----------------------------------------------------------------------------------


class _WritesMarker:
    """Unpickling this opens (creates) ``path``: the stand-in for code a pickled message would run."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_pickled_message_is_refused_and_never_run(farm, client, tmp_path):
    from kombu import Connection, Queue

    # The payload is live: unpickled (in a separate process), it creates its file.
    control = tmp_path / "control"
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
                   input=pickle.dumps(_WritesMarker(str(control))), check=True, timeout=30)
    assert control.exists()

    marker = tmp_path / "pwned"
    # A well-formed episode message in every header, its body a pickle of (args, kwargs, embed).
    message = client.app.amqp.as_task_v2("pickled-1", EPISODE_TASK, args=[{"episode_id": "pickled-1"}])
    body = pickle.dumps(((_WritesMarker(str(marker)),), {}, {}))
    with Connection(farm.config.broker_url) as connection:
        connection.Producer().publish(
            body, exchange="", routing_key=farm.config.queue("sim"), declare=[Queue(farm.config.queue("sim"))],
            headers=message.headers, content_type="application/x-python-serialize", content_encoding="binary")

    # A worker took it off the queue and dropped it (nothing waits, nothing is held), saying why.
    _wait_for(lambda: _broker_idle(farm.config), 15, "the pickled message was taken and acknowledged")
    logs = {p.name: p.read_text(errors="replace") for p in Path(farm.directory).glob("worker-*.log")}
    refusing = [name for name, text in logs.items()
                if "Refusing to deserialize untrusted content of type pickle" in text and "discarded" in text]
    assert len(refusing) == 1, logs
    time.sleep(2)
    assert not marker.exists()

    # Every worker is still healthy and serves episodes, the one that refused the message included.
    statuses = client.device_status()
    assert all(s["state"] == "ok" for s in statuses.values()), statuses
    results = list(client.results(client.submit_group(make_task("SettingsToggleWifi", 8), ORACLE, size=4,
                                                      group="after-pickle"), timeout=60))
    assert all(r.success for r in results) and len({r.worker for r in results}) == 4, results
    refuser = refusing[0][len("worker-"):-len(".log")]
    assert refuser in {r.env_id for r in results}
    assert not marker.exists()


def test_a_kind_without_workers_fails_fast_naming_its_queue(farm):
    spec = EpisodeSpec("android-1", make_task("SettingsToggleWifi", 0), ORACLE, kind="android")
    with FarmClient(farm.config) as client:
        start = time.monotonic()
        with pytest.raises(FarmError, match=r"'guiagent\.android'"):
            client.submit(spec)
    assert time.monotonic() - start < 10
    assert _broker_idle(farm.config)  # nothing was queued for it


# --- idempotency ---------------------------------------------------------------------------------------------


def test_an_episode_id_yields_one_record_and_one_result_however_often_it_arrives(farm, client):
    store = TrajectoryStore(farm.config.store_url, create=False)
    before = set(store.episode_ids())
    spec = EpisodeSpec("twice-1", make_task("SettingsToggleWifi", 21), ORACLE)

    # Submitted twice at once: two messages, one result, one record.
    handles = [client.submit(spec), client.submit(spec)]
    results = list(client.results(handles, timeout=60))
    assert len(results) == 1 and results[0].success, results
    _wait_for(lambda: _broker_idle(farm.config), 30, "both deliveries finished")
    assert set(store.episode_ids()) - before == {"twice-1"}
    record = store.get("twice-1")
    assert (record.env_id, len(record), record.outcome.status.value) == \
        (results[0].env_id, results[0].steps, results[0].status)
    # Both runs rendered the same screens: one image per step, never a second set.
    images = Path(farm.config.store_url, "images")
    assert len([p for p in images.rglob("*") if p.is_file() and "twice-1" in str(p)]) == len(record)
    record_bytes = _record_bytes(farm.config, "twice-1")

    # Delivered again after it ran (what a redelivery looks like to a worker): the worker finds the stored
    # run and plays nothing; the result backend keeps the first result.
    runs, played = _episode_runs(client), _played(client)
    handle = client.submit(spec)
    _wait_for(lambda: _episode_runs(client) == runs + 1, 30, "a worker took the second delivery")
    _wait_for(lambda: _broker_idle(farm.config), 30, "the second delivery finished")
    assert _played(client) == played
    assert list(client.results([handle], timeout=10)) == results
    assert set(store.episode_ids()) - before == {"twice-1"}
    assert _record_bytes(farm.config, "twice-1") == record_bytes


def _episode_runs(client: FarmClient) -> int:
    """Episode messages the workers have executed (Celery's own count, redeliveries included)."""
    stats = client.app.control.inspect(timeout=2).stats() or {}
    assert len(stats) == 4, sorted(stats)
    return sum(s.get("total", {}).get(EPISODE_TASK, 0) for s in stats.values())


def _played(client: FarmClient) -> tuple[int, int]:
    """Episodes and steps the devices have played."""
    devices = client.device_status().values()
    return sum(d["episodes"] for d in devices), sum(d["steps"] for d in devices)


def _record_bytes(config: FarmConfig, episode_id: str) -> bytes:
    (path,) = [p for p in Path(config.store_url, "trajectories").rglob("*.json") if episode_id in p.name]
    return path.read_bytes()


# --- step-level sessions -------------------------------------------------------------------------------------


def test_episodes_past_their_timeout_are_cancelled_and_queued_ones_never_run(farm, client):
    """Four devices, twelve 40-step random episodes (~2 s each at 50 ms per input): after 1 s every unfinished
    episode is reported as a cancelled error result; the queued ones are revoked and never played, only the
    (at most four) that were running finish on their devices."""
    task = make_task("BrowserSearchQuery", 2)
    handles = [client.submit(EpisodeSpec(f"slow-{i}", task, AgentSpec("random", seed=i), max_steps=40))
               for i in range(12)]
    results = list(client.results(handles, timeout=1.0))
    assert sorted(r.episode_id for r in results) == sorted(h.episode_id for h in handles)
    cancelled = [r for r in results if r.status == "error" and "cancelled" in r.message]
    assert len(cancelled) >= 12 - 4, results
    _wait_for(lambda: _broker_idle(farm.config), 60, "the farm to go idle")
    time.sleep(1.0)
    store = TrajectoryStore(farm.config.store_url)
    played = [r.episode_id for r in cancelled if r.episode_id in store]
    assert len(played) <= 4, played  # only episodes already running when they were cancelled


def test_a_session_holds_one_device_and_the_farm_works_around_it(farm, client):
    task = make_task("SettingsToggleWifi", 31)
    with RemoteEnv(farm.config, "sim", timeout=30, idle_timeout=15) as env:
        trajectory = run_episode(env, task, OracleAgent(), episode_id="session-1")
        assert trajectory.outcome.success and trajectory.env_id == env.env_id
        assert client.device_status()[env.worker]["state"] == "session"
        # While the session is open, episodes go to the other workers.
        results = client.run([EpisodeSpec(f"beside-session-{i}", make_task("SettingsToggleWifi", 40 + i), ORACLE)
                              for i in range(6)], timeout=60)
        assert all(r.success for r in results) and env.worker not in {r.worker for r in results}, results
        assert env.observe().screenshot  # still this session's device
    _wait_for(lambda: _consumes_episodes(client, env.worker), 15, "the session's worker takes episodes again")
    assert client.device_status()[env.worker]["state"] == "ok"
    results = list(client.results(client.submit_group(task, ORACLE, size=4, group="after-session"), timeout=60))
    assert all(r.success for r in results) and env.worker in {r.worker for r in results}, results


def _consumes_episodes(client: FarmClient, host: str) -> bool:
    return client.config.queue("sim") in client.workers(timeout=0.5).get(host, [])


def test_an_idle_session_is_closed_by_its_worker(farm, client):
    env = RemoteEnv(farm.config, "sim", timeout=30, idle_timeout=2)
    env.reset(make_task("SettingsToggleWifi", 32))
    assert client.device_status()[env.worker]["state"] == "session"
    _wait_for(lambda: _consumes_episodes(client, env.worker), 15, "the idle session was closed")
    assert client.device_status()[env.worker]["state"] == "ok"
    with pytest.raises(FarmError, match="not open"):
        env.observe()
    env.close()  # closing a session the worker already closed is fine
    results = list(client.results(client.submit_group(make_task("SettingsToggleWifi", 33), ORACLE, size=4,
                                                      group="after-idle"), timeout=60))
    assert all(r.success for r in results) and env.worker in {r.worker for r in results}, results


# --- the CLI -------------------------------------------------------------------------------------------------


def test_the_cli_starts_shows_and_stops_exactly_its_farm(tmp_path, farm):
    guiagent = str(Path(sys.executable).with_name("guiagent"))
    directory = tmp_path / "cli-farm"

    def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([guiagent, "farm", *args, "--dir", str(directory)], capture_output=True, text=True,
                              timeout=timeout, check=False)

    try:
        up = cli("up", "--local", "--sim", "2")
        assert up.returncode == 0, up.stderr
        state = read_state(directory)
        recorded = [*state["workers"].values(), state["redis_pid"]]
        assert len(recorded) == 3 and all(_alive(pid) for pid in recorded)

        status = cli("status")
        assert status.returncode == 0, status.stderr
        rows = [line for line in status.stdout.splitlines() if line.startswith(("sim-0@", "sim-1@"))]
        assert len(rows) == 2 and all(" ok " in row for row in rows), status.stdout
        devices = json.loads(cli("status", "--json").stdout)["devices"]
        pool_pids = [d["pid"] for d in devices.values()]
        assert len(pool_pids) == 2 and all(_alive(pid) for pid in pool_pids)

        again = cli("up", "--local", "--sim", "2")
        assert again.returncode != 0 and "already runs" in again.stderr
        assert read_state(directory) == state

        down = cli("down")
        assert down.returncode == 0, down.stderr
        assert all(str(pid) in down.stdout for pid in recorded)
        _wait_for(lambda: not any(_alive(pid) for pid in recorded + pool_pids), 10, "the farm's processes ended")
        assert not (directory / "farm.json").exists()
        # Exactly those: the other farm on this machine runs on.
        assert all(p.poll() is None for p in farm.workers.values()) and farm.redis.poll() is None
    finally:
        if (directory / "farm.json").exists():
            stop_recorded(directory)


# --- chaos ---------------------------------------------------------------------------------------------------


def test_fault_injection_keeps_its_bounds():
    env = FaultyEnv(MobileSimEnv(width=WIDTH, height=HEIGHT, env_id="unit-0"), crash_rate=1.0, down_seconds=0.5)
    with pytest.raises(DeviceLost):
        env.reset(None)
    restarted = FaultyEnv(MobileSimEnv(width=WIDTH, height=HEIGHT, env_id="unit-0"), down_seconds=0.5)
    with pytest.raises(DeviceLost):  # still down: a restart within the outage fails too
        restarted.reset(None)
    time.sleep(0.6)
    assert restarted.reset(None).screenshot
    assert restarted.injected == {"crashes": 1, "hangs": 0}  # counted across the restart


FAULTS = {"crash_rate": 0.01, "hang_rate": 0.015, "hang_seconds": 1.0, "down_seconds": 2.0, "seed": 11}


def _kill_a_worker_mid_episode(farm: LocalFarm, client: FarmClient) -> dict:
    """SIGKILL the worker of a device that is in the middle of an episode; its pool process dies with it.

    The pool process is paused (SIGSTOP) while its published status is read, so the status names the episode
    it is in at the moment its worker dies.
    """
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for host, status in client.device_status().items():
            if status.get("task") is None or status["state"] != "ok" or not _alive(status["pid"]):
                continue
            os.kill(status["pid"], signal.SIGSTOP)
            pinned = client.device_status()[host]
            if pinned.get("task") is None:  # it finished in between: let it go on
                os.kill(status["pid"], signal.SIGCONT)
                continue
            worker = farm.workers[pinned["device_id"]]
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
            _wait_for(lambda pool=pinned["pid"]: not _alive(pool), 10, "the pool process died with its worker")
            return {"host": host, "worker_pid": worker.pid, "pool_pid": pinned["pid"],
                    "episode_id": pinned["episode_id"], "step": pinned["step"]}
        time.sleep(0.02)
    raise AssertionError("no worker was seen mid-episode")


def test_a_fault_run_loses_and_duplicates_nothing(tmp_path):
    directory = tmp_path / "fault-farm"
    options = {"width": WIDTH, "height": HEIGHT, "step_latency": 0.02, "faults": FAULTS}
    specs = [EpisodeSpec(f"fault-{i:03d}", make_task("SettingsToggleWifi", i), ORACLE) for i in range(200)]
    start = time.monotonic()
    with LocalFarm(directory, sims=5, config=_config(directory), **options) as farm, \
            FarmClient(farm.config) as client:
        handles = [client.submit(spec) for spec in specs]
        killed = _kill_a_worker_mid_episode(farm, client)
        farm.add_worker("sim", "sim-5", **options)
        results = list(client.results(handles, timeout=150))
        finished = time.monotonic() - start
        live = {host for host, s in client.device_status().items() if host != killed["host"]}
        _wait_for(lambda: all(client.device_status()[h]["state"] == "ok" for h in live), 30,
                  "every live device is back in service")
        devices = client.device_status()
        store = TrajectoryStore(farm.config.store_url, create=False)
        stored = store.episode_ids()
        records = {episode_id: store.get(episode_id) for episode_id in stored}

    by_status = Counter(r.status for r in results)
    totals = {key: sum(d[key] for d in devices.values())
              for key in ("episodes", "retries", "recoveries", "restarts", "quarantines", "failures")}
    injected = {key: sum(d.get("injected", {}).get(key, 0) for d in devices.values()) for key in ("crashes", "hangs")}
    by_id = {r.episode_id: r for r in results}
    print(f"\nfault run: {len(specs)} episodes, {len(results)} results {dict(by_status)}, "
          f"{len(stored)} stored; injected {injected}; device counters {totals}; "
          f"result retries {sum(r.retries for r in results)}; killed worker {killed['host']} "
          f"(pid {killed['worker_pid']}, pool {killed['pool_pid']}) in {killed['episode_id']} at step "
          f"{killed['step']}, its result from {by_id[killed['episode_id']].worker} "
          f"(stored here: {by_id[killed['episode_id']].stored}); {finished:.1f} s to the last result")
    for host, d in devices.items():
        print(f"  {host:<14} {d['state']:<10} episodes {d['episodes']:>3} retries {d['retries']:>2} "
              f"recoveries {d['recoveries']:>2} restarts {d['restarts']:>2} quarantines {d['quarantines']:>2} "
              f"injected {d.get('injected')}")

    # Every episode exactly one result, none lost, none duplicated, none cancelled.
    assert len(results) == len(specs)
    assert Counter(r.episode_id for r in results) == Counter(s.episode_id for s in specs)
    assert set(by_status) <= {"success", "error"} and by_status["success"] >= 190, by_status
    assert all(r.message.startswith("device failed") for r in results if r.status == "error")
    # Exactly one record per episode that ran to an outcome, and it is the one the client was told about.
    assert len(stored) == len(set(stored)) and set(stored) == {r.episode_id for r in results if r.success}
    assert all(records[i].env_id == r.env_id and len(records[i]) == r.steps and records[i].outcome.success
               for i, r in by_id.items() if r.success)
    # The episode the killed worker was in was delivered again and finished elsewhere.
    assert by_id[killed["episode_id"]].worker != killed["host"]
    # Faults happened, devices were recovered, quarantined and came back, episodes were retried.
    assert injected["crashes"] > 0 and injected["hangs"] > 0, injected
    assert totals["recoveries"] > 0 and totals["restarts"] > 0 and totals["quarantines"] > 0, totals
    assert totals["retries"] > 0 and sum(r.retries for r in results) > 0
    assert all(devices[h]["state"] == "ok" for h in live)
    assert any(devices[h]["quarantines"] > 0 for h in live)
    # A quarantine per crash that outlasted its recovery at most: an episode offered to a quarantined
    # device before its consumer cancel took effect does not quarantine it again.
    assert all(d["quarantines"] <= d["injected"]["crashes"] for d in devices.values()), devices
    assert finished < 150
