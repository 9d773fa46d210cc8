"""Action matching against an expert step, and the UI-S1 step reward.

UI-S1 semi-online RL (arXiv 2509.11543) decides at every step whether the policy's action "matches" the
expert's (continue), or not (patch or stop), and scores each step with a format/type/accuracy reward.
This module holds that *training* matcher, the geometric and text checks other rewards reuse, and the
step reward.

Match rule (DESIGN.md, "Algorithms"):
    * click-like actions: same type, and the point lies inside the expert box enlarged 1.2x about its
      centre (edges included), or within 0.04 of the expert point in normalised coordinates
      (x / width, y / height, Euclidean);
    * type / open_app / answer: same type, text containment either way (case-insensitive, trimmed);
    * system_button: same button; key / hotkey: same keys (case-insensitive);
    * swipe / scroll: same dominant *finger* direction (see :func:`finger_direction`); a SWIPE and a
      SCROLL are the same action family, so they type-match each other;
    * wait / terminate: type only.

Where this differs from the released code (``verl/utils/reward_score/gui_utils/utils.py``):

* an empty predicted text does not "contain" the expert text (``"" in s`` is True in Python, which would
  reward typing nothing);
* types must agree: the code also lets a ``type`` prediction match an ``answer`` or ``key`` expert;
* the code compares a predicted swipe's finger direction with the expert's direction with up/down
  swapped (the dataset's "down" is a view direction) but left/right not swapped, and applies the same swap
  to a direction it derived from the expert's own swipe coordinates (already a finger direction). Here
  both sides go through :func:`finger_direction`, so every axis and both SWIPE and SCROLL are compared in
  one convention.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from guiagent.rewards.registry import register_reward
from guiagent.rewards.sample import RewardInput
from guiagent.types import Action, ActionType, Direction, PixelBox, Point

BOX_ENLARGE = 1.2  # UI-S1 released code: BBOX_ENLARGE_FACTOR
POINT_THRESHOLD = 0.04  # UI-S1 released code: POINT_DISTANCE_THRESHOLD (normalised units)

POINT_TYPES = frozenset(
    {
        ActionType.CLICK,
        ActionType.LONG_PRESS,
        ActionType.DOUBLE_CLICK,
        ActionType.TRIPLE_CLICK,
        ActionType.RIGHT_CLICK,
        ActionType.MIDDLE_CLICK,
        ActionType.MOVE,
    }
)
TEXT_TYPES = frozenset({ActionType.TYPE, ActionType.OPEN_APP, ActionType.ANSWER})
DIRECTION_TYPES = frozenset({ActionType.SWIPE, ActionType.SCROLL, ActionType.DRAG})


# --- Geometry --------------------------------------------------------------------------------------------
# Frame-free: a box (x1, y1, x2, y2) and points in one frame, device pixels (PixelBox) or normalised
# (the AndroidControl evaluator's NormBox).


def enlarge_box(box: Sequence[float], scale: float) -> tuple[float, float, float, float]:
    """Scale a box about its centre: ``(x1, y1, x2, y2)`` → same centre, ``scale`` × width and height."""
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    hw, hh = (x2 - x1) * scale / 2, (y2 - y1) * scale / 2
    return (cx - hw, cy - hh, cx + hw, cy + hh)


def point_in_box(point: Point, box: Sequence[float], *, inclusive: bool = True) -> bool:
    """Whether ``point`` lies in ``box``; ``inclusive`` decides whether the edges count."""
    x, y = point
    x1, y1, x2, y2 = box
    if inclusive:
        return x1 <= x <= x2 and y1 <= y <= y2
    return x1 < x < x2 and y1 < y < y2


def box_center(box: Sequence[float]) -> Point:
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


def normalized_distance(a: Point, b: Point, screen_size: tuple[int, int]) -> float:
    """Euclidean distance between two device-pixel points after dividing x by width and y by height."""
    width, height = screen_size
    return math.hypot((a[0] - b[0]) / width, (a[1] - b[1]) / height)


def finger_direction(action: Action) -> Direction | None:
    """The dominant direction the finger (or mouse) moves, for SWIPE / DRAG / SCROLL actions.

    SWIPE and DRAG store the finger's movement, so it is ``end - point``. SCROLL stores the direction the
    *view* moves ("scroll down" reveals content further down), so the finger moves the opposite way. Every
    comparison of swipes goes through this one function so the two conventions cannot be mixed up.
    """
    if action.type is ActionType.SCROLL:
        return action.direction.opposite()
    if action.type in (ActionType.SWIPE, ActionType.DRAG):
        return action.swipe_direction()
    return None


# --- Text ------------------------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 answer normalisation: lower-case, drop ASCII punctuation, drop the articles a/an/the,
    collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, reference: str) -> float:
    """Token-level F1 of SQuAD (bag-of-tokens overlap after :func:`normalize_answer`), in [0, 1].

    When either side normalises to no tokens, the score is 1.0 if both do and 0.0 otherwise (SQuAD 2.0's
    convention), so empty text never earns partial credit.
    """
    pred_tokens = normalize_answer(prediction).split()
    ref_tokens = normalize_answer(reference).split()
    if not pred_tokens or not ref_tokens:
        return float(pred_tokens == ref_tokens)
    overlap = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def text_contains(prediction: str | None, reference: str | None, *, empty_matches: bool = False) -> bool:
    """UI-S1's text check (``check_text``): either text contains the other, lower-cased and trimmed.

    Both of UI-S1's matchers use this one rule: the training matcher (``verl/utils/reward_score/gui_utils/
    utils.py``) and the evaluation matcher (``evaluation/qwenvl_utils.py``). They differ from each other
    only in what surrounds it, not in the rule. None counts as empty.

    Args:
        prediction: The predicted text.
        reference: The expert / ground-truth text.
        empty_matches: In UI-S1's code ``""`` is contained in every text, so empty text matches anything;
            True reproduces that (the AndroidControl/SOP evaluator, which must score like the reference).
            False (default, the rewards) lets empty text match only empty text, so that typing nothing is
            never rewarded.
    """
    a, b = (prediction or "").strip().lower(), (reference or "").strip().lower()
    if not empty_matches and (not a or not b):
        return a == b
    return a in b or b in a


# --- The UI-S1 training matcher ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MatchResult:
    """Outcome of matching one predicted action against the expert's.

    Attributes:
        fmt: The prediction parsed into an action at all.
        type_match: Same action type (SWIPE and SCROLL count as one family).
        exact_match: Type and arguments match under the UI-S1 rule.
    """

    fmt: bool
    type_match: bool
    exact_match: bool


def types_match(a: ActionType, b: ActionType) -> bool:
    """Same action type, where SWIPE and SCROLL are one family (both move the content)."""
    family = {ActionType.SCROLL: ActionType.SWIPE}
    return family.get(a, a) is family.get(b, b)


def click_hit(
    point: Point,
    expert: Action,
    expert_box: PixelBox | None,
    screen_size: tuple[int, int],
    *,
    box_scale: float = BOX_ENLARGE,
    threshold: float = POINT_THRESHOLD,
) -> bool:
    """UI-S1's click check: inside the box enlarged ``box_scale``× (edges included), or within
    ``threshold`` normalised distance of the expert's point."""
    if expert_box is not None and point_in_box(point, enlarge_box(expert_box, box_scale)):
        return True
    return expert.point is not None and normalized_distance(point, expert.point, screen_size) <= threshold


