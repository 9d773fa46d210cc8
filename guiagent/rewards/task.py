"""Task-success reward for online episodes.

The reward comes from the environment's own check (:class:`~guiagent.types.Outcome`, e.g. AndroidWorld's
``is_successful`` or MobileSim's state check), never from the agent's claim: an agent that emits
``terminate(success)`` on an unfinished task earns nothing for it.
"""

from __future__ import annotations

from guiagent.rewards.registry import register_reward
from guiagent.rewards.sample import RewardInput
from guiagent.types import Outcome


def task_success_reward(outcome: Outcome, *, success: float = 1.0, failure: float = 0.0) -> float:
    """``success`` if the environment says the task is done (``outcome.success``), else ``failure``.

    Timeouts and errors count as failures: the task is not done.
    """
    return success if outcome.success else failure


@register_reward("task_success")
def task_success(sample: RewardInput, *, success: float = 1.0, failure: float = 0.0) -> float:
    """Registered task-success reward; the sample must carry the episode's :class:`Outcome`.

    Raises:
        ValueError: ``sample.outcome`` is None (the environment has not judged the episode).
    """
    if sample.outcome is None:
        raise ValueError("reward 'task_success' needs RewardInput.outcome from the environment's check")
    return task_success_reward(sample.outcome, success=success, failure=failure)
