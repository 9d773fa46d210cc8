"""The interface every policy backend implements: requests in, generations out.

The local transformers backend (:mod:`guiagent.policy.local`) and the vLLM client
(:mod:`guiagent.policy.client`) both implement :class:`Policy`, so rollouts, evaluation and the demo do
not care which one serves them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from guiagent.errors import PolicyError


@dataclass(frozen=True)
class SamplingParams:
    """How tokens are chosen.

    Attributes:
        max_tokens: Most tokens to generate per request.
        temperature: Softmax temperature; ignored when ``greedy``.
        top_p: Nucleus sampling mass; ignored when ``greedy``.
        greedy: Take the most likely token at every step (evaluation); deterministic.
        seed: Seed of the sampler, for reproducible sampling; None draws fresh randomness. vLLM 0.32's CPU
            build serves seeded requests only with chunked prefill off (``ServerConfig.chunked_prefill``).
    """

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    greedy: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise PolicyError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not self.greedy and self.temperature <= 0:
            raise PolicyError(f"temperature must be > 0 when sampling (use greedy=True), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise PolicyError(f"top_p must be in (0, 1], got {self.top_p}")


GREEDY = SamplingParams(greedy=True, temperature=0.0)


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt for the policy.

    Attributes:
        messages: Chat messages as :func:`guiagent.policy.prompts.build_messages` returns them: content is
            a string or a list of ``{"type": "text", "text": ...}`` / ``{"type": "image", "image": PIL}``
            parts.
        model: Which served model or LoRA adapter answers (vLLM: a served name such as ``policy-v3``);
            None means the backend's default.
    """

    messages: Sequence[dict[str, Any]]
    model: str | None = None


@dataclass(frozen=True)
class Generation:
    """The policy's answer to one request.

    Attributes:
        text: Decoded completion, special tokens removed (tool-call tags are kept).
        token_ids: Completion token ids, length T, ending with the stop token when one was produced.
        logprobs: Log-probability of each completion token under the model's unmodified distribution
            (before temperature / top-p), length T.
        finish_reason: ``"stop"`` (end token) or ``"length"`` (hit max_tokens).
        prompt_tokens: Number of prompt tokens, image tokens included.
        model: The model or adapter that answered (the policy version a trajectory records).
    """

    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish_reason: str
    prompt_tokens: int
    model: str = ""


@runtime_checkable
class Policy(Protocol):
    """Anything that turns prompts into generations."""

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingParams) -> list[Generation]:
        """Generate one completion per request, in request order.

        Raises:
            PolicyError: the backend failed (PolicyTimeout when it did not answer in time).
        """
        ...


def generate_all(policy: Policy, requests: Sequence[GenerationRequest], sampling: SamplingParams) -> list[Generation]:
    """``policy.generate(requests, sampling)``, checked to answer every request (a short answer list would
    silently drop samples); no call for no requests.

    Raises:
        PolicyError: the backend failed, or answered a different number of requests than it was sent.
    """
    if not requests:
        return []
    generations = policy.generate(requests, sampling)
    if len(generations) != len(requests):
        raise PolicyError(f"the policy answered {len(generations)} of {len(requests)} requests")
    return generations

