"""Android in the Wild (AITW, arXiv:2307.10088): the reference action matcher and SeeClick's split metrics.

:func:`check_actions_match` reproduces ``check_actions_match`` of google-research
``android_in_the_wild/action_matching.py`` (a JAX function) with NumPy, in float32 like the
reference (JAX computes in float32 unless x64 is enabled):

- If either action is not ``DUAL_POINT`` (type, back, home, enter, complete, impossible), the two
  match iff their action types are equal. Typed text is *not* compared.
- A dual-point action is a tap iff ‖touch − lift‖ ≤ 0.04 (normalised screen units).
  A tap and a swipe never match.
- Two taps match if both touch points lie in one UI annotation box after enlargement, or if the
  touch points are ≤ 0.14 apart. The enlargement is the reference's ``_resize_annotation_bounding_boxes``
  taken literally: with ``Δh = 1.4·h`` and ``Δw = 1.4·w`` the box becomes
  ``top = max(0, y − Δh/2)``, ``left = max(0, x − Δw/2)``, ``height = min(1, h + Δh)``,
  ``width = min(1, w + Δw)`` — each side moves out by 0.7·size about the original box, and the top /
  left edges are clamped at the screen edge *without* shifting the far edge back (so a clamped box
  reaches ``2.4·h`` below 0). Containment includes the edges.
- Two swipes match iff their main axes (argmax of |lift − touch| over (y, x); a tie picks y) are
  equal; the direction along the axis is ignored.

One deliberate difference: the reference takes ``jnp.max`` over the per-box hits, which raises on a
screen with no annotations; here a screen without annotations has no box to share, so taps fall back
to the 0.14 distance.

SeeClick's AITW metrics (arXiv:2401.10935, ``agent_tasks/aitw_test.py`` of njucckevin/SeeClick), per
subset (General, Install, GoogleApps, Single, WebShopping):

- action accuracy = matched steps / steps; type accuracy = steps whose AITW action type equals the
  ground truth's (scrolls are ``DUAL_POINT`` on both sides) / steps;
- text accuracy over ground-truth ``TYPE`` steps: lower-cased predicted text equals, is contained in,
  or contains the lower-cased ground-truth text. SeeClick gives a non-``TYPE`` prediction the empty
  text, which is contained in every string, so such steps count as correct; ``strict_text=True``
  counts only ``TYPE`` predictions;
- click / scroll accuracy: action accuracy over ground-truth taps / swipes;
- overall score = the mean of the subsets' action accuracies.

In SeeClick a response that does not parse counts in the step total (wrong) but in none of the text /
click / scroll denominators; here missing predictions are treated the same way and reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from guiagent.actions.convert import AITW_TAP_DISTANCE, AitwAction, AitwActionType, to_aitw
from guiagent.errors import ActionError
from guiagent.types import Action, ActionType, Direction

TAP_DISTANCE_THRESHOLD = 0.14  # fraction of the screen
SWIPE_DISTANCE_THRESHOLD = (
    AITW_TAP_DISTANCE  # 0.04: at or below this touch–lift distance a dual point is a tap
)
ANNOTATION_AUGMENT_FRACTION = 1.4
SUBSETS = ("general", "install", "googleapps", "single", "webshopping")
PROTOCOL = "aitw-seeclick"
DATASETS = ("aitw",)  # the manifest datasets this protocol scores
REFERENCE = (
    "google-research/android_in_the_wild action_matching.check_actions_match (float32); "
    "SeeClick agent_tasks/aitw_test.py metrics, overall = mean over subsets (arXiv:2401.10935)"
)


_F32 = np.float32


def _yx(point: Sequence[float]) -> np.ndarray:
    return np.asarray(point, dtype=_F32).reshape(2)


def _distance(a: np.ndarray, b: np.ndarray) -> np.float32:
    """Euclidean norm of ``a - b`` in float32, as ``jnp.linalg.norm`` computes it."""
    d = a - b
    return np.sqrt(d[0] * d[0] + d[1] * d[1], dtype=_F32)


def is_tap_action(touch_yx: Sequence[float], lift_yx: Sequence[float]) -> bool:
    """True iff the touch–lift distance is at most 0.04 (float32, both sides of the comparison)."""
    return bool(_distance(_yx(touch_yx), _yx(lift_yx)) <= _F32(SWIPE_DISTANCE_THRESHOLD))


def resize_annotation_boxes(
    annotations_yxhw: Sequence[Sequence[float]], augment: float = ANNOTATION_AUGMENT_FRACTION
) -> np.ndarray:
    """Enlarge (y, x, h, w) boxes exactly as the reference's ``_resize_annotation_bounding_boxes``.

    Args:
        annotations_yxhw: N rows of (top, left, height, width), normalised.
        augment: The augment fraction (1.4 in the reference).

    Returns:
        float32 array of shape (N, 4): (top, left, height, width) of the enlarged boxes.
    """
    boxes = np.asarray(annotations_yxhw, dtype=_F32).reshape(-1, 4)
    dh = _F32(augment) * boxes[:, 2]
    dw = _F32(augment) * boxes[:, 3]
    return np.stack(
        [
            np.maximum(_F32(0), boxes[:, 0] - dh / _F32(2)),
            np.maximum(_F32(0), boxes[:, 1] - dw / _F32(2)),
            np.minimum(_F32(1), boxes[:, 2] + dh),
            np.minimum(_F32(1), boxes[:, 3] + dw),
        ],
        axis=1,
    )


def _in_boxes(yx: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Per-box containment of a (y, x) point, edges included. Shape (N,)."""
    top, left, height, width = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    return (yx[0] >= top) & (yx[0] <= top + height) & (yx[1] >= left) & (yx[1] <= left + width)


