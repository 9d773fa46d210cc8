"""Config section for the algorithms: which estimator and loss, their options, replay and filters."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from guiagent.algos.registry import get_advantage, get_loss, validate_options
from guiagent.config import StrictModel
from guiagent.errors import ConfigError


class ReplayConfig(StrictModel):
    """ARPO experience replay (arXiv 2505.16282); the fields are :class:`ReplayBuffer`'s arguments."""

    enabled: bool = Field(False, description="Inject stored successes into all-failure GRPO groups.")
    capacity: int = Field(8, ge=1, description="Successful trajectories kept per task (FIFO).")
    success_threshold: float = Field(0.1, description="A trajectory is a success when its reward exceeds this.")
    fail_std: float = Field(0.05, ge=0, description="A group is all-failure when its reward std is below this ...")
    fail_mean: float = Field(0.2, description="... and its mean reward is below this.")


class AlgoConfig(StrictModel):
    """Advantage estimator, policy loss, replay and dynamic sampling, looked up by name.

    Options are checked against the registered function's keyword options (names, annotated types) when
    the config loads, so a misspelt option or a wrong value fails before a run starts (this imports torch).
    """

    advantage: str = Field("grpo", description="Registered advantage estimator: grpo, rloo, uis1, gigpo, hi_agent.")
    advantage_options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword options of the estimator (e.g. gamma, omega, norm); unset = paper default."
    )
    loss: str = Field("ppo_clip", description="Registered policy loss.")
    loss_options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword options of the loss (clip_low, clip_high, dual_clip, kl_coef, ...)."
    )
    replay: ReplayConfig = Field(default_factory=ReplayConfig, description="ARPO experience replay.")
    dynamic_sampling_eta: float | None = Field(
        None, ge=0, description="UI-S1 dynamic sampling: keep a task only if its rollouts' reward std exceeds this (paper: 0.3); None = off."
    )

    @field_validator("advantage", "loss")
    @classmethod
    def _registered(cls, name: str, info: ValidationInfo) -> str:
        # ConfigError from the registry becomes a ValueError so pydantic reports it with its key path.
        try:
            (get_advantage if info.field_name == "advantage" else get_loss)(name)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return name

    @field_validator("advantage_options", "loss_options")
    @classmethod
    def _typed_options(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """The options as the registered function types them; fields validate in order, so its name is
        in ``info.data`` unless it was refused (then that error is reported on its own)."""
        kind = "advantage" if info.field_name == "advantage_options" else "loss"
        if kind not in info.data:
            return options
        return validate_options((get_advantage if kind == "advantage" else get_loss)(info.data[kind]), options)
