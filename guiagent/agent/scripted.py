"""Agents without a model: the MobileSim oracle, a replay of a recorded episode, a random baseline."""

from __future__ import annotations

import random
from collections.abc import Sequence

from guiagent.agent.base import Decision
from guiagent.envs.sim.oracle import plan_actions
from guiagent.errors import ConfigError
from guiagent.types import Action, Direction, Observation, Step, SystemButton, Task, Trajectory


class OracleAgent:
    """The MobileSim expert, planning each action from the accessibility tree of the screen it is shown.

    It reads only the observation (the uiautomator dump), so it plays the same way in-process and over adb.
    """

    def __init__(self) -> None:
        self._plan = None
        self._observation: Observation | None = None

    def reset(self, task: Task) -> None:
        self._plan = plan_actions(task, self._screen)

    def _screen(self) -> tuple[str, tuple[int, int]]:
        observation = self._observation
        if observation.a11y_tree is None:
            raise ConfigError("the MobileSim oracle plans from the accessibility tree, and this env gives none")
        return observation.a11y_tree, (observation.width, observation.height)

    def act(self, observation: Observation, history: Sequence[Step]) -> Decision:
        if self._plan is None:
            raise ConfigError("OracleAgent.act before reset(task)")
        self._observation = observation
        action = next(self._plan, None)
        # The planner gives up after the task's step budget without finishing: say so.
        return Decision(action if action is not None else Action.terminate("failure", "the oracle ran out of plan"))


class ReplayAgent:
    """Replays a recorded trajectory's actions and responses, step by step (then TERMINATE).

    Args:
        trajectory: The recording; steps whose response did not parse are replayed as the same failure.
    """

    def __init__(self, trajectory: Trajectory):
        self.trajectory = trajectory
        self._next = 0

    def reset(self, task: Task) -> None:
        self._next = 0

    def act(self, observation: Observation, history: Sequence[Step]) -> Decision:
        steps = self.trajectory.steps
        if self._next >= len(steps):
            return Decision(Action.terminate("failure", "the recording has no more steps"))
        step = steps[self._next]
        self._next += 1
        return Decision(step.action, response=step.response, parse_error=step.parse_error,
                        token_ids=step.token_ids, logprobs=step.logprobs)


class RandomAgent:
    """Uniformly random taps, swipes, scrolls and BACK presses on the screen (a baseline and a load source).

    Args:
        seed: Base seed; each episode draws from ``Random(seed + task.seed)``, so one task replays the same.
    """

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._rng = random.Random(seed)

    def reset(self, task: Task) -> None:
        self._rng = random.Random(self.seed + task.seed)

    def act(self, observation: Observation, history: Sequence[Step]) -> Decision:
        rng, width, height = self._rng, observation.width, observation.height

        def point() -> tuple[float, float]:
            return float(rng.randrange(width)), float(rng.randrange(height))

        kind = rng.choices(("click", "swipe", "scroll", "back"), weights=(6, 1, 2, 1))[0]
        if kind == "click":
            action = Action.click(*point())
        elif kind == "swipe":
            action = Action.swipe(point(), point())
        elif kind == "scroll":
            action = Action.scroll(rng.choice(list(Direction)))
        else:
            action = Action.system_button(SystemButton.BACK)
        return Decision(action)
