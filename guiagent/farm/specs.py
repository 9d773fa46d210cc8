"""What travels through the broker: an episode's spec one way, its result's metadata the other (JSON only;
screenshots and trajectories go to the trajectory store, never through the broker)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from guiagent.errors import ConfigError
from guiagent.types import JSONValue, Task, from_json, to_json


@dataclass(frozen=True)
class AgentSpec:
    """Which agent a worker builds for an episode.

    Attributes:
        kind: ``"policy"`` (a served policy over the OpenAI API), ``"oracle"`` (the device kind's scripted
            expert: MobileSim's planner on ``sim``, the DOM-reading MiniWoB++ expert on ``web``),
            ``"random"`` (uniform random actions; ``seed``), for tests and load runs.
        url: The policy server's base URL (``policy``).
        model: The served model or LoRA adapter name (``policy``).
        sampling: :class:`~guiagent.policy.base.SamplingParams` fields (``policy``).
        prompt: :class:`~guiagent.policy.prompts.PromptConfig` fields (``policy``).
        geometries: ``"WIDTHxHEIGHT"`` → ``[resized_width, resized_height]``, computed by qwen-vl-utils in the
            driver (which has torch) for the screen sizes of the farm's devices (``policy``).
        seed: Seed of the ``random`` agent.
        timeout: Seconds one policy request may take in total (``policy``).
    """

    kind: str
    url: str | None = None
    model: str | None = None
    sampling: Mapping[str, JSONValue] = field(default_factory=dict)
    prompt: Mapping[str, JSONValue] = field(default_factory=dict)
    geometries: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    seed: int = 0
    timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.kind not in ("policy", "oracle", "random"):
            raise ConfigError(f"agent kind must be policy, oracle or random, got {self.kind!r}")
        if self.kind == "policy" and not (self.url and self.model):
            raise ConfigError("a policy agent needs the server's url and the model name")


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode for the farm.

    Attributes:
        episode_id: Unique id; the farm runs each id at most once to a stored result.
        task: The task (its seed fixes its initial state: a group's G episodes share it).
        agent: Who plays.
        kind: Device kind that runs it (the queue).
        max_steps: Step budget (None: the task's).
        policy_version: Recorded on the trajectory.
        require_done: AndroidWorld's protocol (success only when the agent declared it done).
        group: Id of the GRPO group the episode belongs to, recorded in the trajectory's info.
    """

    episode_id: str
    task: Task
    agent: AgentSpec
    kind: str = "sim"
    max_steps: int | None = None
    policy_version: str = "unknown"
    require_done: bool = False
    group: str | None = None

    def to_json(self) -> dict[str, JSONValue]:
        return to_json(self)

    @classmethod
    def from_json(cls, data: Mapping[str, JSONValue]) -> EpisodeSpec:
        try:
            return from_json(cls, data)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"malformed episode spec: {exc}") from None


@dataclass(frozen=True)
class EpisodeResult:
    """The metadata of a finished episode, as the worker returns it (the trajectory is in the store).

    Attributes:
        episode_id: The episode.
        status: ``EpisodeStatus`` value (``success``/``failure``/``timeout``/``error``).
        reward: The outcome's reward.
        steps: Steps taken.
        env_id: The device that ran it.
        worker: The worker's hostname.
        stored: False when the store already held this episode (a redelivered or repeated episode: the
            stored one is the result).
        seconds: Wall time of the episode on the worker.
        retries: Times it was run again after device failures.
        message: The outcome's message (the error, for ``error``).
        group: The GRPO group id.
    """

    episode_id: str
    status: str
    reward: float
    steps: int
    env_id: str
    worker: str
    stored: bool
    seconds: float
    retries: int = 0
    message: str = ""
    group: str | None = None

    @property
    def success(self) -> bool:
        return self.status == "success"

    def to_json(self) -> dict[str, Any]:
        return to_json(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EpisodeResult:
        return from_json(cls, data)


def policy_agent_spec(url: str, model: str, prompt: Any, sampling: Any, screen_sizes: Sequence[tuple[int, int]],
                      timeout: float = 120.0) -> AgentSpec:
    """The spec of a served-policy agent, built where torch lives (the driver): the model geometry of every
    device screen size is computed here by qwen-vl-utils' ``smart_resize`` (through the prompt's action
    space) and handed to the workers, which never import it.

    Args:
        url: The policy server's base URL.
        model: The served model or LoRA adapter.
        prompt: :class:`~guiagent.policy.prompts.PromptConfig`.
        sampling: :class:`~guiagent.policy.base.SamplingParams`.
        screen_sizes: ``(width, height)`` of the farm's devices.
        timeout: Seconds one policy request may take in total.
    """
    import dataclasses

    geometries = {}
    for width, height in screen_sizes:
        geometry = prompt.geometry(width, height)
        geometries[f"{width}x{height}"] = (geometry.resized_width, geometry.resized_height)
    return AgentSpec("policy", url=url, model=model, sampling=dataclasses.asdict(sampling),
                     prompt=prompt.model_dump(), geometries=geometries, timeout=timeout)
