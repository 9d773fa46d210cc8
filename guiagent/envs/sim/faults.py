"""Fault injection for farm tests and chaos runs: an :class:`Env` wrapper whose device crashes or hangs.

A crash (``DeviceLost``) leaves the device dead until it is restarted (a new env from the factory), and
with ``down_seconds`` a restart fails too until that long after the crash (an emulator that must boot
again): recovery fails and the farm quarantines the device until it is back. A hang blocks the call for
``hang_seconds`` and then fails the way a real backend's call timeout does (``DeviceTimeout``), leaving the
device stuck until a reset (snapshot reload) clears it. Faults are drawn per call from a seeded generator,
so a fault run is reproducible.
"""

from __future__ import annotations

import random
import time

from guiagent.envs.base import Env
from guiagent.errors import DeviceLost, DeviceTimeout
from guiagent.types import Action, Observation, Outcome, Task

# What outlives a restart (a new FaultyEnv for the same env_id; a worker process owns one device): when the
# outage of a crashed device ends (time.monotonic()), and the faults injected into it so far.
_DOWN_UNTIL: dict[str, float] = {}
_INJECTED: dict[str, dict[str, int]] = {}


class FaultyEnv(Env):
    """``env`` with injected crashes and hangs.

    Args:
        env: The device to wrap.
        crash_rate: Probability that a call crashes the device.
        hang_rate: Probability that a call hangs.
        hang_seconds: How long a hung call blocks before it times out.
        down_seconds: How long after a crash every call fails, restarted or not.
        seed: Seed of the fault draws.

    Attributes:
        injected: ``crashes`` and ``hangs`` injected into this device (its restarts in this process included).
    """

    def __init__(self, env: Env, *, crash_rate: float = 0.0, hang_rate: float = 0.0, hang_seconds: float = 1.0,
                 down_seconds: float = 0.0, seed: int = 0):
        self.env = env
        self.env_id = env.env_id
        self.crash_rate, self.hang_rate, self.hang_seconds = crash_rate, hang_rate, hang_seconds
        self.down_seconds = down_seconds
        self._rng = random.Random(seed)
        self.state = "ok"  # "crashed" until restarted, "stuck" until reset
        self.injected = _INJECTED.setdefault(self.env_id, {"crashes": 0, "hangs": 0})

    @property
    def answer(self) -> str | None:  # the wrapped env records answers
        return self.env.answer

    @property
    def screen_size(self) -> tuple[int, int]:
        return self.env.screen_size

    def _call(self, name: str) -> None:
        if self.state == "crashed" or time.monotonic() < _DOWN_UNTIL.get(self.env_id, 0.0):
            raise DeviceLost(f"{self.env_id}: device crashed (injected)")
        if self.state == "stuck":
            time.sleep(self.hang_seconds)
            raise DeviceTimeout(f"{self.env_id}: {name} did not answer within {self.hang_seconds}s (injected hang)")
        draw = self._rng.random()
        if draw < self.crash_rate:
            self.state = "crashed"
            _DOWN_UNTIL[self.env_id] = time.monotonic() + self.down_seconds
            self.injected["crashes"] += 1
            raise DeviceLost(f"{self.env_id}: device crashed during {name} (injected)")
        if draw < self.crash_rate + self.hang_rate:
            self.state = "stuck"
            self.injected["hangs"] += 1
            time.sleep(self.hang_seconds)
            raise DeviceTimeout(f"{self.env_id}: {name} did not answer within {self.hang_seconds}s (injected hang)")

    def reset(self, task: Task | None = None) -> Observation:
        if self.state == "stuck":  # a snapshot reload clears a hang; a crashed device needs a restart
            self.state = "ok"
        self._call("reset")
        return self.env.reset(task)

    def observe(self) -> Observation:
        self._call("observe")
        return self.env.observe()

    def execute(self, action: Action) -> None:
        self._call("execute")
        self.env.execute(action)

    def evaluate(self, task: Task) -> Outcome:
        return self.env.evaluate(task)

    def close(self) -> None:
        self.env.close()
