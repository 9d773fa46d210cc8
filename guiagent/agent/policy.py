"""``PolicyAgent``: an agent backed by any :class:`~guiagent.policy.base.Policy` (local or served by vLLM).

It builds the prompt and parses the answer with one :class:`~guiagent.actions.ActionSpaceConfig` (the
prompt's ``actions``), so the resolution the model is told, the image it sees and the parser always agree.

On a farm worker (no torch) hand it the :class:`~guiagent.actions.ModelGeometry` of the device's screen,
computed by ``qwen_vl_utils.smart_resize`` where torch lives (the driver), with the episode; without one
it computes the geometry itself through the action space (which imports qwen-vl-utils, and so torch).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from guiagent.actions.coords import ModelGeometry
from guiagent.agent.base import Decision
from guiagent.errors import ConfigError
from guiagent.policy.base import GenerationRequest, Policy, SamplingParams
from guiagent.policy.prompts import PromptConfig, build_messages, history_from_steps
from guiagent.rewards.format import parse_response
from guiagent.types import Observation, Step, Task


class PolicyAgent:
    """The policy answers each step with its own earlier answers as history.

    Args:
        policy: Local transformers backend or the vLLM client.
        prompt: Answer format, resize bounds and history window.
        sampling: How tokens are chosen. A seeded sampling seeds step ``t`` with ``seed + t``, so a
            GRPO group's G episodes with one seed per member are reproducible step by step.
        model: Served model or LoRA adapter name (None: the backend's default).
        geometry: The model geometry of the device's screen, when computed elsewhere (see module doc).
    """

    def __init__(self, policy: Policy, prompt: PromptConfig, sampling: SamplingParams, *,
                 model: str | None = None, geometry: ModelGeometry | None = None):
        self.policy = policy
        self.prompt = prompt
        self.sampling = sampling
        self.model = model
        self.geometry = geometry
        self._instruction = ""

    def reset(self, task: Task) -> None:
        self._instruction = task.instruction

    def _geometry(self, observation: Observation) -> ModelGeometry:
        if self.geometry is None:
            return self.prompt.geometry(observation.width, observation.height)
        if (self.geometry.width, self.geometry.height) != (observation.width, observation.height):
            raise ConfigError(
                f"the agent was given the geometry of a {self.geometry.width}x{self.geometry.height} screen, "
                f"but the device shows {observation.width}x{observation.height}"
            )
        return self.geometry

    def act(self, observation: Observation, history: Sequence[Step]) -> Decision:
        geometry = self._geometry(observation)
        size = (geometry.resized_width, geometry.resized_height) if self.geometry is not None else None
        messages = build_messages(
            self._instruction or observation.instruction,
            observation.screenshot_source(),
            history_from_steps(history),
            self.prompt,
            size=size,
        )
        sampling = self.sampling
        if sampling.seed is not None:
            sampling = dataclasses.replace(sampling, seed=sampling.seed + len(history))
        generation = self.policy.generate([GenerationRequest(messages, model=self.model)], sampling)[0]
        parsed = parse_response(generation.text, self.prompt.actions.format, geometry)
        return Decision(
            action=parsed.action,
            response=generation.text,
            parse_error=parsed.failure,
            token_ids=tuple(generation.token_ids),
            logprobs=tuple(generation.logprobs),
        )