def check_actions_match(
    touch1_yx: Sequence[float],
    lift1_yx: Sequence[float],
    type1: int,
    touch2_yx: Sequence[float],
    lift2_yx: Sequence[float],
    type2: int,
    annotations_yxhw: Sequence[Sequence[float]],
    tap_distance_threshold: float = TAP_DISTANCE_THRESHOLD,
    augment: float = ANNOTATION_AUGMENT_FRACTION,
) -> bool:
    """Whether two AITW actions lead to the same screen, by the reference's rules (see module docstring).

    Args:
        touch1_yx: First action's touch point (y, x), normalised to [0, 1].
        lift1_yx: First action's lift point (y, x).
        type1: First action's AITW action type (:class:`AitwActionType` value).
        touch2_yx: Second action's touch point.
        lift2_yx: Second action's lift point.
        type2: Second action's type.
        annotations_yxhw: The screen's UI annotation boxes, N rows of (y, x, h, w), normalised.
        tap_distance_threshold: Taps this close (or closer) match regardless of boxes.
        augment: Box augment fraction.

    Returns:
        True iff the actions match.
    """
    if int(type1) != AitwActionType.DUAL_POINT or int(type2) != AitwActionType.DUAL_POINT:
        return int(type1) == int(type2)
    t1, l1, t2, l2 = _yx(touch1_yx), _yx(lift1_yx), _yx(touch2_yx), _yx(lift2_yx)
    tap1, tap2 = is_tap_action(t1, l1), is_tap_action(t2, l2)
    if tap1 != tap2:
        return False
    if tap1:
        boxes = resize_annotation_boxes(annotations_yxhw, augment)
        if bool(np.any(_in_boxes(t1, boxes) & _in_boxes(t2, boxes))):
            return True
        return bool(_distance(t1, t2) <= _F32(tap_distance_threshold))
    axis1 = int(np.argmax(np.abs(l1 - t1)))
    axis2 = int(np.argmax(np.abs(l2 - t2)))
    return axis1 == axis2


# --- Canonical actions in AITW's terms ----------------------------------------------------------------

# SeeClick's fixed scroll gestures, as (touch_yx, lift_yx) per direction the *view* moves: "scroll
# down" puts the finger at y=0.8 and lifts it at y=0.2 (the finger moves up).
_SCROLL_YX = {
    Direction.DOWN: ((0.8, 0.5), (0.2, 0.5)),
    Direction.UP: ((0.2, 0.5), (0.8, 0.5)),
    Direction.LEFT: ((0.5, 0.2), (0.5, 0.8)),
    Direction.RIGHT: ((0.5, 0.8), (0.5, 0.2)),
}


