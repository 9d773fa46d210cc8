"""The device worker: one Celery worker owns one device and runs whole episodes beside it.

``python -m guiagent.farm.worker --kind sim --device-id sim-0`` starts a Celery worker (prefork pool of one
process, prefetch 1) consuming ``<prefix>.<kind>`` and its own direct queue. Its pool process opens the
device at start (and again whenever the pool process is replaced, e.g. after a hard time limit killed a
stuck episode) and dies with the worker. Addresses and limits come from ``GUIAGENT_*`` (see
:meth:`FarmConfig.from_env`). No torch is imported here: the policy lives in the policy server.

Per episode (:func:`run_farm_episode`): the stored result if the episode already ran (redelivery); else a
health check of the device — a sick device is recovered (snapshot reload, then restart) or quarantined: the
worker stops consuming episodes, hands the episode back, and retries recovery every ``recheck_interval``
through its direct queue, consuming again once the device is healthy. Then ``run_episode`` beside the device,
the trajectory to the store, metadata back. A device failure mid-episode runs the episode again (bounded by
``episode_retries``, then an ``error`` result). Device state and counters are published to Redis after every
change (``<prefix>:devices``; a running episode's step at most every ``PROGRESS_INTERVAL`` seconds), where
``guiagent farm status`` and dashboards read them.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

from celery import Celery
from celery.exceptions import Reject, SoftTimeLimitExceeded
from celery.signals import worker_process_init
from celery.utils.nodenames import worker_direct

from guiagent.agent import OracleAgent, PolicyAgent, RandomAgent, run_episode
from guiagent.data.store import TrajectoryStore
from guiagent.envs.base import Env
from guiagent.errors import ConfigError, DeviceError, GuiAgentError, PolicyError
from guiagent.farm.app import EPISODE_TASK, RECOVER_TASK, SESSION_TASK, make_app
from guiagent.farm.config import KINDS, FarmConfig
from guiagent.farm.device import Device
from guiagent.farm.specs import AgentSpec, EpisodeResult, EpisodeSpec
from guiagent.types import EpisodeStatus, Trajectory

log = logging.getLogger(__name__)
# Seconds between writes of an episode's step to Redis: enough for a dashboard, and 64 sims stepping every
# 200 ms would otherwise write hundreds of times a second (state changes are always written at once).
PROGRESS_INTERVAL = 1.0


# --- what a worker process holds -----------------------------------------------------------------------------


class WorkerState:
    """The device, the store and the status publisher of this worker's pool process."""

    def __init__(self, config: FarmConfig, hostname: str, kind: str, device: Device):
        import redis

        self.config, self.hostname, self.kind, self.device = config, hostname, kind, device
        self.store = TrajectoryStore(config.store_url, config.store_options)
        self.redis = redis.Redis.from_url(config.broker_url, socket_timeout=5)
        self.key = config.devices_key
        self.rechecks = 0
        self.session: dict[str, Any] | None = None  # the open step-level session, if any
        self.published = 0.0  # time.monotonic() of the last write
        self.publish()

    def publish(self, **fields: Any) -> None:
        """Write this device's status (and a heartbeat) to the broker's Redis; never fails an episode."""
        self.device.counters.update(fields)
        record = {**self.device.status(), "worker": self.hostname, "kind": self.kind, "pid": os.getpid(),
                  "heartbeat": time.time(), "torch_loaded": "torch" in sys.modules}
        try:
            self.redis.hset(self.key, self.hostname, json.dumps(record))
        except Exception:  # status is best effort: the broker being briefly away must not fail the episode
            log.warning("could not publish the status of %s", self.hostname, exc_info=True)
        self.published = time.monotonic()

    def progress(self, step: Any, episode_id: str) -> None:
        """Note the episode's step; write it, with the step's screen, when the last write is
        ``PROGRESS_INTERVAL`` seconds old (dashboards show the screen; the store names the image as the
        episode's own record will, so it is written once)."""
        self.device.counters["step"] = step.index + 1
        if time.monotonic() - self.published < PROGRESS_INTERVAL:
            return
        screen = step.observation.screenshot
        try:
            self.publish(screenshot=self.store.put_image(episode_id, step.index, screen) if screen else None)
        except (OSError, ValueError):  # the dashboard's screen is best effort, like the status itself
            log.warning("could not store the live screen of %s", self.hostname, exc_info=True)
            self.publish()


_spec: dict[str, Any] = {}  # set by main() in the worker's main process, read by its pool process
_state: WorkerState | None = None


# Device kind -> "module:function" that builds one device's env from the worker's options
# (``builder(device_id, options, restart) -> Env``). Each env package owns its builder, so a worker image
# imports only the env of the kind it runs.
ENV_BUILDERS: dict[str, str] = {
    "sim": "guiagent.envs.sim.env:build_farm_env",
    "android": "guiagent.envs.android.adb_env:build_farm_env",
    "web": "guiagent.envs.web:build_farm_env",
    "osworld": "guiagent.envs.osworld:build_farm_env",
}


