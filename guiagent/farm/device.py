"""One device as a farm worker owns it: the env, its health check, its recovery, its counters."""

from __future__ import annotations

import functools
import io
import logging
import time
from collections.abc import Callable
from typing import Any

from guiagent.envs.base import Env
from guiagent.errors import DeviceError

log = logging.getLogger(__name__)


def screen_problem(env: Env) -> str | None:
    """Why the device is not fit for an episode, or None: it must answer an observation in time with a
    screenshot that decodes and is not blank (a black or single-colour frame is a booting or dead screen)."""
    try:
        observation = env.observe()
    except DeviceError as exc:
        return f"{type(exc).__name__}: {exc}"
    if observation.screenshot is None:
        return "the observation has no screenshot"
    return _frame_problem(observation.screenshot)


@functools.lru_cache(maxsize=1)
def _frame_problem(png: bytes) -> str | None:
    """Why a screenshot is unfit, or None. The last frame's verdict is kept: a simulator shows the same
    frame before every episode, and decoding it cost as much CPU as a short episode."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(png)) as image:
            extrema = image.convert("L").getextrema()
    except OSError as exc:
        return f"the screenshot does not decode: {exc}"
    return "the screen is blank" if extrema[0] == extrema[1] else None


class Device:
    """The device of one worker process.

    Args:
        device_id: Stable id (``sim-3``, ``emulator-5554``).
        factory: Builds (and rebuilds, on restart) the env.
        recovery_attempts: Tries of each recovery (snapshot reload, then restart) before giving up.

    Attributes:
        counters: ``episodes``, ``steps``, ``retries``, ``recoveries``, ``restarts``, ``quarantines``,
            ``failures`` since the worker started; ``last_error`` and ``state`` (``ok``/``quarantined``)
            beside them.
    """

    def __init__(self, device_id: str, factory: Callable[[], Env], recovery_attempts: int = 3):
        self.device_id = device_id
        self.factory = factory
        self.recovery_attempts = recovery_attempts
        self.env = factory()
        self.counters: dict[str, Any] = {
            "episodes": 0, "steps": 0, "retries": 0, "recoveries": 0, "restarts": 0, "quarantines": 0,
            "failures": 0, "last_error": None, "state": "ok", "task": None, "step": None,
            "started": time.time(),
        }

    def failed(self, error: BaseException | str) -> None:
        """Count a device failure and remember it."""
        self.counters["failures"] += 1
        self.counters["last_error"] = str(error)

    def recover(self) -> bool:
        """Bring the device back: a snapshot reload (``env.reset()``), then a restart (a new env from the
        factory), each tried ``recovery_attempts`` times. True when the health check passes again."""
        reload = lambda: self.env.reset(None)  # noqa: E731
        return (any(self._brought_back(reload) for _ in range(self.recovery_attempts))
                or any(self._brought_back(self._restart) for _ in range(self.recovery_attempts)))

    def _restart(self) -> None:
        try:
            self.env.close()
        except Exception:  # a dead device may fail to close: the restart replaces it anyway
            log.debug("closing %s before a restart failed", self.device_id, exc_info=True)
        self.env = self.factory()
        self.counters["restarts"] += 1
        self.env.reset(None)

    def _brought_back(self, attempt: Callable[[], object]) -> bool:
        """Run one recovery attempt; True (counted) when the device then passes its health check."""
        try:
            attempt()
        except DeviceError as exc:
            self.counters["last_error"] = str(exc)
            return False
        problem = screen_problem(self.env)
        if problem is not None:
            self.counters["last_error"] = problem
            return False
        self.counters["recoveries"] += 1
        return True

    def ensure_healthy(self) -> bool:
        """Check the device before work; recover it when the check fails. False: it is still sick."""
        problem = screen_problem(self.env)
        if problem is None:
            return True
        self.failed(problem)
        return self.recover()

    def status(self) -> dict[str, Any]:
        """The counters and state, JSON values only (with the faults injected into it, for a FaultyEnv)."""
        injected = getattr(self.env, "injected", None)
        return {"device_id": self.device_id, "env_id": self.env.env_id, "screen": list(self.env.screen_size),
                **self.counters, **({"injected": dict(injected)} if injected is not None else {})}