def aitw_action_of(action: Action, width: int, height: int) -> AitwAction:
    """Express a canonical action (device pixels on a ``width`` × ``height`` screen) as SeeClick scores it.

    A scroll of the view becomes SeeClick's fixed gesture for its direction, a long press a tap at its
    point, the enter key ``PRESS_ENTER``; everything else goes through :func:`guiagent.actions.to_aitw`.
    An action AITW cannot express gets ``action_type = -1``, which never matches a ground truth.
    """
    if action.type is ActionType.SCROLL:
        touch, lift = _SCROLL_YX[action.direction]
        return AitwAction(AitwActionType.DUAL_POINT, touch, lift)
    if action.type is ActionType.LONG_PRESS:
        yx = (action.point[1] / height, action.point[0] / width)
        return AitwAction(AitwActionType.DUAL_POINT, yx, yx)
    if action.type is ActionType.KEY and action.keys == ("enter",):
        return AitwAction(AitwActionType.PRESS_ENTER)
    try:
        return to_aitw(action, width, height)
    except ActionError:  # not expressible in AITW (hotkey, answer, a swipe shorter than a tap, ...)
        return AitwAction(-1)


def ground_truth_of(info: dict) -> tuple[AitwAction, list[list[float]]]:
    """The ground-truth action and annotation boxes from a store step's ``info["aitw"]``.

    Steps converted from SeeClick's split JSON carry ``action_type_text``; as in SeeClick's
    ``action_2_format``, their scrolls ("scroll down", ...) are replaced by the fixed gesture of that
    direction, so that both sides of the comparison are built the same way.

    Raises:
        KeyError, TypeError, ValueError: a field is missing or malformed (callers name the record).
    """
    gt = AitwAction(
        int(info["action_type"]),
        tuple(map(float, info["touch_yx"])),
        tuple(map(float, info["lift_yx"])),
        str(info.get("typed_text") or ""),
    )
    label = str(info.get("action_type_text") or "")
    if gt.action_type == AitwActionType.DUAL_POINT and label.startswith("scroll "):
        touch, lift = _SCROLL_YX[Direction(label.removeprefix("scroll ").strip())]
        gt = AitwAction(AitwActionType.DUAL_POINT, touch, lift, gt.typed_text)
    return gt, [list(map(float, row)) for row in info.get("annotations_yxhw") or []]


# --- SeeClick's metrics -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StepOutcome:
    """One ground-truth step, scored.

    Attributes:
        subset: AITW subset the episode belongs to.
        gt: The ground-truth action.
        pred: The predicted action, or None when the prediction is missing or did not parse.
        match: :func:`check_actions_match` of prediction and ground truth (False without a prediction).
    """

    subset: str
    gt: AitwAction
    pred: AitwAction | None
    match: bool


def score_step(
    subset: str, gt: AitwAction, annotations: Sequence[Sequence[float]], pred: AitwAction | None
) -> StepOutcome:
    """Score one step; a missing or unparsed prediction (``pred is None``) does not match."""
    match = pred is not None and check_actions_match(
        pred.touch_yx, pred.lift_yx, pred.action_type, gt.touch_yx, gt.lift_yx, gt.action_type, annotations
    )
    return StepOutcome(subset, gt, pred, match)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def text_matches(pred: AitwAction, gt: AitwAction, strict: bool = False) -> bool:
    """SeeClick's text rule: lower-cased equality or containment either way (see module docstring)."""
    if strict and pred.action_type != AitwActionType.TYPE:
        return False
    p, g = pred.typed_text.lower(), gt.typed_text.lower()
    return p == g or p in g or g in p


def subset_metrics(
    outcomes: Iterable[StepOutcome], strict_text: bool = False
) -> dict[str, float | int | None]:
    """SeeClick's metrics over one subset's steps.

    Returns:
        ``steps``, ``action_acc``, ``type_acc``, ``text_acc``, ``click_acc``, ``scroll_acc`` (None
        where a denominator is zero) and the denominators ``text_steps``, ``click_steps``, ``scroll_steps``.
    """
    n = matched = typed = n_text = ok_text = n_click = ok_click = n_scroll = ok_scroll = 0
    for o in outcomes:
        n += 1
        matched += o.match
        if o.pred is None:  # SeeClick's "wrong format": in the total only
            continue
        typed += o.pred.action_type == o.gt.action_type
        if o.gt.action_type == AitwActionType.TYPE:
            n_text += 1
            ok_text += text_matches(o.pred, o.gt, strict_text)
        elif o.gt.action_type == AitwActionType.DUAL_POINT:
            if is_tap_action(o.gt.touch_yx, o.gt.lift_yx):
                n_click += 1
                ok_click += o.match
            else:
                n_scroll += 1
                ok_scroll += o.match
    return {
        "steps": n,
        "action_acc": _ratio(matched, n),
        "type_acc": _ratio(typed, n),
        "text_acc": _ratio(ok_text, n_text),
        "click_acc": _ratio(ok_click, n_click),
        "scroll_acc": _ratio(ok_scroll, n_scroll),
        "text_steps": n_text,
        "click_steps": n_click,
        "scroll_steps": n_scroll,
    }