def build_env(kind: str, device_id: str, options: dict[str, Any], restart: int = 0) -> Env:
    """The env of one device from the worker's command-line options (``restart`` counts rebuilds).

    Raises:
        ConfigError: an unknown kind, or a kind whose env is not in this worker image.
    """
    import importlib

    target = ENV_BUILDERS.get(kind)
    if target is None:
        raise ConfigError(f"unknown device kind {kind!r} (known: {', '.join(sorted(ENV_BUILDERS))})")
    module, _, name = target.partition(":")
    try:
        builder = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise ConfigError(f"device kind {kind!r} has no env in this worker image ({exc})") from None
    return builder(device_id, options, restart)


@worker_process_init.connect
def _open_device(**_: Any) -> None:
    """In the pool process: die with the worker, open the device, publish its state."""
    global _state
    if not _spec:
        return  # a worker of another app in this interpreter (tests)
    _die_with_parent()
    restarts = {"n": 0}

    def factory() -> Env:
        env = build_env(_spec["kind"], _spec["device_id"], _spec["options"], restarts["n"])
        restarts["n"] += 1
        return env

    config = FarmConfig.model_validate_json(_spec["config"])
    device = Device(_spec["device_id"], factory, recovery_attempts=config.recovery_attempts)
    _state = WorkerState(config, _spec["hostname"], _spec["kind"], device)


def _die_with_parent() -> None:
    """Ask Linux to kill this pool process when the worker dies (a SIGKILLed worker leaves no orphan that
    would go on driving the device)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        log.debug("prctl(PR_SET_PDEATHSIG) is not available here")


# --- the tasks -----------------------------------------------------------------------------------------------


def build_agent(spec: AgentSpec):
    """The agent an :class:`AgentSpec` names (a policy agent talks to the policy server over HTTP). The oracle
    is the kind's expert: MobileSim's planner on ``sim`` devices, the DOM-reading MiniWoB++ expert on ``web``."""
    if spec.kind == "oracle":
        if _state is not None and _state.kind == "web":
            from guiagent.agent.web import MiniWoBDomAgent

            return MiniWoBDomAgent()
        return OracleAgent()
    if spec.kind == "random":
        return RandomAgent(seed=spec.seed)
    from guiagent.actions.coords import ModelGeometry
    from guiagent.policy.base import SamplingParams
    from guiagent.policy.client import VLLMClient
    from guiagent.policy.prompts import PromptConfig

    width, height = _state.device.env.screen_size
    resized = spec.geometries.get(f"{width}x{height}")
    if resized is None:
        raise ConfigError(f"the agent spec has no model geometry for this device's {width}x{height} screen "
                          f"(it has {sorted(spec.geometries)}); the driver computes it with qwen-vl-utils")
    geometry = ModelGeometry(width, height, int(resized[0]), int(resized[1]))
    client = VLLMClient(spec.url, spec.model, timeout=spec.timeout, max_retries=1)
    return PolicyAgent(client, PromptConfig.model_validate(dict(spec.prompt)),
                       SamplingParams(**dict(spec.sampling)), model=spec.model, geometry=geometry)


def _result(trajectory: Trajectory, state: WorkerState, stored: bool, retries: int, group: str | None) -> dict:
    outcome = trajectory.outcome
    return EpisodeResult(
        episode_id=trajectory.episode_id, status=outcome.status.value, reward=outcome.reward, steps=len(trajectory),
        env_id=trajectory.env_id, worker=state.hostname, stored=stored,
        seconds=round(trajectory.timings.get("total", 0.0), 4), retries=retries, message=outcome.message,
        group=group).to_json()


def _error(spec: EpisodeSpec, state: WorkerState, retries: int, message: str) -> dict:
    return EpisodeResult(episode_id=spec.episode_id, status=EpisodeStatus.ERROR.value, reward=0.0, steps=0,
                         env_id=state.device.env.env_id, worker=state.hostname, stored=False, seconds=0.0,
                         retries=retries, message=message, group=spec.group).to_json()


def quarantine(app: Celery, state: WorkerState) -> None:
    """Stop consuming episodes and retry recovery through the worker's direct queue."""
    state.device.counters["quarantines"] += 1
    state.rechecks = 0
    state.publish(state="quarantined")
    app.control.cancel_consumer(state.config.queue(state.kind), destination=[state.hostname])
    app.send_task(RECOVER_TASK, queue=worker_direct(state.hostname), countdown=state.config.recheck_interval)


