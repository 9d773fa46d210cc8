"""The training report of a run directory: ``RUN/report.html``, static, with relative links only.

It reads what the trainer leaves in the run directory, each part optional:

- ``RUN/metrics.jsonl`` — one JSON object per update step (``step``, ``time``, ``policy_version`` and numeric
  series such as ``reward_mean``, ``success_rate``, ``loss``, ``kl``, ``entropy``, ``grad_norm``, ``lr`` and the
  phase times ``time/<phase>``). Every numeric series gets a plot against the step (known ones first, the phase
  times together in one plot): the trainer's own from ``RUN/plots/`` where it drew one, else one drawn into
  ``RUN/report/``.
- ``RUN/eval/*.json`` — held-out evaluations (``name``, ``protocol``, ``success``, ``sop``, ``per_template``,
  ``episodes``, ``store_episode_ids``): shown side by side in training order (``before_rl``, the others by name,
  ``after_rl``), with the change per template (the last evaluation's success minus the first's).
- ``RUN/plots/*.png`` — the trainer's plots: those of a series stand for it in the curves, the others are
  shown after them.
- ``RUN/store/`` — the run's trajectories: written as the static viewer into ``RUN/viewer/``, and the report
  links each evaluation's episodes and each policy version's trajectories into it.

Lines or files that do not parse are listed at the top of the report rather than stopping it: a report is
most wanted when a run went wrong.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from guiagent.data.store import iter_json_lines
from guiagent.errors import DataError
from guiagent.ui.viewer import STATIC, environment, open_store, page_key, write_static

KNOWN_SERIES = ("reward_mean", "success_rate", "loss", "kl", "entropy", "grad_norm", "lr")
PHASE_PREFIX = "time/"
# The trainer's phases in loop order (CONVENTIONS.md §3): the legend of the phase-time plot follows it.
PHASES = ("rollout", "reward", "advantage", "update", "sync_weights", "evaluate", "checkpoint")
NOT_SERIES = frozenset({"step", "time"})
EVAL_COLUMNS = frozenset({"name", "protocol", "success", "sop", "episodes", "per_template", "store_episode_ids"})


def read_metrics(path: Path, warnings: list[str]) -> list[dict[str, Any]]:
    """The objects of ``metrics.jsonl`` in file order; lines that are not JSON objects go to ``warnings``."""
    if not path.exists():
        warnings.append(f"{path}: missing (no update step logged)")
        return []
    rows = []
    for lineno, data in iter_json_lines(path, on_error=lambda exc: warnings.append(f"{exc} (skipped)")):
        if isinstance(data, dict):
            rows.append(data)
        else:
            warnings.append(f"file {path}, record {lineno}: not a JSON object (skipped)")
    return rows


def numeric_series(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Every numeric key of the metric rows as ``(step, value)`` points, known series first, then the phase
    times in loop order, then the rest by name. A row without a numeric ``step`` counts by its position."""
    series: dict[str, list[tuple[float, float]]] = {}
    for i, row in enumerate(rows):
        step = row.get("step")
        x = float(step) if _is_number(step) else float(i)
        for key, value in row.items():
            if key not in NOT_SERIES and _is_number(value):
                series.setdefault(key, []).append((x, float(value)))

    def order(key: str) -> tuple:
        if key in KNOWN_SERIES:
            return (0, KNOWN_SERIES.index(key), key)
        if key.startswith(PHASE_PREFIX):
            phase = key[len(PHASE_PREFIX):]
            return (1, PHASES.index(phase) if phase in PHASES else len(PHASES), key)
        return (2, 0, key)

    return {key: series[key] for key in sorted(series, key=order)}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def plot_name(key: str) -> str:
    """The file stem of a series' plot: the trainer's own naming (``custom/clip`` → ``custom_clip``), and one
    ``phase_times`` for all the ``time/<phase>`` series."""
    return "phase_times" if key.startswith(PHASE_PREFIX) else re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def curves(series: Mapping[str, list[tuple[float, float]]], run: Path) -> list[dict[str, str]]:
    """One plot per series (one for all phase times), in ``series`` order, as ``{"title", "path"}`` with
    ``path`` relative to ``run``: the trainer's ``RUN/plots/<name>.png`` where it drew one (the trainer plots
    every series at the end of a run), else one drawn here into ``RUN/report/<name>.png``."""
    plots: list[dict[str, str]] = []
    for key in series:
        name = plot_name(key)
        if any(p["name"] == name for p in plots):
            continue  # the phase times after the first: drawn together
        phase = key.startswith(PHASE_PREFIX)
        path = run / "plots" / f"{name}.png"
        if not path.exists():
            path = run / "report" / f"{name}.png"
            lines = ({k[len(PHASE_PREFIX):]: v for k, v in series.items() if k.startswith(PHASE_PREFIX)} if phase
                     else {key: series[key]})
            _draw("seconds per phase" if phase else key, lines, path, log=key == "lr")
        plots.append({"name": name, "title": "phase times" if phase else key, "path": path.relative_to(run).as_posix()})
    return plots


