"""A run's metrics: ``RUN/metrics.jsonl`` (one JSON object per update), TensorBoard event files, optional
Weights & Biases, and PNG plots of every series in ``RUN/plots/``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# Plotted first, in this order; any other numeric series follows.
KNOWN = ("reward_mean", "success_rate", "loss", "kl", "entropy", "grad_norm", "lr")
SKIP = ("step", "time", "skipped_update")  # not worth a plot of their own
PHASES = ("rollout", "reward", "advantage", "update", "sync_weights", "evaluate", "checkpoint")


class MetricsLog:
    """Appends one row per update and mirrors it to TensorBoard / W&B.

    On resume, rows after the checkpoint's step (written by the killed run after its last checkpoint) are
    dropped, so the file holds each step once.

    Args:
        run_dir: The run directory.
        resume_step: The step a resumed run continues from (None: a fresh run; an old file is replaced).
        tensorboard: Write TensorBoard event files to ``RUN/tensorboard``.
        wandb_project: Also log to this W&B project (needs ``wandb`` installed and logged in).
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None, tensorboard: bool = True,
                 wandb_project: str | None = None):
        self.path = run_dir / "metrics.jsonl"
        self.plots = run_dir / "plots"
        kept = []
        if resume_step is not None and self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip() and json.loads(line).get("step", 0) <= resume_step:
                    kept.append(line)
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        self.wandb = None
        if wandb_project:
            import wandb

            self.wandb = wandb.init(project=wandb_project, dir=str(run_dir), name=run_dir.name, resume="allow")

    def log(self, step: int, row: dict[str, Any]) -> None:
        row = {"step": step, **row}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        scalars = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "step" and math.isfinite(v)}
        if self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(key, value, step)
            self.writer.flush()
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)

    def rows(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def plot(self) -> list[Path]:
        """One PNG per numeric series (known ones first) and one of the phase times; returns the paths."""
        from guiagent.trainer.plots import _pyplot

        rows = self.rows()
        if not rows:
            return []
        self.plots.mkdir(parents=True, exist_ok=True)
        numeric = [k for k in rows[0] if k not in SKIP and not k.startswith("time/")]
        for row in rows[1:]:
            numeric += [k for k in row if k not in numeric and k not in SKIP and not k.startswith("time/")]
        keys = [k for k in KNOWN if k in numeric] + [k for k in numeric if k not in KNOWN]
        plt = _pyplot()
        written = []
        for key in keys:
            points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            if not points:
                continue
            fig, ax = plt.subplots(figsize=(5, 3))
            ax.plot(*zip(*points), marker="o" if len(points) < 30 else None, color="#4c72b0")
            ax.set(title=key, xlabel="update")
            fig.tight_layout()
            path = self.plots / f"{key.replace('/', '_')}.png"
            fig.savefig(path, dpi=90)
            plt.close(fig)
            written.append(path)
        phases = [p for p in PHASES if any(f"time/{p}" in r for r in rows)]
        if phases:
            fig, ax = plt.subplots(figsize=(6, 3.5))
            bottom = [0.0] * len(rows)
            steps = [r["step"] for r in rows]
            for phase in phases:
                values = [float(r.get(f"time/{phase}", 0.0)) for r in rows]
                ax.bar(steps, values, bottom=bottom, label=phase)
                bottom = [b + v for b, v in zip(bottom, values)]
            ax.set(title="seconds per phase", xlabel="update", ylabel="s")
            ax.legend(fontsize=7)
            fig.tight_layout()
            path = self.plots / "phase_times.png"
            fig.savefig(path, dpi=90)
            plt.close(fig)
            written.append(path)
        return written

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()


__all__ = ["KNOWN", "PHASES", "MetricsLog"]
