"""The live farm dashboard: ``guiagent farm dashboard``.

One page shows every device of a farm — its latest screenshot, health state, current task and step,
episodes and steps per minute, recoveries and quarantines, its last error — the queue depths and the recent
errors, and keeps them current without reloading: the server polls the broker (the device records the
workers publish, :meth:`guiagent.farm.client.FarmClient.device_status`) and pushes each change to the page as
a server-sent event (Starlette ``StreamingResponse``, the browser's ``EventSource``).

A device's screenshot is, in order of preference: the store-relative path its worker publishes as
``screenshot`` (a worker that publishes one shows the live screen), else the last screen of the episode it
runs or last ran (``episode_id``) once that episode is in the store, else the last one shown for it.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from guiagent.data.store import TrajectoryStore
from guiagent.errors import DataError
from guiagent.farm.client import FarmClient
from guiagent.farm.config import FarmConfig
from guiagent.ui.viewer import CSP, STATIC, environment, screenshot_response, serve

RATE_WINDOW = 60.0  # seconds of counter history behind "per minute"
PING_INTERVAL = 10.0  # seconds between the control pings that tell which workers still answer


class FarmMonitor:
    """What the dashboard shows, read from a farm's broker and store.

    Shared by every open page: a snapshot younger than half the poll interval is served again, so more pages
    do not mean more broker reads.

    Args:
        config: The farm's config (broker, store).
        interval: Seconds between polls of the broker.
    """

    def __init__(self, config: FarmConfig, interval: float = 1.0):
        self.config = config
        self.interval = interval
        self.client = FarmClient(config, check_workers=False)
        self._store: TrajectoryStore | None = None
        self._lock = threading.Lock()
        self._history: dict[str, collections.deque] = {}
        self._screens: dict[str, str] = {}  # device -> store-relative path of the screenshot shown last
        self._looked_up: dict[str, tuple] = {}  # device -> (episode id, episode count) last looked up in the store
        self._errors: collections.deque = collections.deque(maxlen=30)
        self._last_error: dict[str, str | None] = {}
        self._answering: set[str] | None = None
        self._pinged = 0.0
        self._snapshot: dict[str, Any] | None = None
        self._taken = 0.0

    @property
    def store(self) -> TrajectoryStore | None:
        """The farm's store; None until a worker created it."""
        if self._store is None:
            try:
                self._store = TrajectoryStore(self.config.store_url, self.config.store_options, create=False)
            except DataError:
                return None
        return self._store

    def snapshot(self) -> dict[str, Any]:
        """The page's data: ``time``, ``devices`` (one dict per device), ``queues``, ``errors`` (newest first),
        and ``problem`` (why the broker could not be read, else None)."""
        with self._lock:
            now = time.time()
            if self._snapshot is None or now - self._taken >= self.interval / 2:
                self._snapshot, self._taken = self._read(now), now
            return self._snapshot

    def _read(self, now: float) -> dict[str, Any]:
        try:
            records, queues = self.client.device_status(), self.client.queue_depths()
            if now - self._pinged >= PING_INTERVAL:
                self._answering, self._pinged = set(self.client.workers(timeout=1.0)), now
        except Exception as exc:  # the broker is away: say so on the page and keep polling
            return {"time": now, "devices": [], "queues": {}, "errors": list(self._errors)[::-1],
                    "problem": f"cannot read the farm's broker: {type(exc).__name__}: {exc}"}
        devices = [self._device(host, record, now) for host, record in records.items()]
        return {"time": now, "devices": devices, "queues": queues, "errors": list(self._errors)[::-1],
                "problem": None}

    def _device(self, host: str, record: dict[str, Any], now: float) -> dict[str, Any]:
        episodes, steps = int(record.get("episodes", 0)), int(record.get("steps", 0))
        history = self._history.setdefault(host, collections.deque())
        history.append((now, episodes, steps))
        while len(history) > 2 and now - history[0][0] > RATE_WINDOW:
            history.popleft()
        span = now - history[0][0]
        if span >= 5.0:
            per_minute = (60 * (episodes - history[0][1]) / span, 60 * (steps - history[0][2]) / span)
        else:  # just opened: the average since the worker started
            minutes = max((now - float(record.get("started", now))) / 60, 1e-9)
            per_minute = (episodes / minutes, steps / minutes)
        error = record.get("last_error")
        if error and error != self._last_error.get(host):
            self._errors.append({"time": now, "device": host, "error": str(error)})
        self._last_error[host] = error
        state = str(record.get("state", "unknown"))
        answering = self._answering is None or host in self._answering
        screen = self._screen(host, record)
        return {
            "id": host, "device_id": record.get("device_id"), "env_id": record.get("env_id"),
            "kind": record.get("kind"), "state": state if answering else "not answering",
            "busy": record.get("task") is not None, "task": record.get("task"), "step": record.get("step"),
            "episode_id": record.get("episode_id"), "episodes": episodes, "steps": steps,
            "episodes_per_min": round(per_minute[0], 2), "steps_per_min": round(per_minute[1], 1),
            "recoveries": record.get("recoveries", 0), "quarantines": record.get("quarantines", 0),
            "restarts": record.get("restarts", 0), "failures": record.get("failures", 0),
            "last_error": error, "heartbeat_age": round(now - float(record.get("heartbeat", now)), 1),
            "screen": screen,
        }

    def _screen(self, host: str, record: dict[str, Any]) -> str | None:
        """The store-relative path of the screenshot to show for one device (see the module docstring)."""
        published = record.get("screenshot")
        episode = record.get("episode_id")
        store = self.store
        if isinstance(published, str) and published:
            self._screens[host] = published
        elif isinstance(episode, str) and episode and store is not None:
            # Looked up once per (episode, episode count): once while it runs (not stored yet), once more when
            # the count says it finished. A store on S3 is not asked every poll for every busy device.
            attempt = (episode, record.get("episodes"))
            if self._looked_up.get(host) != attempt:
                self._looked_up[host] = attempt
                path = _last_screen(store, episode)
                if path is not None:
                    self._screens[host] = path
        return self._screens.get(host)

    def close(self) -> None:
        self.client.close()