def run_farm_episode(task: Any, payload: dict) -> dict:
    """The body of the episode task (``task`` is the bound Celery task)."""
    state = _state
    if state is None:
        raise ConfigError("this process owns no device (the worker was not started by guiagent.farm.worker)")
    spec = EpisodeSpec.from_json(payload)
    retries = task.request.retries
    if spec.episode_id in state.store:  # delivered again after it ran: the stored run is the result
        return _result(state.store.get(spec.episode_id), state, stored=False, retries=retries, group=spec.group)
    if state.session is not None:  # delivered before the session's consumer cancel took effect
        raise Reject(f"{state.hostname}: device held by a session, episode handed back", requeue=True)
    # Likewise before a quarantine's consumer cancel took effect: quarantining it again would count the
    # quarantine twice and start a second chain of recovery checks.
    if state.device.counters["state"] in ("quarantined", "out_of_service"):
        raise Reject(f"{state.hostname}: device quarantined, episode handed back", requeue=True)
    if not state.device.ensure_healthy():
        quarantine(task.app, state)
        raise Reject(f"{state.hostname}: device sick, episode handed back", requeue=True)
    state.publish(task=spec.task.task_id, step=0, episode_id=spec.episode_id)
    try:
        agent = build_agent(spec.agent)
        trajectory = run_episode(
            state.device.env, spec.task, agent, max_steps=spec.max_steps, episode_id=spec.episode_id,
            policy_version=spec.policy_version, require_done=spec.require_done,
            on_step=lambda step: state.progress(step, spec.episode_id))
    except DeviceError as exc:
        state.device.failed(exc)
        if not state.device.recover():
            quarantine(task.app, state)
        if retries >= state.config.episode_retries:
            state.publish(task=None, step=None)
            return _error(spec, state, retries, f"device failed {retries + 1} times: {exc}")
        state.device.counters["retries"] += 1
        state.publish(task=None, step=None)
        raise task.retry(exc=exc, countdown=0.1, max_retries=state.config.episode_retries) from None
    except (PolicyError, ConfigError) as exc:
        state.publish(task=None, step=None, last_error=str(exc))
        return _error(spec, state, retries, f"{type(exc).__name__}: {exc}")
    except SoftTimeLimitExceeded:
        state.publish(task=None, step=None, last_error="soft time limit")
        return _error(spec, state, retries, f"stopped at the soft time limit ({state.config.soft_time_limit}s)")
    if spec.group is not None:
        trajectory = _with_group(trajectory, spec.group)
    stored = state.store.put(trajectory)
    if not stored:  # a concurrent run of the same episode stored first: that one is the result
        trajectory = state.store.get(spec.episode_id)
    state.device.counters["episodes"] += 1
    state.device.counters["steps"] += len(trajectory)
    state.publish(task=None, step=None)
    return _result(trajectory, state, stored=stored, retries=retries, group=spec.group)


def _with_group(trajectory: Trajectory, group: str) -> Trajectory:
    import dataclasses

    return dataclasses.replace(trajectory, info={**trajectory.info, "group": group})


def recover_device(task: Any) -> str:
    """Body of the recovery task a quarantined worker sends itself."""
    state = _state
    if state is None or state.device.counters["state"] != "quarantined":
        return "not quarantined"
    if state.device.recover():
        state.publish(state="ok")
        task.app.control.add_consumer(state.config.queue(state.kind), destination=[state.hostname])
        return "recovered"
    state.rechecks += 1
    if state.rechecks >= state.config.recheck_attempts:
        state.publish(state="out_of_service")
        return "out of service"
    state.publish()
    task.app.send_task(RECOVER_TASK, queue=worker_direct(state.hostname),
                       countdown=state.config.recheck_interval)
    return "still sick"


def _observation(state: WorkerState, session: str, observation: Any) -> dict:
    """An observation as a session reply: the screenshot goes to the store, its path through the broker."""
    import dataclasses

    state.session["observations"] += 1
    path = state.store.put_image(f"session-{session}", state.session["observations"], observation.screenshot)
    return dataclasses.replace(observation, screenshot=None, screenshot_path=path).to_json()


