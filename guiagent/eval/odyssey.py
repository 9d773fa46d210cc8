"""GUI-Odyssey (arXiv:2406.08451) action matching, as in OpenGVLab/GUI-Odyssey
``src/eval_mm/GUIOdyssey_action_matching.py`` and ``evaluate_GUIOdyssey.py``.

Actions are compared as the benchmark's command strings, coordinates on a 0–1000 grid:

- Ground truth (``data/format_converter.py`` ``decode_action``): ``CLICK`` / ``LONG_PRESS`` at
  ``info[0]``, or ``PRESS_HOME`` / ``PRESS_BACK`` / ``PRESS_RECENT`` when ``info`` is
  ``KEY_HOME`` / ``KEY_BACK`` / ``KEY_APPSELECT``; ``SCROLL`` with the direction the *finger* moves
  from ``info[0]`` to ``info[1]`` (horizontal only if |dx| > |dy|); ``TEXT`` → ``TYPE``;
  ``COMPLETE``; ``INCOMPLETE`` → ``IMPOSSIBLE``.
- Different action names never match. ``CLICK`` / ``LONG_PRESS`` match if the predicted point is
  inside ``sam2_bbox`` (edges included, 0–1000 grid) or within 0.14 of the ground truth after
  dividing both by 1000. ``SCROLL`` matches on equal direction (case-insensitive). ``TYPE`` matches
  if the trimmed texts contain one another or their ANLS similarity (1 − Levenshtein / longer
  length) is ≥ 0.5 (case-sensitive, as the reference). Every other action matches on its name.

Metrics: AMS (action matching score) = matched steps / steps; SR = episodes with every step matched;
type accuracy = steps whose action name matches; text accuracy = matched ``TYPE`` steps among steps
where both sides are ``TYPE``. The reference reports the random split as the mean over its six task
categories and the app / device / task splits pooled; both are reported here. One deliberate
difference: the reference counts an unparseable prediction's action type as correct (its type
counter only excludes ``action_fail``); here a missing or unparseable prediction is wrong throughout.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from guiagent.actions.convert import to_odyssey
from guiagent.errors import ActionError
from guiagent.types import Action, ActionType

TEXT_ANLS_THRESHOLD = 0.5
CLICK_COORD_THRESHOLD = 0.14
PROTOCOL = "gui-odyssey"
DATASETS = ("odyssey",)  # the manifest datasets this protocol scores
REFERENCE = (
    "GUI-Odyssey src/eval_mm/GUIOdyssey_action_matching.py (sam2_bbox or 0.14 click distance on the "
    "0-1000 grid, scroll direction, text containment or ANLS >= 0.5; arXiv:2406.08451)"
)


@dataclass(frozen=True)
class OdysseyAction:
    """An action as GUI-Odyssey's matcher sees it: a command name and its argument.

    ``info`` is an (x, y) point on the 0–1000 grid for ``CLICK``/``LONG_PRESS``, a direction for
    ``SCROLL``, the text for ``TYPE``, and ``""`` otherwise.
    """

    action: str
    info: Any = ""


_KEYS = {"KEY_HOME": "PRESS_HOME", "KEY_BACK": "PRESS_BACK", "KEY_APPSELECT": "PRESS_RECENT"}


def ground_truth_of(step: Mapping[str, Any]) -> OdysseyAction:
    """Decode an episode step's ``action`` and ``info`` like the reference's ``decode_action``.

    Raises:
        ValueError / KeyError / TypeError: unknown action or malformed ``info``.
    """
    action, info = step["action"], step["info"]
    if action in ("CLICK", "LONG_PRESS"):
        if isinstance(info, str):
            if info not in _KEYS:
                raise ValueError(f"unknown click info {info!r}")
            return OdysseyAction(_KEYS[info])
        return OdysseyAction(action, (float(info[0][0]), float(info[0][1])))
    if action == "SCROLL":
        dx, dy = info[1][0] - info[0][0], info[1][1] - info[0][1]
        if abs(dx) > abs(dy):
            return OdysseyAction("SCROLL", "LEFT" if dx < 0 else "RIGHT")
        return OdysseyAction("SCROLL", "UP" if dy < 0 else "DOWN")
    if action == "TEXT":
        return OdysseyAction("TYPE", str(info))
    if action == "COMPLETE":
        return OdysseyAction("COMPLETE")
    if action == "INCOMPLETE":
        return OdysseyAction("IMPOSSIBLE")
    raise ValueError(f"unknown GUI-Odyssey action {action!r}")


def odyssey_action_of(action: Action, width: int, height: int) -> OdysseyAction:
    """A canonical action (device pixels) as the GUI-Odyssey command a model would write.

    The action goes through :func:`guiagent.actions.convert.to_odyssey` and is decoded like a ground
    truth, except a SCROLL, whose finger direction is simply opposite to the view's (no clamped
    gesture). An action GUI-Odyssey cannot express keeps its canonical name, which matches nothing.
    """
    if action.type is ActionType.SCROLL:  # the view moves one way, the finger the other
        return OdysseyAction("SCROLL", action.direction.opposite().value.upper())
    try:
        return ground_truth_of(to_odyssey(action, width, height))
    except ActionError:
        return OdysseyAction(action.type.value.upper())


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of one character each)."""
    if len(a) > len(b):
        a, b = b, a
    row = list(range(len(a) + 1))
    for j, cb in enumerate(b, start=1):
        new = [j]
        for i, ca in enumerate(a, start=1):
            new.append(row[i - 1] if ca == cb else 1 + min(row[i - 1], row[i], new[-1]))
        row = new
    return row[-1]


