"""Reward functions by name.

The trainer never special-cases a reward: it reads a name from its config and calls what is registered
under it, with one calling convention::

    fn = get_reward("uis1_step")
    r = fn(sample, **options)          # sample: RewardInput, options: the config's keyword options

Options are keyword-only parameters with paper defaults (as for the advantage estimators in
:mod:`guiagent.algos.registry`), so :class:`RewardConfig` can reject a misspelt option or a value of the
wrong type (against the parameter's annotation) before a run starts.

Registering a name twice raises, so two modules can never silently shadow each other.

Rewards stay pure: what needs a model or a server (HAR's memory judge) runs before the reward and leaves
its verdict in the sample. :class:`RewardConfig` names that judge too (:class:`MemoryJudgeConfig`), so a
config file chooses the whole scoring, and :class:`guiagent.rewards.scoring.Rewarder` runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import Field, ValidationInfo, field_validator, model_validator

# One registration, lookup and option check for every registry.
from guiagent.algos.registry import lookup_in, register_in, validate_options
from guiagent.config import StrictModel

if TYPE_CHECKING:
    from guiagent.rewards.sample import RewardInput

RewardFn = Callable[..., float]
F = TypeVar("F", bound=RewardFn)

_REWARDS: dict[str, RewardFn] = {}


def register_reward(name: str) -> Callable[[F], F]:
    """Decorator registering ``fn(sample: RewardInput, **options) -> float`` under ``name``.

    Raises:
        ValueError: ``name`` is already registered.
    """

    return register_in(_REWARDS, "reward", name)


def get_reward(name: str) -> RewardFn:
    """The reward function registered under ``name``.

    Raises:
        ConfigError: no reward has that name (the message lists the registered ones).
    """
    _load_builtin_rewards()
    return lookup_in(_REWARDS, "reward", name)


def available_rewards() -> list[str]:
    """Sorted names of every registered reward."""
    _load_builtin_rewards()
    return sorted(_REWARDS)


def _load_builtin_rewards() -> Any:
    # Importing the package registers the built-in rewards (each module decorates its functions).
    import guiagent.rewards  # noqa: F401


class LLMJudgeConfig(StrictModel):
    """Where and how to ask an LLM whether reasoning uses the history (:class:`.memory.LLMMemoryJudge`)."""

    base_url: str = Field(..., description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1.")
    model: str = Field(..., description="Model name the server expects.")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Environment variable holding the API key (never put keys in configs)."
    )
    timeout_s: float = Field(30.0, gt=0, description="Timeout of one request in seconds.")
    max_retries: int = Field(
        2,
        ge=0,
        description="Retries after the first attempt on timeouts, connection errors, 429/5xx and malformed answers.",
    )
    retry_backoff_s: float = Field(1.0, ge=0, description="Sleep before retry i is i × this many seconds.")
    history_window: int = Field(
        4, ge=1, description="How many of the most recent history summaries the judge sees."
    )


class MemoryJudgeConfig(StrictModel):
    """The judge that decides HAR's r_memory (arXiv 2511.09127) before the reward runs.

    YAML: ``memory_judge: {kind: rule}`` or ``memory_judge: {kind: llm, llm: {base_url: ..., model: ...}}``.
    """

    kind: Literal["rule", "llm"] = Field(
        ...,
        description="'rule': the deterministic RuleMemoryJudge; 'llm': an OpenAI-compatible server (the paper).",
    )
    k: int = Field(4, ge=1, description="rule: the most recent history summaries it looks at.")
    min_ngram: int = Field(2, ge=1, description="rule: length of the token runs shared with a summary.")
    llm: LLMJudgeConfig | None = Field(None, description="llm: the server to ask; required for kind 'llm'.")

    @model_validator(mode="after")
    def _llm_iff_kind_llm(self) -> MemoryJudgeConfig:
        if (self.kind == "llm") != (self.llm is not None):
            raise ValueError("give llm exactly when kind is 'llm'")
        return self


class RewardConfig(StrictModel):
    """Which registered reward the trainer uses, with its keyword options (YAML: ``reward: {name, options}``).

    Example: ``RewardConfig(name="rule", options={"preset": "gui_r1"})``.
    """

    name: str = Field(
        "uis1_step", description="Registered reward name: uis1_step, rule, har, task_success, ..."
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword options passed to the reward function, checked against its annotated parameters.",
    )
    memory_judge: MemoryJudgeConfig | None = Field(
        None,
        description="Judge filling RewardInput.memory_used before the reward runs; the har reward needs one.",
    )

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        if name not in available_rewards():
            raise ValueError(f"unknown reward {name!r}; known: {', '.join(available_rewards())}")
        return name

    @field_validator("options")
    @classmethod
    def _typed_options(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """The options as the reward's parameters type them; an unknown ``name`` is reported on its own."""
        if "name" not in info.data:
            return options
        return validate_options(get_reward(info.data["name"]), options)

    @model_validator(mode="after")
    def _judge_for_har(self) -> RewardConfig:
        # HAR's reward reads the judge's verdict; without a judge every sample would fail on the first call.
        if self.name == "har" and self.memory_judge is None:
            raise ValueError("reward 'har' needs memory_judge (kind rule or llm) to judge r_memory")
        return self

    def __call__(self, sample: RewardInput) -> float:
        """Score one sample with the configured reward (``memory_used`` already judged where needed)."""
        return get_reward(self.name)(sample, **self.options)
