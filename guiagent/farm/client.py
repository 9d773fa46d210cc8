"""Submitting episodes to the farm and collecting their results as they finish.

    client = FarmClient(FarmConfig.from_env())
    handles = client.submit_group(task, AgentSpec("oracle"), size=4, group="g-7")   # G devices, one seed
    for result in client.results(handles, timeout=120):                         # in finishing order
        print(result.episode_id, result.status, result.env_id)

Episode ids are Celery task ids, so the result backend holds at most one result per episode however
often the episode was delivered, and the trajectory store holds at most one trajectory.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult, ResultSet

from guiagent.errors import FarmError
from guiagent.farm.app import EPISODE_TASK, make_app
from guiagent.farm.config import KINDS, FarmConfig
from guiagent.farm.specs import AgentSpec, EpisodeResult, EpisodeSpec
from guiagent.types import Task


@dataclass(frozen=True)
class Handle:
    """A submitted episode: its spec and the Celery result it will arrive in."""

    spec: EpisodeSpec
    result: AsyncResult

    @property
    def episode_id(self) -> str:
        return self.spec.episode_id


class FarmClient:
    """Submit episodes, GRPO groups and batches of groups; stream their results.

    Args:
        config: Broker, result backend and queue names (the workers' own config).
        check_workers: Before submitting, make sure a worker consumes the needed queue (one control
            round trip; a clear error instead of episodes waiting forever).
    """

    def __init__(self, config: FarmConfig, check_workers: bool = True):
        self.config = config
        self.app = make_app(config)
        self.check_workers = check_workers
        self._checked: set[str] = set()

    def close(self) -> None:
        self.app.close()

    def __enter__(self) -> FarmClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def workers(self, timeout: float = 2.0) -> dict[str, list[str]]:
        """Hostname → the queues it consumes, of every worker that answers within ``timeout``."""
        replies = self.app.control.inspect(timeout=timeout).active_queues() or {}
        return {host: sorted(q["name"] for q in queues) for host, queues in replies.items()}

    def _require_worker(self, kind: str) -> None:
        queue = self.config.queue(kind)
        if not self.check_workers or queue in self._checked:
            return
        consumers = [host for host, queues in self.workers().items() if queue in queues]
        if not consumers:
            raise FarmError(f"no worker consumes {queue!r}: start '{kind}' device workers (guiagent farm up) "
                            f"or check the broker at {self.config.broker_url.split('@')[-1]}")
        self._checked.add(queue)

    def submit(self, spec: EpisodeSpec) -> Handle:
        """Send one episode to its device kind's queue."""
        self._require_worker(spec.kind)
        result = self.app.send_task(EPISODE_TASK, args=[spec.to_json()], task_id=spec.episode_id,
                                    queue=self.config.queue(spec.kind))
        return Handle(spec, result)

    def submit_group(self, task: Task, agent: AgentSpec, size: int, *, group: str | None = None,
                     kind: str = "sim", **options: Any) -> list[Handle]:
        """A GRPO group: ``size`` episodes of one task with one seed, each on its own device (the queue hands
        one episode to each idle worker; prefetch 1 keeps one worker from taking two), all reset to the
        task's initial state. ``options`` go to every :class:`EpisodeSpec`."""
        group = group or uuid.uuid4().hex[:12]
        return [self.submit(EpisodeSpec(f"{group}-{member}", task, agent, kind=kind, group=group, **options))
                for member in range(size)]

    def submit_groups(self, tasks: Sequence[Task], agent: AgentSpec, size: int, **options: Any) -> list[list[Handle]]:
        """One group per task; see :meth:`submit_group`."""
        return [self.submit_group(task, agent, size, **options) for task in tasks]

    def results(self, handles: Iterable[Handle], timeout: float | None = None,
                poll: float = 0.05) -> Iterator[EpisodeResult]:
        """Results in the order the episodes finish.

        Args:
            handles: Submitted episodes.
            timeout: Seconds to wait for each episode, counted from this call (to within a second); episodes
                still running then are cancelled and reported as ``error`` results naming the timeout.
            poll: Seconds between result-backend polls, for a backend that cannot push results (Redis
                pushes each one as it is stored, and no poll waits).

        Raises:
            FarmError: an episode failed on the worker with an exception (not an episode outcome).
        """
        pending = {h.episode_id: h for h in handles}
        if not pending:
            return
        # Wait on the backend's pub/sub for all of them at once: polling added up to ``poll`` of latency to
        # every episode and one GET per pending episode per poll. Celery's first readiness check (one MGET)
        # sleeps one interval when some are pending; with pushed results there is nothing to sleep for.
        finished = ResultSet([h.result for h in pending.values()])
        interval = 0.0 if self.app.backend.is_async else poll
        try:
            for episode_id, _ in finished.iter_native(timeout=timeout, interval=interval):
                handle = pending.pop(episode_id, None)
                if handle is not None:
                    yield self._decode(handle)
        except CeleryTimeoutError:
            self.cancel(pending.values())
            for handle in pending.values():
                yield EpisodeResult(handle.episode_id, "error", 0.0, 0, "", "", False, 0.0,
                                    message=f"no result within {timeout}s: cancelled", group=handle.spec.group)

    def _decode(self, handle: Handle) -> EpisodeResult:
        result = handle.result
        if result.failed():
            raise FarmError(f"episode {handle.episode_id} failed on the worker: {result.result!r}")
        try:
            return EpisodeResult.from_json(result.get(timeout=1))
        except (ValueError, TypeError) as exc:
            raise FarmError(f"episode {handle.episode_id}: malformed result {result.result!r}: {exc}") from None

    def cancel(self, handles: Iterable[Handle]) -> None:
        """Revoke episodes: queued ones are never run; one already running finishes (its device is not
        interrupted mid-action) and its result is dropped by :meth:`results`."""
        handles = list(handles)
        if handles:
            self.app.control.revoke([h.episode_id for h in handles])
        for handle in handles:  # unsubscribe now: at garbage collection the broker may be gone (a long stall)
            self.app.backend.remove_pending_result(handle.result)

    def run(self, specs: Sequence[EpisodeSpec], timeout: float | None = None) -> list[EpisodeResult]:
        """Submit ``specs`` and wait for all of them; results in spec order."""
        handles = [self.submit(spec) for spec in specs]
        by_id = {r.episode_id: r for r in self.results(handles, timeout=timeout)}
        return [by_id[spec.episode_id] for spec in specs]

    def _broker(self):
        """A Redis connection to the broker (closed by ``with``), for what Celery does not expose."""
        import contextlib

        import redis

        return contextlib.closing(redis.Redis.from_url(self.config.broker_url, socket_timeout=5))

    def device_status(self) -> dict[str, dict[str, Any]]:
        """Worker hostname → the status its device last published (state, counters, current task and step,
        heartbeat)."""
        with self._broker() as broker:
            raw = broker.hgetall(self.config.devices_key)
        return {k.decode(): json.loads(v) for k, v in sorted(raw.items())}

    def queue_depths(self) -> dict[str, int]:
        """Messages waiting in each device kind's queue."""
        with self._broker() as broker:
            return {kind: int(broker.llen(self.config.queue(kind))) for kind in KINDS}
