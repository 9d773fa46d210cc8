"""The local farm: ``guiagent farm up --local --sim N --web M`` on one machine, no Docker.

It starts Debian's ``redis-server`` (loopback only, a random password, no persistence), N device workers
with MobileSim devices and M with MiniWoB++ browsers (headless Debian Chromium), and writes what it started
(PIDs, the broker URL with its password) to
``DIR/farm.json`` (mode 600). ``guiagent farm status`` reads that file; ``guiagent farm down`` stops exactly
the processes it lists. Tests use :class:`LocalFarm` as a context manager, which stops everything on exit,
also when the body fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guiagent.errors import ConfigError, FarmError
from guiagent.farm.config import FarmConfig
from guiagent.net import free_port

STATE_FILE = "farm.json"


def start_redis(directory: Path, host: str = "127.0.0.1", port: int | None = None,
                timeout: float = 20.0) -> tuple[subprocess.Popen, str]:
    """Start ``redis-server`` bound to ``host`` with a random password; wait until it answers.

    Returns:
        ``(process, url)`` with the password in the URL (``redis://:PASSWORD@host:port/0``).

    Raises:
        ConfigError: ``redis-server`` is not installed (``scripts/run.sh`` installs it).
        FarmError: it did not answer within ``timeout``.
    """
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise ConfigError("the local farm needs Debian's redis-server (scripts/run.sh installs it)")
    port = port or free_port()
    password = secrets.token_hex(16)
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [binary, "--bind", host, "--port", str(port), "--requirepass", password, "--save", "", "--appendonly", "no",
         "--dir", str(directory), "--protected-mode", "yes", "--maxclients", "2000", "--timeout", "0"],
        stdout=open(directory / "redis.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"redis://:{password}@{host}:{port}/0"
    deadline = time.monotonic() + timeout
    while True:
        try:
            redis.Redis.from_url(url, socket_timeout=1).ping()
            return process, url
        except redis.RedisError as exc:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_pid(process.pid)
                raise FarmError(f"redis-server on {host}:{port} did not start: {exc} (see {directory / 'redis.log'})")
            time.sleep(0.05)


def stop_pid(pid: int, grace: float = 10.0) -> None:
    """SIGTERM ``pid``, SIGKILL after ``grace`` seconds; a process already gone is fine."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child (started by an earlier `farm up`): watch it instead
            finished = not _alive(pid)
        if finished:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def worker_command(kind: str, device_id: str, **options: Any) -> list[str]:
    """The command line of one device worker (``options``: ``--width``, ``--step-latency``, ``--faults``...)."""
    argv = [sys.executable, "-m", "guiagent.farm.worker", "--kind", kind, "--device-id", device_id]
    for name, value in options.items():
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", json.dumps(value) if isinstance(value, dict) else str(value)]
    return argv


class LocalFarm:
    """Redis, N MobileSim and M MiniWoB++ (``web``) device workers on this machine.

    Args:
        directory: Where the state file, logs and (by default) the trajectory store go.
        sims: Number of MobileSim device workers.
        webs: Number of MiniWoB++ device workers, one headless Chromium each (about two per two cores).
        web_options: The web workers' env options (``--env-options``: ``reward``, ``episode_seconds``, ...;
            see :func:`guiagent.envs.web.build_farm_env`).
        config: Farm settings; its broker URL is replaced by the local Redis's. Its ``store_url`` defaults
            to ``DIR/trajectories``.
        bind: The address Redis listens on (another host's workers reach the broker there).
        worker_options: Extra worker options (``step_latency``, ``faults``, ``width``, ``height``).
    """

    def __init__(self, directory: str | os.PathLike, sims: int = 2, config: FarmConfig | None = None,
                 bind: str = "127.0.0.1", webs: int = 0, web_options: dict[str, Any] | None = None,
                 **worker_options: Any):
        self.directory = Path(directory)
        self.bind = bind
        self.sims = sims
        self.webs = webs
        self.web_options = web_options or {}
        self.base = config or FarmConfig(store_url=str(self.directory / "trajectories"))
        self.worker_options = worker_options
        self.redis: subprocess.Popen | None = None
        self.workers: dict[str, subprocess.Popen] = {}
        self.config: FarmConfig | None = None

    def start(self, ready_timeout: float = 60.0) -> FarmConfig:
        """Start Redis and the workers; return the config clients use. Waits until every worker answers."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.redis, url = start_redis(self.directory, host=self.bind)
        self.config = self.base.model_copy(update={"broker_url": url, "result_backend": url.rsplit("/", 1)[0] + "/1"})
        for i in range(self.sims):
            self.add_worker("sim", f"sim-{i}", **self.worker_options)
        for i in range(self.webs):
            self.add_worker("web", f"web-{i}", env_options=self.web_options or None)
        self.write_state()
        self.wait_ready(self.sims + self.webs, ready_timeout)
        return self.config

    def add_worker(self, kind: str, device_id: str, env: dict[str, str] | None = None,
                   launcher: Sequence[str] = (), **options: Any) -> int:
        """Start one more device worker; returns its PID.

        Args:
            kind: Device kind.
            device_id: Its id (unique in the farm).
            env: Extra environment variables.
            launcher: A command the worker runs under, e.g. ``("ip", "netns", "exec", "host-b")`` for a worker
                on a second (namespaced) host; it must exec the worker so that the PID is the worker's.
            options: Worker options (see :func:`worker_command`).
        """
        log = open(self.directory / f"worker-{device_id}.log", "ab")
        process = subprocess.Popen([*launcher, *worker_command(kind, device_id, **options)], stdout=log,
                                   stderr=subprocess.STDOUT,
                                   env={**os.environ, **self.config.environment(), **(env or {})},
                                   start_new_session=True)
        self.workers[device_id] = process
        self.write_state()
        return process.pid

    def wait_ready(self, count: int, timeout: float) -> None:
        """Wait until ``count`` workers answer a ping and published a healthy device."""
        from guiagent.farm.client import FarmClient

        deadline = time.monotonic() + timeout
        with FarmClient(self.config, check_workers=False) as client:
            while True:
                dead = [d for d, p in self.workers.items() if p.poll() is not None]
                if dead:
                    raise FarmError(f"worker(s) {dead} exited at start-up; see {self.directory}/worker-*.log")
                answering = client.workers(timeout=1.0)
                healthy = [s for s in client.device_status().values() if s.get("state") == "ok"]
                if len(answering) >= count and len(healthy) >= count:
                    return
                if time.monotonic() > deadline:
                    raise FarmError(f"{len(answering)}/{count} workers answered within {timeout}s; "
                                    f"see {self.directory}/worker-*.log")
                time.sleep(0.2)

    def write_state(self) -> None:
        path = self.directory / STATE_FILE
        state = {"config": json.loads(self.config.model_dump_json()) if self.config else None,
                 "redis_pid": self.redis.pid if self.redis else None,
                 "workers": {d: p.pid for d, p in self.workers.items()}}
        path.write_text(json.dumps(state, indent=2), encoding="utf-8")
        path.chmod(0o600)  # it holds the broker's password

    def stop(self) -> None:
        """Stop every worker this farm started, then Redis; remove the state file."""
        for process in self.workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            try:
                self.redis.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.redis.kill()
                self.redis.wait()
        (self.directory / STATE_FILE).unlink(missing_ok=True)

    def __enter__(self) -> LocalFarm:
        try:
            self.start()
        except BaseException:  # __exit__ does not run when __enter__ fails: stop what did start
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_state(directory: str | os.PathLike) -> dict[str, Any]:
    """The state file of a local farm started with ``guiagent farm up --local``.

    Raises:
        FarmError: no farm was started in ``directory`` (or its state file is unreadable).
    """
    path = Path(directory) / STATE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FarmError(f"no local farm runs from {directory} ({path} is missing): start one with "
                        "'guiagent farm up --local'") from None
    except (OSError, ValueError) as exc:
        raise FarmError(f"{path}: unreadable farm state: {exc}") from None


def stop_recorded(directory: str | os.PathLike) -> list[int]:
    """Stop the processes a ``guiagent farm up --local`` recorded in ``directory``; returns their PIDs."""
    state = read_state(directory)
    pids = list(state["workers"].values())
    for pid in pids:
        stop_pid(pid, grace=15)
    if state.get("redis_pid"):
        stop_pid(state["redis_pid"])
        pids.append(state["redis_pid"])
    (Path(directory) / STATE_FILE).unlink(missing_ok=True)
    return pids