def seeclick_metrics(outcomes: Iterable[StepOutcome], strict_text: bool = False) -> dict:
    """Per-subset metrics and the overall score (mean of the subsets' action accuracies).

    Returns:
        ``{"subsets": {name: subset_metrics}, "overall": float | None, "pooled": subset_metrics}``;
        ``overall`` averages the subsets present (the report says which).
    """
    outcomes = list(outcomes)
    by_subset: dict[str, list[StepOutcome]] = {}
    for o in outcomes:
        by_subset.setdefault(o.subset, []).append(o)
    order = [s for s in SUBSETS if s in by_subset] + sorted(s for s in by_subset if s not in SUBSETS)
    subsets = {s: subset_metrics(by_subset[s], strict_text) for s in order}
    accs = [m["action_acc"] for m in subsets.values() if m["action_acc"] is not None]
    return {
        "subsets": subsets,
        "overall": sum(accs) / len(accs) if accs else None,
        "pooled": subset_metrics(outcomes, strict_text),
    }


def subset_name(name: str | None) -> str:
    """Normalise a subset name (``"GoogleApps"``, ``"google_apps"`` → ``"googleapps"``); None → ``"all"``."""
    if not name:
        return "all"
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def evaluate(root, predictions, space, strict_text: bool = False) -> dict:
    """Score a predictions file against an AITW episode store; returns the report dict.

    Args:
        root: Store directory written by ``guiagent data convert aitw``.
        predictions: A loaded :class:`guiagent.eval.predictions.Predictions`.
        space: Format and geometry for parsing ``response`` text (:class:`guiagent.actions.ActionSpaceConfig`).
        strict_text: Count text accuracy only for ``TYPE`` predictions (see module docstring).

    Raises:
        DataError: the store is not an AITW store, or a step lacks ``info["aitw"]`` or its fields are malformed.
    """
    from guiagent.eval.predictions import ground_truth_error, iter_step_predictions, read_benchmark_manifest
    from guiagent.eval.report import base_report, table

    manifest = read_benchmark_manifest(root, "aitw", DATASETS)
    counts: dict[str, int] = {}
    matched: set = set()
    outcomes = []
    episodes = set()
    for trajectory, step, resolved in iter_step_predictions(root, predictions, space, counts=counts,
                                                            matched=matched):
        episodes.add(trajectory.episode_id)
        info = step.info.get("aitw")
        try:
            gt, boxes = ground_truth_of(info)
        except (KeyError, TypeError, ValueError) as exc:
            raise ground_truth_error("info['aitw']", exc, trajectory.episode_id, step.index, root) from None
        obs = step.observation
        pred = aitw_action_of(resolved.action, obs.width, obs.height) if resolved.action is not None else None
        subset = subset_name((trajectory.info.get("aitw") or {}).get("subset") or info.get("subset"))
        outcomes.append(score_step(subset, gt, boxes, pred))
    metrics = seeclick_metrics(outcomes, strict_text)
    report = base_report(PROTOCOL, REFERENCE, manifest, predictions, len(outcomes), counts,
                         predictions.unmatched(matched))
    report["episodes"] = len(episodes)
    report["metrics"] = metrics
    cols = ["subset", "steps", "action acc", "type acc", "text acc", "click acc", "scroll acc"]
    keys = ("action_acc", "type_acc", "text_acc", "click_acc", "scroll_acc")
    rows = [[name, m["steps"], *(m[k] for k in keys)] for name, m in metrics["subsets"].items()]
    rows.append(["overall (mean of subsets)", len(outcomes), metrics["overall"], None, None, None, None])
    report["tables"] = [table("SeeClick AITW metrics (%)", cols, rows)]
    present = list(metrics["subsets"])
    report["notes"] = [
        f"overall = mean of the action accuracies of the subsets present: {', '.join(present)}"
        + ("" if set(SUBSETS) <= set(present) else f" (SeeClick averages all of {', '.join(SUBSETS)})"),
        "text accuracy: "
        + (
            "TYPE predictions only"
            if strict_text
            else "SeeClick's rule (a non-TYPE prediction has empty text, which matches)"
        ),
    ]
    return report
