"""Producing predictions with a policy (any :mod:`guiagent.policy` backend) instead of reading a file.

:class:`PolicyPredictor` turns a policy into the ``predict(observation, history) -> text`` protocol
that :func:`guiagent.eval.androidcontrol.run_sop` drives: one greedy generation per step, the prompt
built by :func:`guiagent.policy.prompts.build_messages` with the model's own earlier responses as
text history. The Low instruction level appends the step instruction to the goal (``"<goal>\\nCurrent
step: <step instruction>"``); High gives the goal alone. The prompt is built from the same
:class:`~guiagent.actions.ActionSpaceConfig` the responses are parsed with (format, resize bounds), so
coordinates map back exactly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from guiagent.actions import ActionSpaceConfig
from guiagent.types import Observation


class PolicyPredictor:
    """A policy as a step predictor (greedy unless told otherwise).

    Args:
        policy: Anything with ``generate(requests, sampling) -> [Generation]``
            (:class:`guiagent.policy.base.Policy`).
        space: The answer format and resize bounds (prompt and parser share them).
        max_tokens: Most tokens per answer.
    """

    def __init__(self, policy: Any, space: ActionSpaceConfig, max_tokens: int = 256):
        from guiagent.policy.base import SamplingParams
        from guiagent.policy.prompts import PromptConfig

        self.policy = policy
        self.prompt = PromptConfig(actions=space)
        self.sampling = SamplingParams(max_tokens=max_tokens, greedy=True, temperature=0.0)

    def predict(self, observation: Observation, history: Sequence[str]) -> str:
        """One answer for one step; ``history`` holds this episode's earlier answers, oldest first."""
        from guiagent.policy.base import GenerationRequest
        from guiagent.policy.prompts import HistoryStep, build_messages

        instruction = observation.instruction
        step = observation.extras.get("step_instruction")
        if step:
            instruction = f"{instruction}\nCurrent step: {step}"
        screenshot = (
            observation.screenshot if observation.screenshot is not None else observation.screenshot_path
        )
        messages = build_messages(
            instruction, screenshot, [HistoryStep(response=h) for h in history], self.prompt
        )
        return self.policy.generate([GenerationRequest(messages)], self.sampling)[0].text


def grounding_predictions(
    root: str | os.PathLike, predictor: PolicyPredictor, limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """Ask ``predictor`` once per ScreenSpot sample; yields records (``sample_id``, ``response``)."""
    from guiagent.data.store import iter_samples

    for count, sample in enumerate(iter_samples(root)):
        if limit is not None and count >= limit:
            return
        obs = Observation(
            sample["width"],
            sample["height"],
            screenshot_path=os.path.join(str(root), sample["image"]),
            instruction=sample["instruction"],
        )
        yield {"sample_id": sample["sample_id"], "response": predictor.predict(obs, ())}


class ExpertTextPredictor:
    """The expert's own actions written as model text (``format_action``), looked up by screenshot path.

    A step predictor for :func:`guiagent.eval.androidcontrol.run_sop`: scoring it checks the whole
    text → parse → match path of a protocol, so its SOP must be 1.0.

    Args:
        experts: The expert trajectories of the store (screenshots as store paths).
        space: The answer format and resize bounds.
        root: The store directory the paths are relative to.
    """

    def __init__(self, experts: Sequence[Any], space: ActionSpaceConfig, root: str | os.PathLike):
        from guiagent.actions import format_action

        self.texts = {
            os.path.join(str(root), s.observation.screenshot_path): format_action(
                s.action, space.format, space.geometry(s.observation.width, s.observation.height))
            for e in experts for s in e.steps
        }

    def predict(self, observation: Observation, history: Sequence[str]) -> str:
        return self.texts[observation.screenshot_path]