def _last_screen(store: TrajectoryStore, episode_id: str) -> str | None:
    """The last step's screenshot path of a stored episode; None while it is not stored (still running)."""
    try:
        trajectory = store.get(episode_id)
    except (KeyError, DataError):
        return None
    paths = [s.observation.screenshot_path for s in trajectory.steps if s.observation.screenshot_path]
    return paths[-1] if paths else None


def create_app(config: FarmConfig, interval: float = 1.0, title: str = "guiagent farm"):
    """The dashboard as a Starlette app: ``/`` (the page), ``/events`` (a snapshot every ``interval`` seconds, as
    server-sent events),
    ``/screens/<path>`` (screenshots from the farm's store), ``/static/``."""
    import anyio
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.responses import HTMLResponse, StreamingResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    monitor = FarmMonitor(config, interval=interval)
    page_html = environment().get_template("dashboard.html").render(root="", title=title, interval=interval)

    async def page(request):
        return HTMLResponse(page_html, headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"})

    async def events(request):
        async def stream():
            while True:
                # The broker and store reads block: off the event loop, so other pages stay served meanwhile.
                snapshot = await run_in_threadpool(monitor.snapshot)
                yield f"event: status\ndata: {json.dumps(snapshot, default=str)}\n\n"
                await anyio.sleep(interval)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def screen(request):
        store = monitor.store
        if store is None:
            raise HTTPException(404, f"no trajectory store at {config.store_url} yet")
        return screenshot_response(store, request.path_params["path"])

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            monitor.close()

    return Starlette(
        routes=[Route("/", page), Route("/events", events), Route("/screens/{path:path}", screen),
                Mount("/static", StaticFiles(directory=STATIC), name="static")],
        lifespan=lifespan,
    )


def serve_dashboard(directory: str | os.PathLike, host: str = "127.0.0.1", port: int = 8001,
                    interval: float = 1.0) -> None:
    """Serve the dashboard of the local farm started from ``directory`` (``guiagent farm up --local``).

    Raises:
        FarmError: no farm was started there.
    """
    from guiagent.farm.local import read_state

    config = FarmConfig.model_validate(read_state(Path(directory))["config"])
    serve(create_app(config, interval=interval), host=host, port=port)
