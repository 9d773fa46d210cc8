"""Scoring generated responses with the configured reward: the one path every rollout kind takes.

A rollout turns each response into a :class:`~guiagent.rewards.sample.RewardInput`
(:func:`expert_step_sample` when the response answers an expert step) and hands its batch to a
:class:`Rewarder`, which runs the config's memory judge where it names one (HAR, arXiv 2511.09127) and
then the registered reward::

    rewarder = Rewarder(config.reward)                 # once per run: an LLM judge keeps its client
    rewards = rewarder.score([expert_step_sample(parsed, expert_step, history), ...])
"""

from __future__ import annotations

from collections.abc import Sequence

from guiagent.rewards.format import ParsedResponse, sample_from_response
from guiagent.rewards.memory import build_memory_judge, with_memory_verdicts
from guiagent.rewards.registry import RewardConfig
from guiagent.rewards.sample import RewardInput
from guiagent.types import Step


def expert_step_sample(parsed: ParsedResponse, expert: Step, history: Sequence[str] = ()) -> RewardInput:
    """The :class:`RewardInput` of a response given on ``expert``'s screen, against ``expert``'s action.

    Args:
        parsed: The response, parsed in device pixels of ``expert.observation``'s screenshot.
        expert: The expert step: its action, and its target box when it has one (the first of
            ``target_boxes``: readers put the target's box first, and UI-S1's training matcher takes one).
        history: Short texts of the previous steps, oldest first, as the policy's prompt showed them.
    """
    obs = expert.observation
    box = expert.target_boxes[0] if expert.target_boxes else None
    return sample_from_response(parsed, (obs.width, obs.height), expert=expert.action, expert_box=box,
                                history=history)


class Rewarder:
    """A :class:`RewardConfig` ready to score batches: its registered reward and its memory judge, built once.

    Args:
        config: The reward name, its options and (for ``har``) the memory judge.
    """

    def __init__(self, config: RewardConfig):
        self.config = config
        self.judge = build_memory_judge(config.memory_judge) if config.memory_judge is not None else None

    def score(self, samples: Sequence[RewardInput]) -> list[float]:
        """One reward per sample, in order: the memory judge's verdicts (when configured), then the reward.

        Raises:
            ValueError: a sample lacks what the reward needs (e.g. the expert action).
            PolicyError: an LLM judge failed after its bounded retries.
        """
        if self.judge is not None:
            samples = with_memory_verdicts(samples, self.judge)
        return [self.config(sample) for sample in samples]