def text_matches(gt: str, pred: str) -> bool:
    """Containment either way after trimming, else ANLS similarity ≥ 0.5."""
    gt, pred = gt.strip(), pred.strip()
    if gt in pred or pred in gt:
        return True
    length = max(len(gt), len(pred))
    return 1 - levenshtein(gt, pred) / length >= TEXT_ANLS_THRESHOLD


def click_matches(gt: Sequence[float], pred: Sequence[float], sam2_bbox: Sequence[float] | None) -> bool:
    """Inside ``sam2_bbox`` (x1, y1, x2, y2 on the 0–1000 grid, edges included), or ≤ 0.14 apart after
    dividing both points by 1000."""
    if sam2_bbox is not None:
        x1, y1, x2, y2 = sam2_bbox
        if x1 <= pred[0] <= x2 and y1 <= pred[1] <= y2:
            return True
    return math.hypot(pred[0] / 1000 - gt[0] / 1000, pred[1] / 1000 - gt[1] / 1000) <= CLICK_COORD_THRESHOLD


def match(pred: OdysseyAction | None, gt: OdysseyAction, sam2_bbox: Sequence[float] | None = None) -> str:
    """The reference's verdict: ``action_fail``, ``action_correct``, ``type_correct`` / ``type_fail``,
    ``scroll_correct`` / ``scroll_fail``, ``click_correct`` / ``click_fail``; ``invalid`` when ``pred``
    is None."""
    if pred is None:
        return "invalid"
    if pred.action != gt.action:
        return "action_fail"
    if gt.action == "TYPE":
        return "type_correct" if text_matches(gt.info, str(pred.info)) else "type_fail"
    if gt.action == "SCROLL":
        return "scroll_correct" if str(gt.info).lower() == str(pred.info).lower() else "scroll_fail"
    if gt.action in ("CLICK", "LONG_PRESS"):
        return "click_correct" if click_matches(gt.info, pred.info, sam2_bbox) else "click_fail"
    return "action_correct"


def is_correct(verdict: str) -> bool:
    return verdict in ("action_correct", "type_correct", "scroll_correct", "click_correct")


@dataclass(frozen=True)
class StepVerdict:
    episode_id: str
    category: str | None
    verdict: str


