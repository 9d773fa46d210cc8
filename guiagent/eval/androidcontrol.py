"""AndroidControl (arXiv:2406.03679) step metrics and UI-S1's semi-online performance (SOP, arXiv:2509.11543).

Steps are judged with UI-S1's *evaluation* matcher (``evaluate_android_control_action`` in UI-S1's
``evaluation/qwenvl_utils.py``), which is more lenient than its training-time matcher. Each check
yields ``(type_match, full_match)``:

- Coordinates are normalised to [0, 1]: the ground truth by the original screenshot's size, the
  prediction by the size of the image the model saw (its ``smart_resize``d size). guiagent's
  predicted actions are already in device pixels (:mod:`guiagent.actions` scales model coordinates
  by original/resized size), so dividing them by the screenshot size gives the same number.
- ``wait``: type only. ``swipe``: type only, direction ignored (UI-S1 comments out its direction
  check because AndroidControl's up/down labels are inconsistent).
- ``system_button``: type, and the button names equal after lower-casing and trimming.
- ``type``: type, and the lower-cased, trimmed texts contain one another (either way); as in the
  reference, empty text is contained in every text (:func:`guiagent.rewards.matching.text_contains` with
  ``empty_matches=True``; the training rewards refuse that).
- ``open``: an ``open`` whose text passes the ``type`` text rule; or a ``click`` when the step has
  candidate boxes — full match if the click is inside any candidate box enlarged 1.2× about its
  centre (edges included) or within 0.04 of the *first* candidate box's centre. A click with no
  candidate box is wrong (``(False, False)``).
- ``click`` / ``long_press``: same type, and the point inside any candidate box enlarged 1.2× about
  its centre (edges included, no clamping) or within 0.04 (Euclidean, normalised) of the
  ground-truth point.
- Ground-truth kinds the reference matcher does not handle (it raises) compare type only here.

A missing prediction or one that does not parse is ``(False, False)``.

Step metrics per instruction level (High: goal only; Low: goal + step instruction):
type accuracy = mean type match; step success rate = mean full match; grounding accuracy = full
matches among ground-truth ``click``/``long_press`` steps whose predicted type matched.

**SOP** (UI-S1, DESIGN.md): each episode runs on the model's own history over the expert screens,
greedy, without patching, and stops at the first step that does not fully match (a parse failure
included). PG = mean over episodes of matched_steps / episode_length; TSR = fraction of episodes
with every step matched; score = (PG + TSR) / 2. :func:`run_sop` runs a policy this way;
:func:`sop_metrics` scores a predictions file written by such a run (or by any runner — the number
is SOP only if each step's prompt held the model's own earlier responses).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from guiagent.actions.convert import from_androidcontrol
from guiagent.errors import ActionError
from guiagent.eval.predictions import ground_truth_error
from guiagent.rewards.matching import box_center, enlarge_box, point_in_box, text_contains
from guiagent.types import Action, ActionType, Observation

BBOX_ENLARGE_FACTOR = 1.2
POINT_DISTANCE_THRESHOLD = 0.04
PROTOCOL = "androidcontrol-uis1"
DATASETS = ("androidcontrol", "uis1")  # the manifest datasets this protocol scores
REFERENCE = (
    "UI-S1 evaluation matcher (evaluation/qwenvl_utils.py evaluate_android_control_action, "
    "arXiv:2509.11543); SOP = (PG + TSR) / 2 with own history, stop at first mismatch"
)

NormBox = tuple[float, float, float, float]  # (x1, y1, x2, y2), normalised to [0, 1] by the screenshot size


@dataclass(frozen=True)
class StepAction:
    """An action in the terms of UI-S1's matcher, coordinates normalised to [0, 1].

    Attributes:
        kind: ``click``, ``long_press``, ``swipe``, ``type``, ``open``, ``system_button``, ``wait``,
            or another canonical type name (``terminate``, ``answer``, ...).
        point: (x, y) for click / long press.
        text: Typed text or app name.
        button: System button name.
        boxes: Candidate boxes of the ground truth (x1, y1, x2, y2), empty for predictions.
    """

    kind: str
    point: tuple[float, float] | None = None
    text: str | None = None
    button: str | None = None
    boxes: tuple[NormBox, ...] = ()


# --- Building StepActions ------------------------------------------------------------------------------

_KIND = {
    ActionType.CLICK: "click",
    ActionType.LONG_PRESS: "long_press",
    ActionType.SWIPE: "swipe",
    ActionType.SCROLL: "swipe",
    ActionType.DRAG: "swipe",
    ActionType.TYPE: "type",
    ActionType.OPEN_APP: "open",
    ActionType.SYSTEM_BUTTON: "system_button",
    ActionType.WAIT: "wait",
}


def predicted_step_action(action: Action, width: int, height: int) -> StepAction:
    """A canonical predicted action (device pixels on a ``width`` × ``height`` screen) in matcher terms."""
    kind = _KIND.get(action.type, action.type.value)
    point = (action.point[0] / width, action.point[1] / height) if kind in ("click", "long_press") else None
    button = action.button.value if action.button is not None else None
    return StepAction(kind, point=point, text=action.text, button=button)


def _norm_box(box: Sequence[float], width: int, height: int) -> NormBox:
    if len(box) != 4:
        raise ValueError(f"a candidate box needs 4 numbers, got {box!r}")
    return (box[0] / width, box[1] / height, box[2] / width, box[3] / height)


def expected_from_androidcontrol(
    action: Mapping[str, Any], width: int, height: int, candidate_boxes: Iterable[Sequence[float]] = ()
) -> StepAction:
    """Ground truth from an AndroidControl action JSON (``{"action_type": "click", "x": .., "y": ..}``).

    Args:
        action: The dataset's action dict (converted by :func:`guiagent.actions.from_androidcontrol`).
        width: Screenshot width in pixels.
        height: Screenshot height in pixels.
        candidate_boxes: Pixel (x1, y1, x2, y2) boxes of the UI elements that accept the click, if known.

    Raises:
        ActionError: unknown action type or missing field.
    """
    expected = predicted_step_action(from_androidcontrol(action, width, height), width, height)
    return dataclasses.replace(expected, boxes=tuple(_norm_box(b, width, height) for b in candidate_boxes))


def expected_from_check_options(options: Mapping[str, Any], width: int, height: int) -> StepAction:
    """Ground truth from UI-S1's ``check_options`` (``{"action": "click", "coordinate": [x, y],
    "candidate_bbox": [[x1, y1, x2, y2], ...]}``, pixels of the original screenshot)."""
    kind = options["action"]
    coord = options.get("coordinate")
    point = (float(coord[0]) / width, float(coord[1]) / height) if coord is not None else None
    boxes = tuple(_norm_box(b, width, height) for b in options.get("candidate_bbox") or ())
    return StepAction(kind, point=point, text=options.get("text"), button=options.get("button"), boxes=boxes)


def expected_of(step_info: Mapping[str, Any], width: int, height: int) -> StepAction:
    """The ground truth of a store step: UI-S1 ``check_options`` when the store has them (``info["uis1"]``),
    else the AndroidControl action (``info["androidcontrol"]``, candidate boxes from its
    ``candidate_bbox`` when present).

    Raises:
        ActionError / KeyError / ValueError / TypeError: neither is present or a field is malformed.
    """
    uis1 = step_info.get("uis1")
    if uis1 is not None:
        return expected_from_check_options(uis1.get("check_options") or uis1["action_content"], width, height)
    ac = step_info["androidcontrol"]
    return expected_from_androidcontrol(ac["action"], width, height, ac.get("candidate_bbox") or ())


# --- The matcher --------------------------------------------------------------------------------------


def click_hits(point: tuple[float, float], boxes: Sequence[NormBox], target: tuple[float, float] | None) -> bool:
    """Inside any enlarged box (edges included), or within 0.04 of ``target`` (None: no distance check)."""
    if any(point_in_box(point, enlarge_box(b, BBOX_ENLARGE_FACTOR)) for b in boxes):
        return True
    if target is not None:
        return math.hypot(target[0] - point[0], target[1] - point[1]) <= POINT_DISTANCE_THRESHOLD
    return False


def match_step(pred: StepAction | None, gt: StepAction) -> tuple[bool, bool]:
    """UI-S1's evaluation matcher: ``(type_match, full_match)`` (see module docstring)."""
    if pred is None:
        return False, False
    if gt.kind == "open":
        if pred.kind == "open":
            return True, text_contains(pred.text, gt.text, empty_matches=True)
        if pred.kind == "click" and gt.boxes:
            return True, click_hits(pred.point, gt.boxes, box_center(gt.boxes[0]))
        return False, False
    if pred.kind != gt.kind:
        return False, False
    if gt.kind == "system_button":
        return True, (pred.button or "").lower().strip() == (gt.button or "").lower().strip()
    if gt.kind == "type":
        return True, text_contains(pred.text, gt.text, empty_matches=True)
    if gt.kind in ("click", "long_press"):
        return True, click_hits(pred.point, gt.boxes, gt.point)
    return True, True  # wait, swipe, and kinds the reference does not handle: type only


