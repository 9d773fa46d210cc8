"""The schema of a whole guiagent config file: every section, each owned by the module it configures.

``guiagent config validate FILE`` checks files against :class:`GuiAgentConfig`
(``load_config(path, GuiAgentConfig)``). It lives apart from :mod:`guiagent.config` because the sections
import the ``StrictModel`` base from there, and sits at the top of the import layers with the CLI: it
imports every section, from the action space up to the rollouts.

One action space per file: the top-level ``actions`` section is the answer format and resize bounds of
the policy. The prompt sections (``prompt`` and ``semi_online.prompt``) take it when they leave out their
own ``actions``, and a file whose prompt sections name a different one is refused, so a prompt can never
state a format or resolution that the parser does not read.

One reward per file, the same way: a top-level ``reward`` is what the rollout sections (``semi_online``)
score with when they leave out their own, and a section naming a different one is refused. Without a
top-level ``reward`` each rollout kind keeps its own default.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from guiagent.actions import ActionSpaceConfig
from guiagent.algos.config import AlgoConfig
from guiagent.config import StrictModel
from guiagent.envs.android.config import AndroidEnvConfig, AppiumEnvConfig
from guiagent.farm.config import FarmConfig
from guiagent.policy.prompts import PromptConfig
from guiagent.policy.serve import ServerConfig
from guiagent.policy.sync import SyncConfig
from guiagent.rewards.registry import RewardConfig
from guiagent.rollout.grounding import GroundingConfig
from guiagent.rollout.hierarchical import HierarchicalConfig
from guiagent.rollout.online import OnlineConfig
from guiagent.rollout.semi_online import SemiOnlineConfig
from guiagent.trainer.config import DataConfig, EvaluationConfig, OptimizerConfig, SftConfig, TrainerConfig

# Sections whose prompt takes the top-level action space when it names none.
PROMPT_SECTIONS = ("semi_online", "hierarchical", "grounding")


class GuiAgentConfig(StrictModel):
    """A whole guiagent config file. Every section is optional and has documented defaults."""

    name: str = Field("guiagent", description="Run or experiment name, used in output paths and reports.")
    seed: int = Field(0, description="Global seed for samplers, task selection and initial weights.")
    output_dir: str = Field("runs", description="Directory for checkpoints, trajectories and reports.")
    actions: ActionSpaceConfig = Field(default_factory=ActionSpaceConfig, description="Action format and coordinates.")
    prompt: PromptConfig = Field(default_factory=PromptConfig, description="How policy prompts are built.")
    server: ServerConfig | None = Field(None, description="The vLLM policy server `guiagent serve` starts.")
    reward: RewardConfig | None = Field(
        None,
        description="The registered reward and its options, taken by every rollout section that leaves out "
        "its own; None: each rollout kind's default.",
    )
    algo: AlgoConfig = Field(default_factory=AlgoConfig, description="Advantage estimator, loss, replay, filters.")
    semi_online: SemiOnlineConfig = Field(
        default_factory=SemiOnlineConfig, description="UI-S1 semi-online rollouts (arXiv 2509.11543)."
    )
    android: AndroidEnvConfig | None = Field(None, description="An Android device driven over adb.")
    appium: AppiumEnvConfig | None = Field(None, description="An Android device driven through Appium.")
    farm: FarmConfig | None = Field(None, description="The environment farm: broker, trajectory store, episode limits.")
    online: OnlineConfig = Field(default_factory=OnlineConfig, description="Online GRPO groups on the farm.")
    hierarchical: HierarchicalConfig = Field(
        default_factory=HierarchicalConfig, description="Hi-Agent hierarchical rollouts (arXiv 2510.14388).")
    grounding: GroundingConfig = Field(default_factory=GroundingConfig, description="Grounding GRPO rollouts.")
    trainer: TrainerConfig | None = Field(None, description="The training run (`guiagent train`).")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig, description="AdamW and its schedule.")
    sft: SftConfig = Field(default_factory=SftConfig, description="SFT warm-up before RL.")
    data: DataConfig | None = Field(None, description="Expert data and online training tasks.")
    evaluation: EvaluationConfig | None = Field(None, description="Held-out evaluation during training.")
    sync: SyncConfig = Field(default_factory=SyncConfig, description="How the served policy gets new weights.")

    @model_validator(mode="before")
    @classmethod
    def _inherit_actions(cls, data: Any) -> Any:
        """Prompt sections without their own ``actions`` take the top-level one."""
        if not isinstance(data, dict) or "actions" not in data:
            return data
        data = dict(data)
        data["prompt"] = _with_actions(data.get("prompt"), data["actions"])
        for name in PROMPT_SECTIONS:
            section = data.get(name, {})
            if isinstance(section, dict):
                data[name] = {**section, "prompt": _with_actions(section.get("prompt"), data["actions"])}
        return data

    @model_validator(mode="before")
    @classmethod
    def _inherit_reward(cls, data: Any) -> Any:
        """Rollout sections without their own ``reward`` take the top-level one."""
        if not isinstance(data, dict) or data.get("reward") is None:
            return data
        semi = data.get("semi_online", {})
        if isinstance(semi, dict) and "reward" not in semi:
            data = {**data, "semi_online": {**semi, "reward": data["reward"]}}
        return data

    @model_validator(mode="after")
    def _one_reward(self) -> GuiAgentConfig:
        if self.reward is not None and self.semi_online.reward != self.reward:
            raise ValueError(
                f"semi_online.reward ({self.semi_online.reward.model_dump(mode='json')}) differs from reward "
                f"({self.reward.model_dump(mode='json')}); a file has one reward: set it in reward and leave "
                "semi_online.reward out"
            )
        return self

    @model_validator(mode="after")
    def _one_action_space(self) -> GuiAgentConfig:
        sections = [("prompt.actions", self.prompt.actions)] + [
            (f"{name}.prompt.actions", getattr(self, name).prompt.actions) for name in PROMPT_SECTIONS]
        for path, actions in sections:
            if actions != self.actions:
                raise ValueError(
                    f"{path} ({actions.model_dump()}) differs from actions ({self.actions.model_dump()}); "
                    f"prompts and the parser share one action space: set it in actions and leave {path} out"
                )
        return self


def _with_actions(section: Any, actions: Any) -> Any:
    """``section`` (a prompt section as loaded) with ``actions`` filled in when it has none."""
    if section is None:
        return {"actions": actions}
    if isinstance(section, dict) and "actions" not in section:
        return {**section, "actions": actions}
    return section