def metrics(verdicts: Sequence[StepVerdict]) -> dict[str, Any]:
    """AMS, SR, type and text accuracy over pooled steps (see module docstring)."""
    n = len(verdicts)
    episodes: dict[str, bool] = {}
    for v in verdicts:
        episodes[v.episode_id] = episodes.get(v.episode_id, True) and is_correct(v.verdict)
    typed = sum(v.verdict not in ("action_fail", "invalid") for v in verdicts)
    n_text = sum(v.verdict.startswith("type_") for v in verdicts)
    ok_text = sum(v.verdict == "type_correct" for v in verdicts)
    return {
        "steps": n,
        "episodes": len(episodes),
        "ams": sum(is_correct(v.verdict) for v in verdicts) / n if n else None,
        "sr": sum(episodes.values()) / len(episodes) if episodes else None,
        "type_acc": typed / n if n else None,
        "text_acc": ok_text / n_text if n_text else None,
        "text_steps": n_text,
    }


def category_metrics(verdicts: Iterable[StepVerdict]) -> dict[str, Any]:
    """Per-category metrics and their mean AMS / SR (the reference's view of the random split)."""
    by_cat: dict[str, list[StepVerdict]] = {}
    for v in verdicts:
        by_cat.setdefault(str(v.category), []).append(v)
    per = {cat: metrics(by_cat[cat]) for cat in sorted(by_cat)}
    ams = [m["ams"] for m in per.values() if m["ams"] is not None]
    sr = [m["sr"] for m in per.values() if m["sr"] is not None]
    return {
        "categories": per,
        "ams_mean": sum(ams) / len(ams) if ams else None,
        "sr_mean": sum(sr) / len(sr) if sr else None,
    }


def evaluate(root, predictions, space) -> dict:
    """Score a predictions file against a GUI-Odyssey episode store; returns the report dict.

    Raises:
        DataError: the store is not a GUI-Odyssey store, or a step lacks ``info["odyssey"]`` or it is malformed.
    """
    from guiagent.eval.predictions import ground_truth_error, iter_step_predictions, read_benchmark_manifest
    from guiagent.eval.report import base_report, table

    manifest = read_benchmark_manifest(root, "odyssey", DATASETS)
    counts: dict[str, int] = {}
    matched: set = set()
    verdicts: list[StepVerdict] = []
    for trajectory, step, resolved in iter_step_predictions(root, predictions, space, counts=counts,
                                                            matched=matched):
        raw = step.info.get("odyssey")
        try:
            gt = ground_truth_of(raw)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            error = ground_truth_error("info['odyssey']", exc, trajectory.episode_id, step.index, root)
            raise error from None
        obs = step.observation
        pred = (
            odyssey_action_of(resolved.action, obs.width, obs.height) if resolved.action is not None else None
        )
        category = (trajectory.info.get("odyssey") or {}).get("category") or raw.get("category")
        verdicts.append(StepVerdict(trajectory.episode_id, category, match(pred, gt, raw.get("sam2_bbox"))))
    pooled = metrics(verdicts)
    by_category = category_metrics(verdicts)
    report = base_report(PROTOCOL, REFERENCE, manifest, predictions, len(verdicts), counts,
                         predictions.unmatched(matched))
    report["episodes"] = pooled["episodes"]
    report["metrics"] = {"pooled": pooled, **by_category}
    cols = ["scope", "steps", "episodes", "AMS", "SR", "type acc", "text acc"]
    rows = [
        [f"category {c}", m["steps"], m["episodes"], m["ams"], m["sr"], m["type_acc"], m["text_acc"]]
        for c, m in by_category["categories"].items()
    ]
    rows.append(
        [
            "pooled",
            pooled["steps"],
            pooled["episodes"],
            pooled["ams"],
            pooled["sr"],
            pooled["type_acc"],
            pooled["text_acc"],
        ]
    )
    rows.append(
        ["mean of categories", None, None, by_category["ams_mean"], by_category["sr_mean"], None, None]
    )
    report["tables"] = [table("GUI-Odyssey action matching (%)", cols, rows)]
    report["notes"] = [
        "the reference reports the random split as the mean of its categories, the app / device / "
        "task splits pooled"
    ]
    return report
