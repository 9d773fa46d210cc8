"""The Celery app of the farm: Redis broker and result backend, JSON (or msgpack) only, one episode per
message, acknowledged late.

Why these settings:
- ``accept_content`` without pickle: a broker message must never be able to run code on a worker; a
  pickled message is refused (``ContentDisallowed``) before anything is deserialised.
- ``task_acks_late`` + ``task_reject_on_worker_lost`` + prefetch 1: an episode is acknowledged only when it
  has finished, so a worker that dies mid-episode leaves it unacknowledged and another worker runs it (the
  trajectory store makes the second run idempotent by ``episode_id``). Prefetch 1 keeps a busy worker from
  holding episodes that idle devices could run.
- The visibility timeout is longer than the hard time limit: an episode is never delivered again while
  its first run may still be going.
- Episodes are routed by device kind: queue ``<prefix>.<kind>``; a worker consumes its kind's queue and
  its own direct queue (``worker_direct``), which carries device recovery and session calls.
- No task events and no STARTED state by default: they cost every episode several Redis writes (events
  were a third of a worker main process's CPU in ``benchmarks/bench_farm.py``) and nothing here reads them.
  Flower switches the workers' events on while it runs (``enable_events``); which device runs which
  episode is in the device status the workers publish.

``celery -A guiagent.farm.app:app flower`` (or ``inspect``/``control``) works against a running farm,
with the addresses from ``GUIAGENT_*`` (see :class:`~guiagent.farm.config.FarmConfig.from_env`).
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from guiagent.farm.config import KINDS, FarmConfig

EPISODE_TASK = "guiagent.farm.episode"
RECOVER_TASK = "guiagent.farm.recover"
SESSION_TASK = "guiagent.farm.session"


def make_app(config: FarmConfig) -> Celery:
    """A Celery app for ``config`` (the client and every worker build theirs the same way)."""
    app = Celery("guiagent", broker=config.broker_url, backend=config.result_backend or config.broker_url)
    transport = {
        "visibility_timeout": config.visibility_timeout,
        "unacked_restore_interval": config.unacked_restore_interval,
        "unacked_restore_throttle": 1,  # scan on every interval, not every 10th
    }
    app.conf.update(
        task_serializer=config.serializer,
        result_serializer=config.serializer,
        accept_content=[config.serializer],
        result_accept_content=[config.serializer],
        event_serializer="json",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=config.soft_time_limit,
        task_time_limit=config.time_limit,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        result_expires=config.result_expires,
        result_extended=True,
        task_track_started=False,
        task_send_sent_event=False,
        worker_send_task_events=False,
        worker_direct=True,
        task_queues=[Queue(config.queue(kind)) for kind in KINDS],
        task_default_queue=config.queue("sim"),
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


def __getattr__(name: str) -> Celery:
    """``app``: the app for ``celery -A guiagent.farm.app:app ...`` (Flower, inspect), configured from the
    environment when it is first asked for, so that importing this module (the client, every worker) builds
    no app and reads no environment."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    app = globals()["app"] = make_app(FarmConfig.from_env())
    return app
