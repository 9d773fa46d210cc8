"""The one narrow interface every device sits behind.

An :class:`Env` is one device (an emulator over adb, an Appium session, an OSWorld VM, a browser, a
MobileSim phone). The agent loop only ever calls these methods, so the same loop drives a real
emulator in a farm and MobileSim on a laptop.

Every implementation:
- takes and returns the data contract types (``Action`` in device pixels, ``Observation``);
- puts a timeout on every call to the device and raises :class:`~guiagent.errors.DeviceTimeout`,
  :class:`~guiagent.errors.DeviceLost` or :class:`~guiagent.errors.DeviceNotReady`, never a fake value;
- rejects an action it cannot execute with :class:`~guiagent.errors.ActionError` (a coordinate outside
  the screen, an action type the device has no equivalent for) before touching the device.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from guiagent.errors import ActionError, ConfigError
from guiagent.types import Action, EpisodeStatus, Observation, Outcome, Task


class Env(ABC):
    """One device that shows screens and executes canonical actions.

    Attributes:
        env_id: Stable id of the device instance (``"emulator-5554"``, ``"sim-0"``), recorded in trajectories.
        answer: The text of the last ``ANSWER`` executed since the last :meth:`reset` (None before one), so
            that :meth:`evaluate` can judge answer tasks the way AndroidWorld's runner reports answers.
    """

    env_id: str
    answer: str | None = None

    @property
    def done(self) -> bool:
        """True once the device itself ended the episode (MiniWoB++'s own check or timer); the agent loop then
        stops and evaluates. Devices without such an end (phones, VMs) are never done."""
        return False

    @abstractmethod
    def reset(self, task: Task | None = None) -> Observation:
        """Bring the device to the task's initial state (snapshot load, app reset) and observe it.

        Args:
            task: The task to set up; None resets to the device's default state (home screen).
        """

    @abstractmethod
    def observe(self) -> Observation:
        """Capture the current screen (and accessibility tree where the device has one)."""

    @abstractmethod
    def execute(self, action: Action) -> None:
        """Execute one action on the device. ``ANSWER``/``TERMINATE`` are accepted and change nothing."""

    @abstractmethod
    def evaluate(self, task: Task) -> Outcome:
        """Judge ``task`` (the one the device was reset for) from the device state or the benchmark's own
        checker, with :attr:`answer` for answer tasks. Never from the agent's claim.

        Raises:
            ConfigError: the env has no way to judge this task (e.g. no evaluation hook was given).
        """

    @property
    @abstractmethod
    def screen_size(self) -> tuple[int, int]:
        """``(width, height)`` of the screen in device pixels."""

    def step(self, action: Action) -> Observation:
        """Execute ``action`` and observe the screen that follows."""
        self.execute(action)
        return self.observe()

    def close(self) -> None:
        """Release the device connection. Safe to call twice."""

    def check_on_screen(self, action: Action) -> None:
        """Raise :class:`ActionError` if any coordinate of ``action`` is outside the screen."""
        width, height = self.screen_size
        for x, y in action.points():
            if not (0 <= x < width and 0 <= y < height):
                raise ActionError(f"{action.type.value} at ({x:g}, {y:g}) is outside the {width}x{height} screen")

    def __enter__(self) -> Env:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


TaskEvaluation = Callable[["Env", Task], "Outcome | bool"]
"""A benchmark's checker for a device backend: ``evaluate(env, task)`` → an ``Outcome`` (or success as a bool)."""


def judged(result: Outcome | bool) -> Outcome:
    """An evaluation hook's answer as an :class:`Outcome`: a bool becomes SUCCESS/FAILURE with reward 1/0."""
    if isinstance(result, Outcome):
        return result
    if not isinstance(result, bool):
        raise TypeError(f"a task evaluation must return an Outcome or a bool, got {type(result).__name__}")
    return Outcome(EpisodeStatus.SUCCESS if result else EpisodeStatus.FAILURE, reward=float(result))


def evaluate_with(env: Env, task: Task, evaluation: TaskEvaluation | None) -> Outcome:
    """``env.evaluate(task)`` for backends that judge through a hook (adb, Appium).

    Raises:
        ConfigError: no hook was given, so the env cannot judge ``task``.
    """
    if evaluation is None:
        raise ConfigError(f"{env.env_id} cannot judge {task.task_id}: construct it with a task_evaluation hook "
                          "(the benchmark's own checker)")
    return judged(evaluation(env, task))
