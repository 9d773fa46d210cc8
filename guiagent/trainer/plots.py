"""PNG plots of a run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curve(values: Sequence[float], path: str | Path, *, title: str, ylabel: str, log: bool = False) -> None:
    """One curve over optimizer steps (1-based), e.g. the SFT loss."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(values) + 1), values, color="#4c72b0")
    ax.set(title=title, xlabel="step", ylabel=ylabel, yscale="log" if log else "linear")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_rewards_and_advantages(
    rewards: Sequence[float], advantages: Mapping[str, Sequence[float]], path: str | Path, *, reward_values: Sequence[float]
) -> None:
    """Two panels: how many samples got each step reward, and every sample's advantage per estimator.

    Args:
        rewards: One step reward per sample.
        advantages: Estimator name (legend label) → one advantage per sample, same order as ``rewards``.
        path: The PNG to write.
        reward_values: The reward levels to count (bars), in order.
    """
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.bar([str(v) for v in reward_values], [sum(r == v for r in rewards) for v in reward_values], color="#4c72b0")
    left.set(title="Step rewards of the samples", xlabel="reward", ylabel="samples")
    width = 0.8 / max(1, len(advantages))
    for k, (name, values) in enumerate(advantages.items()):
        offset = (k - (len(advantages) - 1) / 2) * width
        right.bar([i + offset for i in range(len(values))], list(values), width=width, label=name)
    right.axhline(0, color="black", linewidth=0.5)
    if all(v == 0 for values in advantages.values() for v in values):
        right.text(0.5, 0.6, "every advantage is 0:\nall rewards in each group are equal", ha="center",
                   transform=right.transAxes)
    right.set(title="Advantage per sample (task-major order)", xlabel="sample", ylabel="advantage")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