# --- Metrics ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepResult:
    """One scored step. ``status`` is ``ok``, ``missing`` or ``parse_failure``; ``has_boxes`` says whether
    the ground truth carried candidate boxes."""

    episode_id: str
    index: int
    gt_kind: str
    type_match: bool
    full_match: bool
    status: str = "ok"
    has_boxes: bool = False


def step_metrics(results: Iterable[StepResult]) -> dict[str, Any]:
    """Type accuracy, step success rate and grounding accuracy (see module docstring)."""
    n = typed = full = n_ground = ok_ground = 0
    for r in results:
        n += 1
        typed += r.type_match
        full += r.full_match
        if r.gt_kind in ("click", "long_press") and r.type_match:
            n_ground += 1
            ok_ground += r.full_match
    return {
        "steps": n,
        "type_acc": typed / n if n else None,
        "step_sr": full / n if n else None,
        "grounding_acc": ok_ground / n_ground if n_ground else None,
        "grounding_steps": n_ground,
    }


def sop_metrics(episodes: Iterable[Sequence[StepResult]]) -> dict[str, Any]:
    """SOP over episodes given as their steps' results in order (empty episodes are skipped).

    An episode's progress is the number of leading fully matched steps; steps after the first
    mismatch are ignored whatever they hold.

    Returns:
        ``{"episodes", "pg", "tsr", "score"}`` (None when there are no episodes).
    """
    progress: list[float] = []
    success = 0
    for steps in episodes:
        if not steps:
            continue
        k = 0
        while k < len(steps) and steps[k].full_match:
            k += 1
        progress.append(k / len(steps))
        success += k == len(steps)
    if not progress:
        return {"episodes": 0, "pg": None, "tsr": None, "score": None}
    pg, tsr = sum(progress) / len(progress), success / len(progress)
    return {"episodes": len(progress), "pg": pg, "tsr": tsr, "score": (pg + tsr) / 2}