def _draw(title: str, lines: Mapping[str, list[tuple[float, float]]], path: Path, log: bool = False) -> None:
    """A PNG of ``lines`` (label → (step, value) points) against the step; a legend when there are several."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a training host
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for label, points in lines.items():
        ax.plot(*zip(*points), marker="." if len(points) < 50 else None, label=label)
    ax.set(title=title, xlabel="step")
    if log and all(v > 0 for points in lines.values() for _, v in points):
        ax.set_yscale("log")
    if len(lines) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def read_evals(folder: Path, warnings: list[str]) -> list[dict[str, Any]]:
    """The evaluation files of ``RUN/eval/`` in training order: ``before_rl``, the others by name (the trainer's
    ``step-000020`` names sort by step), ``after_rl``."""
    evals = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            warnings.append(f"file {path}: not readable JSON: {exc} (skipped)")
            continue
        if not isinstance(data, dict):
            warnings.append(f"file {path}: not a JSON object (skipped)")
            continue
        data.setdefault("name", path.stem)
        per_template = data.get("per_template")
        data["per_template"] = per_template if isinstance(per_template, dict) else {}
        ids = data.get("store_episode_ids")
        data["store_episode_ids"] = [str(e) for e in ids] if isinstance(ids, list) else []
        # Numbers an evaluation reports beyond the columns (mean steps, parse failures, SOP's parts, ...).
        data["more"] = {k: v for k, v in sorted(data.items()) if k not in EVAL_COLUMNS and _is_number(v)}
        evals.append(data)
    rank = {"before_rl": 0, "after_rl": 2}
    return sorted(evals, key=lambda e: (rank.get(str(e["name"]), 1), str(e["name"])))


def _template_rows(evals: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per template: its success in each evaluation, and the last evaluation's minus the first's."""
    rows = []
    for template in sorted({t for e in evals for t in e["per_template"]}):
        values = [e["per_template"].get(template) for e in evals]
        first, last = values[0], values[-1]
        delta = last - first if len(evals) > 1 and _is_number(first) and _is_number(last) else None
        rows.append({"template": template, "values": values, "delta": delta})
    return rows


def _summary(rows: Sequence[Mapping[str, Any]], series: Mapping[str, list[tuple[float, float]]]) -> dict[str, Any]:
    times = [r["time"] for r in rows if _is_number(r.get("time"))]
    versions = [str(r["policy_version"]) for r in rows if r.get("policy_version") is not None]
    table = []
    for key, points in series.items():
        values = [v for _, v in points if math.isfinite(v)]
        table.append({"key": key, "last": points[-1][1], "min": min(values) if values else None,
                      "max": max(values) if values else None, "n": len(points)})
    return {"steps": len(rows), "seconds": times[-1] - times[0] if len(times) > 1 else None,
            "first_version": versions[0] if versions else None, "last_version": versions[-1] if versions else None,
            "table": table}


def write_report(run_dir: str | os.PathLike, *, viewer: bool = True) -> Path:
    """Write ``RUN/report.html`` (with ``RUN/report/*.png`` and the static viewer in ``RUN/viewer/``).

    Args:
        run_dir: The run directory; every part it reads is optional (see the module docstring).
        viewer: Write the static viewer of ``RUN/store/`` and link into it. Writing it again later copies
            only the screenshots it lacks; False leaves the report without trajectory links.

    Returns:
        The report's path.

    Raises:
        DataError: ``run_dir`` is not a directory, or its store cannot be read (the message names the file).
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise DataError("no such run directory", file=str(run))
    warnings: list[str] = []
    rows = read_metrics(run / "metrics.jsonl", warnings)
    series = numeric_series(rows)
    plots = curves(series, run)
    evals = read_evals(run / "eval", warnings)
    episodes, versions = {}, []
    if viewer and (run / "store").is_dir():
        written = write_static(open_store(run / "store"), run / "viewer", title=f"Trajectories of {run.name}")
        episodes = {r.episode_id: r for r in written}
        versions = sorted({r.policy_version for r in written})
    elif viewer:
        warnings.append(f"{run / 'store'}: missing (no trajectories to link)")
    html = environment().get_template("report.html").render(
        css=(STATIC / "ui.css").read_text(encoding="utf-8"), title=f"Training report — {run.name}", run=run,
        warnings=warnings, plots=plots,
        trainer_plots=sorted({p.relative_to(run).as_posix() for p in (run / "plots").glob("*.png")}
                             - {p["path"] for p in plots}),
        summary=_summary(rows, series), evals=evals, templates=_template_rows(evals), episodes=episodes,
        versions=versions, page_key=page_key)
    path = run / "report.html"
    path.write_text(html, encoding="utf-8")
    return path
