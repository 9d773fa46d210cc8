"""Rewards: action matching, UI-S1 step rewards, rule-based presets, HAR, task success.

Every reward is a pure function registered by name (:func:`get_reward`). Rollouts score through one
path: :func:`parse_response` turns model text into a :class:`ParsedResponse`, :func:`expert_step_sample`
(or :func:`sample_from_response`) into a :class:`RewardInput`, and a :class:`Rewarder` built from the run's
:class:`RewardConfig` runs its memory judge (HAR) and then ``get_reward(name)(sample, **options)``.
Importing this package registers:

=================  =====================================================================================
``uis1_step``      UI-S1 step reward, paper or released-code variant (arXiv 2509.11543)
``rule``           rule-based single-step reward; presets ui_r1, gui_r1, gui_r1_code, infigui_r1, gta1, se_gui
``har``            HAR history-aware reward (arXiv 2511.09127); needs ``RewardConfig.memory_judge``
``task_success``   online task success from the environment's Outcome
=================  =====================================================================================
"""

from guiagent.rewards.format import (
    ParsedResponse,
    extract_think,
    format_has_think,
    parse_response,
    sample_from_response,
)
from guiagent.rewards.har import HarConfig, har_action_reward, har_reward
from guiagent.rewards.matching import (
    MatchResult,
    finger_direction,
    match_action,
    text_contains,
    token_f1,
    uis1_step_reward,
)
from guiagent.rewards.memory import (
    LLMJudgeConfig,
    LLMMemoryJudge,
    MemoryJudge,
    RuleMemoryJudge,
    build_memory_judge,
    with_memory_verdicts,
)
from guiagent.rewards.registry import (
    MemoryJudgeConfig,
    RewardConfig,
    available_rewards,
    get_reward,
    register_reward,
)
from guiagent.rewards.rules import RULE_PRESETS, RuleRewardConfig, rule_preset, rule_reward, segui_point_decay
from guiagent.rewards.sample import RewardInput
from guiagent.rewards.scoring import Rewarder, expert_step_sample
from guiagent.rewards.task import task_success_reward

__all__ = [
    "RULE_PRESETS",
    "HarConfig",
    "LLMJudgeConfig",
    "LLMMemoryJudge",
    "MatchResult",
    "MemoryJudge",
    "MemoryJudgeConfig",
    "ParsedResponse",
    "RewardConfig",
    "RewardInput",
    "Rewarder",
    "RuleMemoryJudge",
    "RuleRewardConfig",
    "available_rewards",
    "build_memory_judge",
    "expert_step_sample",
    "extract_think",
    "finger_direction",
    "format_has_think",
    "get_reward",
    "har_action_reward",
    "har_reward",
    "match_action",
    "parse_response",
    "register_reward",
    "rule_preset",
    "rule_reward",
    "sample_from_response",
    "segui_point_decay",
    "task_success_reward",
    "text_contains",
    "token_f1",
    "uis1_step_reward",
    "with_memory_verdicts",
]
