"""Rule-based single-step rewards: one configurable function, with each paper's weighting as a preset.

    r = w_format·fmt + g_f·( w_type·type + g_t·( w_args·args + w_distance·dist ) )

where ``fmt``, ``type`` and ``args`` are 0/1 checks (``args`` may be continuous for text F1 without a
threshold), ``dist`` a distance-graded point score in [0, 1], ``g_f`` is ``fmt`` when
``gate_on_format`` else 1, and ``g_t`` is ``type`` when ``gate_args_on_type`` else 1. Arguments per
expert action type:

    * click-like: the point is in the target box (optionally enlarged, edges included or not); without a
      box, within ``point_fallback_px`` device pixels of the expert point;
    * type / open_app / answer: text F1, containment or exact match (``text_metric``), optionally
      thresholded to 0/1;
    * swipe / scroll / drag: same finger direction; system_button / key: same button / keys; wait,
      terminate: no arguments, so the term equals the type check.

``arg_types="point"`` restricts the argument term to click-like actions (other types then earn no argument
credit), as UI-R1 defines it.

Presets (``RULE_PRESETS``), each citing where its numbers come from:

    * ``ui_r1`` (arXiv 2503.21620, Eq. 3–4): R = R_T + R_C + R_F, R_C = 1 iff the click is in the box.
      The paper defines R_C only for clicks; whether R_C needs the right type is not stated — here it
      does (a long-press inside the box earns no R_C).
    * ``gui_r1`` (arXiv 2504.10458): R = α·R_f + β·(R_act + R_point + R_text), R_text = 1 iff token F1
      > 0.5. The paper's α/β values could not be confirmed; 0.2/0.8 are taken from the released code.
    * ``gui_r1_code``: the released ``r1gui.py``: 0.2·format + 0.8·accuracy, accuracy = 0 on a type
      mismatch, else click strictly inside the box (or < 140 px from the point when the data has no box;
      the code measures that in resized model pixels, here device pixels), F1 >= 0.5 for text, 1 for
      argument-free actions.
    * ``infigui_r1`` (arXiv 2504.14239, §3.2.1 and §4.1): R = 0.1·R_format + 0.9·R_acc, R_acc computed
      only if the format is valid, R_acc = 0.2·R_type + 0.8·R_param, R_param = 1 iff type and all
      parameters match. How parameters are compared is not spelled out: here the point must be in the box
      and text must match exactly (case-insensitive). The sub-goal reward (an LLM scores the reasoning's
      sub-goal, w_s = 0.2) is not part of this rule function.
    * ``gta1`` (arXiv 2507.05791): r = 1 iff x_min <= x <= x_max and y_min <= y <= y_max; no format or
      thinking reward.
    * ``se_gui`` (arXiv 2505.12370, released ``qwen_module.point_reward`` + ``format_reward_rec``):
      format (the tool call with a coordinate parses) + [point in box, edges included] + the dense decay
      ``1 - (d / d_max)^2`` (see :func:`segui_point_decay`), each weight 1 (TRL sums reward functions).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from guiagent.config import StrictModel
from guiagent.errors import ConfigError, DataError
from guiagent.rewards.matching import (
    DIRECTION_TYPES,
    POINT_TYPES,
    TEXT_TYPES,
    arguments_match,
    box_center,
    enlarge_box,
    point_in_box,
    require_expert,
    text_contains,
    token_f1,
    types_match,
)
from guiagent.rewards.registry import register_reward
from guiagent.rewards.sample import RewardInput
from guiagent.types import Action, ActionType, PixelBox, Point


class RuleRewardConfig(StrictModel):
    """Weights and thresholds of the rule-based single-step reward (see the module docstring)."""

    format_weight: float = Field(
        0.0,
        ge=0,
        description="Weight of the format term (1 iff the response parsed, with its think block if required).",
    )
    type_weight: float = Field(
        1.0, ge=0, description="Weight of the action-type term (1 iff the type matches the expert's)."
    )
    args_weight: float = Field(
        1.0, ge=0, description="Weight of the argument term (point in box, text, direction, button)."
    )
    distance_weight: float = Field(
        0.0,
        ge=0,
        description="Weight of the distance-graded point term (SE-GUI decay, click-like actions only).",
    )
    gate_on_format: bool = Field(
        False, description="Type/argument/distance terms count only when the format term is 1."
    )
    gate_args_on_type: bool = Field(
        True, description="Argument and distance terms count only when the type matches."
    )
    arg_types: Literal["all", "point"] = Field(
        "all", description="'point': only click-like actions have an argument term."
    )
    box_scale: float = Field(
        1.0,
        gt=0,
        description="Enlarge the target box about its centre by this factor before the in-box check.",
    )
    box_inclusive: bool = Field(True, description="Points on the box edge count as inside.")
    point_fallback_px: float | None = Field(
        None,
        ge=0,
        description="Without a target box: hit iff within this many device pixels of the expert point "
        "(strictly, when box_inclusive is False); None requires a box.",
    )
    text_metric: Literal["f1", "contains", "exact"] = Field(
        "f1",
        description="Text check: SQuAD token F1, containment either way, or case-insensitive exact match.",
    )
    text_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="If set, the text score becomes 1 when it reaches this value and 0 otherwise.",
    )
    require_think: bool = Field(False, description="The format term also needs a non-empty <think> block.")

    @model_validator(mode="after")
    def _some_weight(self) -> RuleRewardConfig:
        if self.format_weight + self.type_weight + self.args_weight + self.distance_weight <= 0:
            raise ValueError("at least one reward weight must be positive")
        return self

    def max_reward(self) -> float:
        """The largest value :func:`rule_reward` can return under this config."""
        return self.format_weight + self.type_weight + self.args_weight + self.distance_weight


RULE_PRESETS: dict[str, RuleRewardConfig] = {
    "ui_r1": RuleRewardConfig(
        format_weight=1.0, type_weight=1.0, args_weight=1.0, arg_types="point", require_think=True
    ),
    "gui_r1": RuleRewardConfig(
        format_weight=0.2,
        type_weight=0.8,
        args_weight=0.8,
        gate_args_on_type=False,
        box_inclusive=False,
        text_metric="f1",
        text_threshold=0.5,
        require_think=True,
    ),
    "gui_r1_code": RuleRewardConfig(
        format_weight=0.2,
        type_weight=0.0,
        args_weight=0.8,
        box_inclusive=False,
        point_fallback_px=140.0,
        text_metric="f1",
        text_threshold=0.5,
        require_think=True,
    ),
    "infigui_r1": RuleRewardConfig(
        format_weight=0.1,
        type_weight=0.9 * 0.2,
        args_weight=0.9 * 0.8,
        gate_on_format=True,
        text_metric="exact",
        require_think=True,
    ),
    "gta1": RuleRewardConfig(format_weight=0.0, type_weight=0.0, args_weight=1.0, arg_types="point"),
    "se_gui": RuleRewardConfig(
        format_weight=1.0, type_weight=0.0, args_weight=1.0, distance_weight=1.0, arg_types="point"
    ),
}


def rule_preset(name: str) -> RuleRewardConfig:
    """The preset config called ``name``.

    Raises:
        ConfigError: unknown preset (the message lists the presets).
    """
    try:
        return RULE_PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown rule-reward preset {name!r}; presets: {', '.join(sorted(RULE_PRESETS))}"
        ) from None


def segui_point_decay(point: Point, box: PixelBox, screen_size: tuple[int, int]) -> float:
    """SE-GUI's dense point term (arXiv 2505.12370, released code), in [0, 1].

    In coordinates normalised per axis (x / width, y / height): d is the distance from the point to the
    box centre, d_max the distance from the box centre to the farthest image corner, and the term is
    ``1 - (d / d_max)^2`` when d <= 1, else 0 (the code's guard is on the raw, not the relative, distance).
    """
    width, height = screen_size
    cx, cy = box_center(box)
    ncx, ncy = cx / width, cy / height
    d = math.hypot(point[0] / width - ncx, point[1] / height - ncy)
    d_max = max(math.hypot(ncx - ex, ncy - ey) for ex in (0.0, 1.0) for ey in (0.0, 1.0))
    if not d <= 1 or d_max == 0:  # "not <=" also sends a NaN distance to 0
        return 0.0
    return max(0.0, 1.0 - (d / d_max) ** 2)


def _text_score(pred: str, ref: str, config: RuleRewardConfig) -> float:
    if config.text_metric == "f1":
        score = token_f1(pred, ref)
    elif config.text_metric == "contains":
        score = float(text_contains(pred, ref))
    else:
        score = float(pred.strip().lower() == ref.strip().lower())
    if config.text_threshold is not None:
        return float(score >= config.text_threshold)
    return score


def _point_hit(point: Point, expert: Action, box: PixelBox | None, config: RuleRewardConfig) -> bool:
    if box is not None:
        return point_in_box(point, enlarge_box(box, config.box_scale), inclusive=config.box_inclusive)
    if config.point_fallback_px is None or expert.point is None:
        raise DataError(
            "expert_box is missing: this rule reward needs the target element's box "
            "(or set point_fallback_px to compare against the expert point)"
        )
    distance = math.hypot(point[0] - expert.point[0], point[1] - expert.point[1])
    # GUI-R1's released code uses a strict "< 140" for its point fallback.
    return (
        distance < config.point_fallback_px
        if not config.box_inclusive
        else distance <= config.point_fallback_px
    )


def _args_score(
    pred: Action, expert: Action, box: PixelBox | None, screen_size: tuple[int, int], config: RuleRewardConfig
) -> float | None:
    kind = expert.type
    if kind in POINT_TYPES:
        return float(pred.point is not None and _point_hit(pred.point, expert, box, config))
    if config.arg_types == "point":
        return 0.0
    if kind in TEXT_TYPES:
        return _text_score(pred.text or "", expert.text or "", config)
    if kind in DIRECTION_TYPES or kind in (ActionType.SYSTEM_BUTTON, ActionType.KEY, ActionType.HOTKEY):
        return float(arguments_match(pred, expert, box, screen_size))
    return None  # wait, terminate: no arguments to get wrong


def rule_reward(
    pred: Action | None,
    expert: Action,
    expert_box: PixelBox | None,
    screen_size: tuple[int, int],
    config: RuleRewardConfig,
    *,
    think_ok: bool = True,
) -> float:
    """Rule-based reward of one predicted action, in ``[0, config.max_reward()]``.

    Args:
        pred: Parsed prediction in device pixels, None when the text did not parse (then only a format
            term could be earned, and it is 0 too).
        expert: Expert action in the same device pixels.
        expert_box: Target element box ``(x1, y1, x2, y2)`` in device pixels, when the data has one.
        screen_size: ``(width, height)`` of the screenshot.
        config: Weights and thresholds, e.g. ``RULE_PRESETS["gui_r1"]``.
        think_ok: The response has its ``<think>`` block (used when ``config.require_think``).

    Raises:
        DataError: a click-like expert step has no box and the config has no point fallback.
    """
    if pred is None:
        return 0.0
    fmt = float(think_ok or not config.require_think)
    same_type = float(types_match(pred.type, expert.type))
    args = _args_score(pred, expert, expert_box, screen_size, config)
    if args is None:  # an argument-free action: its "arguments" are right exactly when its type is
        args = same_type
    dist = 0.0
    if config.distance_weight and expert.type in POINT_TYPES and pred.point is not None:
        if expert_box is None and expert.point is None:
            raise DataError("expert_box is missing: the distance-graded point term needs a target")
        # Without a box the target is the expert point itself (a zero-size box).
        target = expert_box if expert_box is not None else (*expert.point, *expert.point)
        dist = segui_point_decay(pred.point, target, screen_size)
    gate_f = fmt if config.gate_on_format else 1.0
    gate_t = same_type if config.gate_args_on_type else 1.0
    inner = config.args_weight * args + config.distance_weight * dist
    return config.format_weight * fmt + gate_f * (config.type_weight * same_type + gate_t * inner)


@register_reward("rule")
def rule(
    sample: RewardInput, *, preset: str | None = None, config: RuleRewardConfig | dict | None = None,
    require_think: bool = True,
) -> float:
    """Registered rule reward: give exactly one of ``preset`` (a name in ``RULE_PRESETS``) or ``config``.

    ``require_think``: the format term needs a ``<think>`` block (the papers' own formats); False when the
    prompt's answer format has none (the Qwen tool-call formats), so a parsed answer meets the format.
    """
    if (preset is None) == (config is None):
        raise ConfigError("rule reward: give exactly one of 'preset' or 'config'")
    if preset is not None:
        cfg = rule_preset(preset)
    else:
        cfg = config if isinstance(config, RuleRewardConfig) else RuleRewardConfig.model_validate(config)
    expert = require_expert(sample, "rule")
    return rule_reward(
        sample.action, expert, sample.expert_box, sample.screen_size, cfg,
        think_ok=bool(sample.think) or not require_think,
    )