def session_call(task: Any, session: str, op: str, payload: dict | None = None) -> dict:
    """Body of the step-level session task: ``open`` (any worker of the kind takes it and stops consuming
    episodes while the session lasts), then ``reset``/``observe``/``execute``/``evaluate``/``close`` through
    the owning worker's direct queue. An idle session is closed after ``idle_timeout`` seconds."""
    from guiagent.errors import ActionError
    from guiagent.types import Action, Task

    state = _state
    if state is None:
        raise ConfigError("this process owns no device")
    payload = payload or {}
    if op == "open":
        if state.session is not None or not state.device.ensure_healthy():
            raise Reject("device busy with a session or sick", requeue=True)
        task.app.control.cancel_consumer(state.config.queue(state.kind), destination=[state.hostname])
        state.session = {"id": session, "observations": 0, "used": time.monotonic(),
                         "idle_timeout": float(payload.get("idle_timeout", 300.0))}
        state.publish(state="session", task=f"session {session}")
        _expire_later(task, state)
        width, height = state.device.env.screen_size
        return {"worker": state.hostname, "env_id": state.device.env.env_id, "width": width, "height": height}
    if state.session is None or state.session["id"] != session:
        if op in ("close", "expire"):  # closed already (idle, or by its client): closing again is fine
            return {"closed": False}
        raise ConfigError(f"session {session} is not open on {state.hostname}")
    if op != "expire":  # the worker's own idle check is not a use of the session
        state.session["used"] = time.monotonic()
    env = state.device.env
    if op == "reset":
        task_spec = payload.get("task")
        return _observation(state, session, env.reset(Task.from_json(task_spec) if task_spec else None))
    if op == "observe":
        return _observation(state, session, env.observe())
    if op == "execute":
        try:
            env.execute(Action.from_json(payload["action"]))
        except ActionError as exc:
            return {"refused": str(exc)}
        return {"refused": None}
    if op == "evaluate":
        from guiagent.types import to_json

        outcome = env.evaluate(Task.from_json(payload["task"]))
        return {"outcome": to_json(outcome), "answer": env.answer}
    if op in ("close", "expire"):
        if op == "expire" and time.monotonic() - state.session["used"] < state.session["idle_timeout"]:
            _expire_later(task, state)
            return {"closed": False}
        state.session = None
        state.publish(state="ok", task=None)
        task.app.control.add_consumer(state.config.queue(state.kind), destination=[state.hostname])
        return {"closed": True}
    raise ConfigError(f"unknown session operation {op!r}")


def _expire_later(task: Any, state: WorkerState) -> None:
    task.app.send_task(SESSION_TASK, args=[state.session["id"], "expire"], queue=worker_direct(state.hostname),
                       countdown=state.session["idle_timeout"])


def register_tasks(app: Celery) -> None:
    """Register the worker's tasks on ``app``."""
    app.task(bind=True, name=EPISODE_TASK)(run_farm_episode)
    app.task(bind=True, name=RECOVER_TASK)(recover_device)
    app.task(bind=True, name=SESSION_TASK)(session_call)


# --- entry point ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m guiagent.farm.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=KINDS, required=True, help="device kind (the queue it consumes)")
    parser.add_argument("--device-id", required=True, help="stable id of the device, e.g. sim-3")
    parser.add_argument("--width", type=int, default=1080, help="sim: screen width")
    parser.add_argument("--height", type=int, default=2400, help="sim: screen height")
    parser.add_argument("--step-latency", type=float, default=0.0, help="sim: seconds each input takes")
    parser.add_argument("--faults", default=None,
                        help='sim: injected faults as JSON, e.g. {"crash_rate": 0.01, "hang_rate": 0.01}')
    parser.add_argument("--device-config", default=None, help="android: AndroidEnvConfig YAML file")
    parser.add_argument("--env-options", default=None,
                        help="more options of the kind's env builder as a JSON object (see ENV_BUILDERS)")
    parser.add_argument("--loglevel", default="WARNING", help="Celery log level")
    args = parser.parse_args(argv)
    if args.width <= 0 or args.height <= 0:
        parser.error("--width and --height must be positive")
    for name in ("faults", "env_options"):
        value = getattr(args, name)
        if value is None:
            continue
        try:
            setattr(args, name, json.loads(value))
        except ValueError as exc:
            parser.error(f"--{name.replace('_', '-')} is not JSON: {exc}")
        if not isinstance(getattr(args, name), dict):
            parser.error(f"--{name.replace('_', '-')} must be a JSON object")
    return args


def main(argv: list[str] | None = None) -> None:
    """Start one device worker (blocks until it is stopped with SIGTERM/SIGINT)."""
    args = parse_args(argv)
    config = FarmConfig.from_env()
    hostname = f"{args.device_id}@{socket.gethostname()}"
    options = {**(args.env_options or {}), "width": args.width, "height": args.height,
               "step_latency": args.step_latency, "faults": args.faults, "device_config": args.device_config}
    # Fail here, in the foreground, on a device that cannot even be built (the pool process builds its own).
    try:
        build_env(args.kind, args.device_id, options).close()
    except GuiAgentError as exc:
        sys.exit(f"error: {args.device_id}: {exc}")
    _spec.update(kind=args.kind, device_id=args.device_id, options=options, hostname=hostname,
                 config=config.model_dump_json())
    app = make_app(config)
    register_tasks(app)
    app.worker_main(["worker", "--pool=prefork", "--concurrency=1", "-Q", config.queue(args.kind), "-n", hostname,
                     "--without-mingle", "--without-gossip", f"--loglevel={args.loglevel}"])


if __name__ == "__main__":
    main()