def arguments_match(
    pred: Action, expert: Action, expert_box: PixelBox | None, screen_size: tuple[int, int]
) -> bool:
    """Whether ``pred``'s arguments match ``expert``'s under the UI-S1 rule (types assumed to match)."""
    kind = expert.type
    if kind in POINT_TYPES:
        return pred.point is not None and click_hit(pred.point, expert, expert_box, screen_size)
    if kind in TEXT_TYPES:
        return text_contains(pred.text, expert.text)
    if kind in DIRECTION_TYPES:
        return finger_direction(pred) is finger_direction(expert)
    if kind is ActionType.SYSTEM_BUTTON:
        return pred.button is expert.button
    if kind in (ActionType.KEY, ActionType.HOTKEY):
        return tuple(k.lower() for k in pred.keys or ()) == tuple(k.lower() for k in expert.keys or ())
    return True  # wait, terminate: type only


def match_action(
    pred: Action | None, expert: Action, expert_box: PixelBox | None, screen_size: tuple[int, int]
) -> MatchResult:
    """Match a predicted action against the expert step with UI-S1's training rule (arXiv 2509.11543).

    Args:
        pred: The parsed prediction in device pixels, or None when the model's text did not parse.
        expert: The expert action in the same device pixels.
        expert_box: The expert target's ``(x1, y1, x2, y2)`` box in device pixels, if the dataset has one.
        screen_size: ``(width, height)`` of the screenshot, for normalised distances.

    Returns:
        A :class:`MatchResult`; a parse failure is ``MatchResult(False, False, False)``.
    """
    if pred is None:
        return MatchResult(False, False, False)
    if not types_match(pred.type, expert.type):
        return MatchResult(True, False, False)
    return MatchResult(True, True, arguments_match(pred, expert, expert_box, screen_size))