def score_step(episode_id: str, step, resolved) -> StepResult:
    """Score one store step against its resolved prediction.

    Args:
        episode_id: The step's episode (for error messages and the result).
        step: The expert :class:`guiagent.types.Step` from the store.
        resolved: Its :class:`guiagent.eval.predictions.Resolved` prediction, or None when missing.

    Raises:
        DataError: the step's ground truth is missing or malformed.
    """
    obs = step.observation
    try:
        gt = expected_of(step.info, obs.width, obs.height)
    except (ActionError, KeyError, TypeError, ValueError) as exc:
        raise ground_truth_error("AndroidControl / UI-S1 ground truth", exc, episode_id, step.index) from None
    status = resolved.status if resolved is not None else "missing"
    pred = (
        predicted_step_action(resolved.action, obs.width, obs.height)
        if resolved is not None and resolved.action is not None
        else None
    )
    type_ok, full_ok = match_step(pred, gt)
    return StepResult(episode_id, step.index, gt.kind, type_ok, full_ok, status, bool(gt.boxes))


# --- Running a policy: SOP ----------------------------------------------------------------------------


class StepPolicy(Protocol):
    """What :func:`run_sop` needs from a policy: text for one step given the model's own history."""

    def predict(self, observation: Observation, history: Sequence[str]) -> str:
        """Args: the step's observation (absolute ``screenshot_path``); the model's earlier responses
        in this episode, oldest first. Returns the raw response text."""
        ...


def observation_for_level(observation: Observation, level: str, root: str) -> Observation:
    """The observation a policy sees at ``level``: High drops the step instruction; paths become absolute."""
    extras = dict(observation.extras)
    if level == "high":
        extras.pop("step_instruction", None)
    path = observation.screenshot_path
    if path is not None and not os.path.isabs(path):
        path = os.path.join(root, path)
    return dataclasses.replace(observation, extras=extras, screenshot_path=path)


def run_sop(
    root: str | os.PathLike, policy: StepPolicy, space, level: str = "high", max_episodes: int | None = None
) -> Iterator[dict[str, Any]]:
    """Run ``policy`` over a store's episodes the SOP way and yield prediction records.

    Each episode runs on the expert screens with the model's own earlier responses as history,
    without patching, and stops after the first step that does not fully match (a parse failure
    included). The records (``episode_id``, ``step``, ``level``, ``response``) form a predictions file
    that :func:`evaluate` scores to the same SOP numbers.

    Args:
        root: The store directory.
        policy: Anything with ``predict(observation, history) -> str`` (greedy decoding is the caller's
            choice of sampling settings).
        space: Format and geometry for parsing responses (:class:`guiagent.actions.ActionSpaceConfig`).
        level: ``"high"`` or ``"low"``.
        max_episodes: Stop after this many episodes.
    """
    from guiagent.data.store import iter_episodes
    from guiagent.eval.predictions import Prediction, resolve

    root = str(root)
    for count, trajectory in enumerate(iter_episodes(root)):
        if max_episodes is not None and count >= max_episodes:
            return
        history: list[str] = []
        for step in trajectory.steps:
            obs = step.observation
            text = policy.predict(observation_for_level(obs, level, root), tuple(history))
            yield {"episode_id": trajectory.episode_id, "step": step.index, "level": level, "response": text}
            resolved = resolve(Prediction(line=0, response=text), obs.width, obs.height, space)
            if not score_step(trajectory.episode_id, step, resolved).full_match:
                break
            history.append(text)


