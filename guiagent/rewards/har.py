"""HAR: the history-aware hybrid reward (arXiv 2511.09127, "History-Aware Reasoning for GUI Agents").

    r = fmt × (r_action + γ · r_memory),    γ = 0.2

``fmt`` is 1 iff the response parsed (with its reasoning block), ``r_memory`` is 1 iff the reasoning uses
the interaction history, as decided by a :class:`~guiagent.rewards.memory.MemoryJudge` beforehand (so
this function stays pure), and ``r_action`` is:

* click-like actions: distance graded. The paper describes a "multi-scale" Euclidean reward — a hit decided
  on normalised coordinates earns 1 plus a precision bonus from the absolute distance, a miss earns partial
  credit from the absolute distance — but its exact formula could not be found (the released repository
  has no reward code). This implementation's choice, with d the device-pixel distance from the point to
  the target centre (box centre, or the expert point without a box) and ``F = exp(-d / precision_scale_px)``:

      hit  (point in the target box, edges included; without a box, normalised distance <= hit_threshold):
           r_action = 1 + F            ∈ (1, 2]
      miss (right type):  r_action = miss_credit · F   ∈ [0, miss_credit)
      wrong type:         r_action = 0

  so any hit outranks any miss and closer is always better.
* every other action: 1 if it matches the expert under UI-S1's rule (:func:`match_action`), else 0.

Range: [0, 2 + γ].
"""

from __future__ import annotations

import math

from pydantic import Field

from guiagent.config import StrictModel
from guiagent.rewards.matching import (
    POINT_TYPES,
    box_center,
    match_action,
    normalized_distance,
    point_in_box,
    require_expert,
    types_match,
)
from guiagent.rewards.registry import register_reward
from guiagent.rewards.sample import RewardInput
from guiagent.types import Action, PixelBox


class HarConfig(StrictModel):
    """Knobs of the HAR reward (defaults: γ from the paper, the rest this implementation's choice)."""

    gamma: float = Field(0.2, ge=0, description="Weight γ of the memory term r_memory.")
    hit_threshold: float = Field(
        0.04,
        gt=0,
        description="Without a target box, a click within this normalised distance of the expert point is a hit.",
    )
    precision_scale_px: float = Field(
        100.0, gt=0, description="Device-pixel scale of the precision bonus exp(-d / scale)."
    )
    miss_credit: float = Field(
        0.5, ge=0, le=1, description="Largest partial credit a miss can earn (times the distance factor)."
    )
    require_think: bool = Field(True, description="fmt also needs a non-empty reasoning (<think>) block.")


def har_action_reward(
    pred: Action | None,
    expert: Action,
    expert_box: PixelBox | None,
    screen_size: tuple[int, int],
    config: HarConfig,
) -> float:
    """HAR's r_action for one prediction, in [0, 2] (see the module docstring for the formula).

    Args:
        pred: Parsed prediction in device pixels (None: did not parse → 0).
        expert: Expert action in the same device pixels.
        expert_box: Target element box ``(x1, y1, x2, y2)``, when known.
        screen_size: ``(width, height)`` of the screenshot.
        config: The HAR knobs.
    """
    if pred is None:
        return 0.0
    if expert.type not in POINT_TYPES or (expert.point is None and expert_box is None):
        return float(match_action(pred, expert, expert_box, screen_size).exact_match)
    if (
        not types_match(pred.type, expert.type)
        or pred.point is None
        or not all(map(math.isfinite, pred.point))
    ):
        return 0.0  # parsers reject non-finite coordinates; a hand-built Action might not
    target = box_center(expert_box) if expert_box is not None else expert.point
    if expert_box is not None:
        hit = point_in_box(pred.point, expert_box)
    else:
        hit = normalized_distance(pred.point, expert.point, screen_size) <= config.hit_threshold
    precision = math.exp(
        -math.hypot(pred.point[0] - target[0], pred.point[1] - target[1]) / config.precision_scale_px
    )
    return 1.0 + precision if hit else config.miss_credit * precision


def har_reward(fmt: bool, r_action: float, memory_used: bool, gamma: float = 0.2) -> float:
    """``fmt × (r_action + γ·r_memory)`` (arXiv 2511.09127): a format failure zeroes everything."""
    return float(fmt) * (r_action + gamma * float(memory_used))


@register_reward("har")
def har(sample: RewardInput, *, config: HarConfig | dict | None = None) -> float:
    """Registered HAR reward. ``sample.memory_used`` must already hold a memory judge's verdict.

    Raises:
        ValueError: no expert action, or ``memory_used`` was never judged.
    """
    cfg = config if isinstance(config, HarConfig) else HarConfig.model_validate(config or {})
    expert = require_expert(sample, "har")
    if sample.memory_used is None:
        raise ValueError(
            "reward 'har' needs RewardInput.memory_used: run a MemoryJudge on the reasoning first"
        )
    fmt = sample.action is not None and (bool(sample.think) or not cfg.require_think)
    r_action = har_action_reward(sample.action, expert, sample.expert_box, sample.screen_size, cfg)
    return har_reward(fmt, r_action, sample.memory_used, cfg.gamma)
