"""Evaluation reports: one ``report.json`` and one ``report.md`` per run.

Every report names the protocol and its reference, the dataset and split, how many steps or samples
were scored, and how many predictions were missing, failed to parse, were skipped as invalid or matched
nothing in the store (the last two with their line numbers), so that two numbers can only be compared
when they were measured the same way.

A report is a plain dict::

    {"protocol": "aitw-seeclick", "reference": "...", "dataset": "aitw", "split": "test",
     "source": "...", "unit": "steps", "count": 1234, "episodes": 100,
     "missing_predictions": 3, "parse_failures": 1, "invalid_prediction_lines": 1,
     "unmatched_predictions": 1, "skipped_invalid_records": 0, "predictions": "preds.jsonl",
     "skipped_prediction_lines": [{"line": 4, "error": "not JSON: ..."}],
     "unmatched_prediction_lines": [{"line": 9, "episode_id": "77", "step": 0, "level": "high"}],
     "metrics": {...}, "tables": [{"title": ..., "columns": [...], "rows": [[...], ...]}]}

Table cells that are fractions in [0, 1] are rendered as percentages in the Markdown, which lists the
first ``LISTED_LINES`` skipped and unmatched lines (the JSON lists all).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

LISTED_LINES = 20


def base_report(
    protocol: str,
    reference: str,
    manifest: Mapping[str, Any],
    predictions: Any,
    count: int,
    counts: Mapping[str, int],
    unmatched: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The header every report starts with.

    Args:
        protocol: Short protocol name (``"aitw-seeclick"``).
        reference: Which reference code/paper the protocol reproduces.
        manifest: The store's manifest (dataset, split, source, skipped_invalid).
        predictions: The :class:`guiagent.eval.predictions.Predictions` scored (path, skipped lines).
        count: How many steps / samples were scored.
        counts: Resolution statuses (``missing``, ``parse_failure``).
        unmatched: The prediction lines that matched nothing scored (``Predictions.unmatched``).
    """
    return {
        "protocol": protocol,
        "reference": reference,
        "dataset": manifest.get("dataset"),
        "split": manifest.get("split"),
        "source": manifest.get("source"),
        "unit": "samples" if str(manifest.get("dataset", "")).startswith("screenspot") else "steps",
        "count": count,
        "missing_predictions": counts.get("missing", 0),
        "parse_failures": counts.get("parse_failure", 0),
        "invalid_prediction_lines": len(predictions.skipped),
        "unmatched_predictions": len(unmatched),
        "skipped_invalid_records": manifest.get("skipped_invalid", 0),
        "predictions": predictions.path,
        "skipped_prediction_lines": [{"line": line, "error": error} for line, error in predictions.skipped],
        "unmatched_prediction_lines": [dict(row) for row in unmatched],
    }


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    return {"title": title, "columns": list(columns), "rows": [list(r) for r in rows]}


def _cell(value: Any, percent: bool) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and percent:
        return f"{100 * value:.2f}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|")


def _key(row: Mapping[str, Any]) -> str:
    if "sample_id" in row:
        return f"sample {row['sample_id']}"
    return f"episode {row['episode_id']} step {row['step']} ({row['level']})"


def _listed(title: str, rows: Sequence[Mapping[str, Any]], describe) -> list[str]:
    """A section listing the first ``LISTED_LINES`` rows as ``- line N: ...``; none when there are no rows."""
    if not rows:
        return []
    lines = ["", f"## {title}", ""] + [f"- line {row['line']}: {describe(row)}" for row in rows[:LISTED_LINES]]
    if len(rows) > LISTED_LINES:
        lines.append(f"- ... and {len(rows) - LISTED_LINES} more (report.json lists every line)")
    return lines


def render_markdown(report: Mapping[str, Any]) -> str:
    """The Markdown form of a report: a header naming protocol, split and count, the skipped and unmatched
    prediction lines, then the tables."""
    lines = [
        f"# {report['protocol']} evaluation",
        "",
        f"- Protocol: **{report['protocol']}** — {report['reference']}",
        f"- Dataset: {report.get('dataset')} (source {report.get('source')})",
        f"- Split: {report.get('split') if report.get('split') is not None else 'none (whole source)'}",
        f"- Scored {report['unit']}: {report['count']}",
        f"- Missing predictions (scored wrong): {report['missing_predictions']}; "
        f"parse failures (scored wrong): {report['parse_failures']}; "
        f"invalid prediction lines skipped: {report['invalid_prediction_lines']}; "
        f"predictions matching nothing in the store (not scored): {report.get('unmatched_predictions', 0)}; "
        f"invalid dataset records skipped at conversion: {report['skipped_invalid_records']}",
        f"- Predictions: {report['predictions']}",
    ]
    for note in report.get("notes", []):
        lines.append(f"- {note}")
    lines += _listed("Skipped prediction lines (invalid)", report.get("skipped_prediction_lines", []),
                     lambda row: str(row["error"]))
    lines += _listed("Unmatched prediction lines (no such step or sample in the store)",
                     report.get("unmatched_prediction_lines", []), _key)
    for t in report.get("tables", []):
        percent = t.get("percent", True)
        lines += [
            "",
            f"## {t['title']}",
            "",
            "| " + " | ".join(t["columns"]) + " |",
            "|" + "|".join("---" for _ in t["columns"]) + "|",
        ]
        lines += ["| " + " | ".join(_cell(v, percent) for v in row) + " |" for row in t["rows"]]
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``out_dir`` (created if missing)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "report.json", out / "report.md"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return json_path, md_path
