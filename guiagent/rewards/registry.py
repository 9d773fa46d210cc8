"""Reward functions by name.

The trainer never special-cases a reward: it reads a name from its config and calls what is registered
under it, with one calling convention::

    fn = get_reward("uis1_step")
    r = fn(sample, **options)          # sample: RewardInput, options: the config's keyword options

Options are keyword-only parameters with paper defaults (as for the advantage estimators in
:mod:`guiagent.algos.registry`), so :class:`RewardConfig` can reject a misspelt option or a value of the
wrong type (against the parameter's annotation) before a run starts.

Registering a name twice raises, so two modules can never silently shadow each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import Field, ValidationInfo, field_validator

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

    def __call__(self, sample: RewardInput) -> float:
        """Score one sample with the configured reward."""
        return get_reward(self.name)(sample, **self.options)