# --- The UI-S1 step reward -------------------------------------------------------------------------------


def uis1_step_reward(
    match: MatchResult, *, think_ok: bool = True, variant: Literal["paper", "code"] = "paper"
) -> float:
    """UI-S1 step reward (arXiv 2509.11543), in [0, 1].

    ``paper`` (default): ``r = 0.1·fmt + 0.4·fmt·type + 0.5·fmt·type·acc`` with binary terms, where fmt
    means the response parsed *and* has its ``<think>`` block (``think_ok``). The possible values are
    0, 0.1, 0.5 and 1.0.

    ``code``: the released ``gui_traj.py``: ``r = 0.1·think + 0.9·a`` with ``a = 0`` when no action
    parsed, 0.1 when it parsed with the wrong type, 0.5 with the right type and 1.0 on an exact match.
    Unlike the paper it is not gated: a correct action without a think block still earns 0.9, and an
    unparseable response with a think block earns 0.1.

    Args:
        match: The matcher's verdict for this step.
        think_ok: The response has a non-empty ``<think>`` block where the format asks for one.
        variant: ``"paper"`` or ``"code"``.
    """
    if variant == "paper":
        fmt = float(match.fmt and think_ok)
        typ, acc = float(match.type_match), float(match.exact_match)
        return 0.1 * fmt + 0.4 * fmt * typ + 0.5 * fmt * typ * acc
    if variant == "code":
        if not match.fmt:
            action_score = 0.0
        elif match.exact_match:
            action_score = 1.0
        elif match.type_match:
            action_score = 0.5
        else:
            action_score = 0.1
        return 0.1 * float(think_ok) + 0.9 * action_score
    raise ValueError(f"unknown UI-S1 reward variant {variant!r} (expected 'paper' or 'code')")


def require_expert(sample: RewardInput, reward: str) -> Action:
    """The sample's expert action, or a clear error naming the reward that needs it."""
    if sample.expert is None:
        raise ValueError(f"reward {reward!r} needs the expert action (RewardInput.expert is None)")
    return sample.expert


@register_reward("uis1_step")
def uis1_step(
    sample: RewardInput, *, variant: Literal["paper", "code"] = "paper", require_think: bool = True
) -> float:
    """Registered UI-S1 step reward: :func:`match_action` then :func:`uis1_step_reward`.

    ``require_think=False`` is for formats without a think block (fmt is then just "it parsed").
    """
    expert = require_expert(sample, "uis1_step")
    match = match_action(sample.action, expert, sample.expert_box, sample.screen_size)
    think_ok = bool(sample.think) or not require_think
    return uis1_step_reward(match, think_ok=think_ok, variant=variant)


@register_reward("action_match")
def action_match(sample: RewardInput) -> float:
    """1 when the action matches the expert's (:func:`match_action`, UI-S1's training rule), else 0: the
    low-level reward of Hi-Agent's hierarchy (arXiv 2510.14388)."""
    expert = require_expert(sample, "action_match")
    return float(match_action(sample.action, expert, sample.expert_box, sample.screen_size).exact_match)