def evaluate(root, predictions, space) -> dict:
    """Score a predictions file on an AndroidControl (or UI-S1) store: step metrics and SOP per level.

    Levels are those present in the predictions file (lines without ``level`` are High); with an empty
    file, High is reported (everything missing).

    Raises:
        DataError: the store is not an AndroidControl / UI-S1 store, or a step's ground truth is malformed.
    """
    from guiagent.data.store import iter_episodes
    from guiagent.eval.predictions import read_benchmark_manifest, resolve
    from guiagent.eval.report import base_report, table

    manifest = read_benchmark_manifest(root, "androidcontrol", DATASETS)
    levels = predictions.levels() or ["high"]
    per_level: dict[str, Any] = {}
    counts: dict[str, int] = {}
    matched: set = set()
    total_steps = episodes = 0
    for level in levels:
        results_by_episode: list[list[StepResult]] = []
        for trajectory in iter_episodes(root):
            results = []
            for step in trajectory.steps:
                obs = step.observation
                prediction = predictions.step(trajectory.episode_id, step.index, level)
                if prediction is not None:
                    matched.add((str(trajectory.episode_id), step.index, level))
                r = resolve(prediction, obs.width, obs.height, space)
                counts[r.status] = counts.get(r.status, 0) + 1
                results.append(score_step(trajectory.episode_id, step, r))
            results_by_episode.append(results)
        flat = [r for ep in results_by_episode for r in ep]
        boxed = sum(r.has_boxes for r in flat if r.gt_kind in ("click", "long_press", "open"))
        pointed = sum(r.gt_kind in ("click", "long_press", "open") for r in flat)
        per_level[level] = {**step_metrics(flat), "sop": sop_metrics(results_by_episode)}
        total_steps, episodes = len(flat), len(results_by_episode)
    report = base_report(PROTOCOL, REFERENCE, manifest, predictions, total_steps, counts,
                         predictions.unmatched(matched))
    report["episodes"] = episodes
    report["levels"] = levels
    report["metrics"] = per_level
    rows = [
        [
            level.capitalize(),
            m["steps"],
            m["type_acc"],
            m["grounding_acc"],
            m["step_sr"],
            m["sop"]["pg"],
            m["sop"]["tsr"],
            m["sop"]["score"],
        ]
        for level, m in per_level.items()
    ]
    report["tables"] = [
        table(
            "AndroidControl step metrics and SOP (%)",
            ["level", "steps", "type acc", "grounding acc", "step SR", "SOP PG", "SOP TSR", "SOP score"],
            rows,
        )
    ]
    report["notes"] = [
        "counts of missing predictions and parse failures are summed over the levels reported",
        f"{boxed} of {pointed} click / long_press / open ground truths carry candidate boxes; without "
        "them a click is judged by the 0.04 distance alone and an open by its text alone (UI-S1's "
        "jsonl carries the boxes it was scored with)",
        "SOP is the semi-online score only if the predictions were produced with the model's own "
        "history (guiagent's SOP runner); steps after an episode's first mismatch are ignored",
    ]
    return report


def score_sop(root: str | os.PathLike, policy: StepPolicy, space, out: str | os.PathLike) -> dict[str, Any]:
    """Run ``policy`` the SOP way on the store at ``root`` (High level), score it with this protocol, and
    write ``predictions.jsonl``, ``report.json`` and ``report.md`` into ``out``.

    Returns:
        The headline numbers: ``sop`` (PG / TSR / score), ``type_acc``, ``step_sr``, ``parse_failures``,
        ``steps_scored`` and the report directory.
    """
    from guiagent.eval.predictions import load_predictions, write_predictions
    from guiagent.eval.report import write_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    predictions = out / "predictions.jsonl"
    write_predictions(predictions, run_sop(root, policy, space))
    report = evaluate(root, load_predictions(predictions), space)
    write_report(report, out)
    metrics = report["metrics"]["high"]
    return {"sop": metrics["sop"], "type_acc": metrics["type_acc"], "step_sr": metrics["step_sr"],
            "parse_failures": report["parse_failures"], "steps_scored": report["count"], "report": str(out)}
