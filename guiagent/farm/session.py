"""Step-level sessions on a farm device: :class:`RemoteEnv` is an :class:`~guiagent.envs.base.Env` whose
device sits on a farm worker, for interactive use and for agents that must stay in the trainer's process::

    with RemoteEnv(FarmConfig.from_env(), kind="sim") as env:
        trajectory = run_episode(env, task, agent)          # the one agent loop, the device remote

Opening a session claims one idle worker of the kind (it stops taking episodes until the session closes or
stays idle for ``idle_timeout`` seconds); every call then goes to that worker's direct queue. Screenshots
travel through the trajectory store, never the broker.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from celery.exceptions import TimeoutError as ResultTimeout
from celery.utils.nodenames import worker_direct

from guiagent.data.store import TrajectoryStore
from guiagent.envs.base import Env
from guiagent.errors import ActionError, DeviceTimeout, FarmError
from guiagent.farm.app import SESSION_TASK, make_app
from guiagent.farm.config import FarmConfig
from guiagent.types import Action, Observation, Outcome, Task, from_json


class RemoteEnv(Env):
    """A farm device as an env.

    Args:
        config: The farm's broker, store and queue names.
        kind: Device kind to claim.
        timeout: Seconds each call may take (the claim included).
        idle_timeout: Seconds of silence after which the worker closes the session on its own.

    Raises:
        DeviceTimeout: no worker of the kind took the session, or a call got no answer, in ``timeout``.
    """

    def __init__(self, config: FarmConfig, kind: str = "sim", timeout: float = 60.0, idle_timeout: float = 300.0):
        self.app = make_app(config)
        self.store = TrajectoryStore(config.store_url, config.store_options)
        self.timeout = timeout
        self.session = uuid.uuid4().hex
        opened = self._call("open", {"idle_timeout": idle_timeout}, queue=config.queue(kind))
        self.worker = opened["worker"]
        self.env_id = opened["env_id"]
        self._size = (opened["width"], opened["height"])
        self._closed = False

    def _call(self, op: str, payload: dict[str, Any] | None = None, queue: Any = None) -> dict[str, Any]:
        result = self.app.send_task(SESSION_TASK, args=[self.session, op, payload or {}],
                                    queue=queue if queue is not None else worker_direct(self.worker))
        try:
            return result.get(timeout=self.timeout)
        except ResultTimeout:
            result.revoke()
            raise DeviceTimeout(f"session {self.session}: no answer to {op} within {self.timeout}s") from None
        except Exception as exc:  # the worker raised: a typed error with its message
            raise FarmError(f"session {self.session}: {op} failed on the worker: {exc}") from None

    def _observation(self, reply: dict[str, Any]) -> Observation:
        observation = Observation.from_json(reply)
        return dataclasses.replace(observation, screenshot=self.store.read_image(observation.screenshot_path))

    @property
    def screen_size(self) -> tuple[int, int]:
        return self._size

    def reset(self, task: Task | None = None) -> Observation:
        self.answer = None
        return self._observation(self._call("reset", {"task": task.to_json() if task else None}))

    def observe(self) -> Observation:
        return self._observation(self._call("observe"))

    def execute(self, action: Action) -> None:
        if action.type.value == "answer":
            self.answer = action.text
        refused = self._call("execute", {"action": action.to_json()})["refused"]
        if refused is not None:
            raise ActionError(refused)

    def evaluate(self, task: Task) -> Outcome:
        return from_json(Outcome, self._call("evaluate", {"task": task.to_json()})["outcome"])

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._call("close")
            finally:
                self.app.close()
