"""ScreenSpot v1 / v2 / Pro grounding accuracy (SeeClick arXiv:2401.10935, OS-Atlas arXiv:2410.23218,
ScreenSpot-Pro arXiv:2504.07981).

A prediction is correct iff its point lies inside the ground-truth box, edges included. As in the
references (SeeClick ``pretrain/screenspot_test.py``, ScreenSpot-Pro ``eval_screenspot_pro.py``) the
box and the point are both normalised by the image size before comparing. A prediction without a
point (a ``type``, a parse failure, a missing line) is wrong.

Aggregation:

- v1 / v2: accuracy per platform (mobile / desktop / web) split into text and icon targets
  (``data_type``), per data source, and the micro-average over all samples.
- Pro: the micro-average over all samples, per group (the leaderboard's "simple" view), per
  application (its "detailed" view) and per platform, each with text / icon accuracy by ``ui_type``.
  Only positive ground truths are evaluated (the stores hold no negative samples).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from guiagent.types import Action

DATASETS = ("screenspot",)  # the manifest datasets this protocol scores
PROTOCOL = {
    "screenspot_v1": "screenspot-v1",
    "screenspot_v2": "screenspot-v2",
    "screenspot_pro": "screenspot-pro",
}
REFERENCE = {
    "screenspot_v1": "SeeClick pretrain/screenspot_test.py: point in box (edges included), "
    "text/icon per platform",
    "screenspot_v2": "OS-Atlas ScreenSpot-v2, scored as SeeClick's screenspot_test.py "
    "(point in box, edges included)",
    "screenspot_pro": "ScreenSpot-Pro eval_screenspot_pro.py: point in box (edges included), micro-average, "
    "per group / application / platform, text/icon by ui_type",
}


def point_in_box(point_xy: Sequence[float], bbox_xyxy: Sequence[float], width: float, height: float) -> bool:
    """Whether a point lies in a box, edges included, both normalised by the image size like the references.

    Args:
        point_xy: (x, y) in device pixels.
        bbox_xyxy: (x1, y1, x2, y2) in device pixels.
        width: Image width in pixels.
        height: Image height in pixels.
    """
    x, y = point_xy[0] / width, point_xy[1] / height
    x1, y1, x2, y2 = bbox_xyxy[0] / width, bbox_xyxy[1] / height, bbox_xyxy[2] / width, bbox_xyxy[3] / height
    return x1 <= x <= x2 and y1 <= y <= y2


def score_sample(sample: Mapping[str, Any], action: Action | None) -> bool:
    """Correctness of one prediction on one grounding sample (see module docstring)."""
    if action is None or action.point is None:
        return False
    return point_in_box(action.point, sample["bbox_xyxy"], sample["width"], sample["height"])


def target_kind(sample: Mapping[str, Any]) -> str | None:
    """``"text"`` or ``"icon"``: ``data_type`` in v1/v2, ``ui_type`` in Pro."""
    return sample.get("ui_type") if sample.get("benchmark") == "screenspot_pro" else sample.get("data_type")


def accuracy(results: Iterable[tuple[Mapping[str, Any], bool]]) -> dict[str, Any]:
    """Micro accuracy of (sample, correct) pairs, overall and for text and icon targets (None if empty)."""
    n = ok = n_text = ok_text = n_icon = ok_icon = 0
    for sample, correct in results:
        n += 1
        ok += correct
        kind = target_kind(sample)
        if kind == "text":
            n_text += 1
            ok_text += correct
        elif kind == "icon":
            n_icon += 1
            ok_icon += correct
    return {
        "samples": n,
        "correct": ok,
        "acc": ok / n if n else None,
        "text_samples": n_text,
        "text_acc": ok_text / n_text if n_text else None,
        "icon_samples": n_icon,
        "icon_acc": ok_icon / n_icon if n_icon else None,
    }


def accuracy_by(results: Sequence[tuple[Mapping[str, Any], bool]], field: str) -> dict[str, dict[str, Any]]:
    """:func:`accuracy` per value of ``field`` (``"platform"``, ``"group"``, ...), values sorted."""
    groups: dict[str, list] = {}
    for sample, correct in results:
        groups.setdefault(str(sample.get(field)), []).append((sample, correct))
    return {key: accuracy(groups[key]) for key in sorted(groups)}


def metrics(results: Sequence[tuple[Mapping[str, Any], bool]], benchmark: str) -> dict[str, Any]:
    """All aggregations the benchmark's reference reports (see module docstring)."""
    fields = (
        ("group", "application", "platform") if benchmark == "screenspot_pro" else ("platform", "data_source")
    )
    return {"overall": accuracy(results), **{f"by_{f}": accuracy_by(results, f) for f in fields}}


def evaluate(root, predictions, space) -> dict:
    """Score a predictions file against a ScreenSpot (v1/v2/Pro) sample store; returns the report dict.

    Raises:
        DataError: the store is not a ScreenSpot store, or mixes benchmarks.
    """
    import os

    from guiagent.data.store import SAMPLES, iter_samples
    from guiagent.errors import DataError
    from guiagent.eval.predictions import read_benchmark_manifest, resolve
    from guiagent.eval.report import base_report, table

    manifest = read_benchmark_manifest(root, "screenspot", DATASETS)
    counts: dict[str, int] = {}
    matched: set[str] = set()
    results: list[tuple[dict, bool]] = []
    benchmark = None
    for lineno, sample in enumerate(iter_samples(root), start=1):
        if benchmark is None:
            benchmark = sample["benchmark"]
        elif sample["benchmark"] != benchmark:
            raise DataError(
                f"store mixes {benchmark} and {sample['benchmark']}",
                file=os.path.join(str(root), SAMPLES),
                record=lineno,
            )
        prediction = predictions.samples.get(str(sample["sample_id"]))
        if prediction is not None:
            matched.add(str(sample["sample_id"]))
        resolved = resolve(prediction, sample["width"], sample["height"], space)
        counts[resolved.status] = counts.get(resolved.status, 0) + 1
        # Only what aggregation needs is kept, so memory stays small on large stores.
        kept = {
            k: sample[k]
            for k in ("benchmark", "platform", "data_type", "data_source", "group", "application", "ui_type")
        }
        results.append((kept, score_sample(sample, resolved.action)))
    benchmark = benchmark or "screenspot_v1"
    m = metrics(results, benchmark)
    report = base_report(
        PROTOCOL.get(benchmark, benchmark),
        REFERENCE.get(benchmark, REFERENCE["screenspot_v1"]),
        manifest,
        predictions,
        len(results),
        counts,
        predictions.unmatched(samples=matched),
    )
    report["benchmark"] = benchmark
    report["metrics"] = m
    cols = ["samples", "text acc", "icon acc", "acc"]

    def rows(groups: Mapping[str, Mapping[str, Any]]) -> list[list]:
        return [[name, g["samples"], g["text_acc"], g["icon_acc"], g["acc"]] for name, g in groups.items()]

    overall = m["overall"]
    total = ["overall (micro)", overall["samples"], overall["text_acc"], overall["icon_acc"], overall["acc"]]
    if benchmark == "screenspot_pro":
        report["tables"] = [
            table("By group (%)", ["group", *cols], rows(m["by_group"]) + [total]),
            table("By application (%)", ["application", *cols], rows(m["by_application"])),
            table("By platform (%)", ["platform", *cols], rows(m["by_platform"])),
        ]
    else:
        report["tables"] = [
            table("By platform (%)", ["platform", *cols], rows(m["by_platform"]) + [total]),
            table("By data source (%)", ["data source", *cols], rows(m["by_data_source"])),
        ]
    return report
