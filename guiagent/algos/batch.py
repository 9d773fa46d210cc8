"""The one input every advantage estimator takes, and the group statistics they share.

A training sample is one *step* of one trajectory (DESIGN.md "Training"). The trainer flattens its
rollouts into an :class:`AdvantageBatch` of N rows and calls any registered estimator the same way::

    advantages = get_advantage("gigpo")(batch, gamma=0.95)   # (N,) float32

so it never special-cases an algorithm. Estimators are pure: tensors in, tensors out, no I/O.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from guiagent.errors import DataError
from guiagent.types import Trajectory

Norm = Literal["std", "mean"]

# Added to the group std before dividing (the verl/GRPO convention). All-equal groups have a numerator
# of exactly 0, so they get advantage exactly 0 whatever epsilon is; epsilon only bounds the scale
# of near-constant groups (std 1e-9 must not turn a rounding difference into an advantage of 1e3).
DEFAULT_EPSILON = 1e-6


def dense_ids(keys: Sequence[Hashable]) -> torch.Tensor:
    """Map hashable keys to dense ids in first-seen order: ``["b", "a", "b"] -> [0, 1, 0]``.

    Args:
        keys: N hashable keys (task ids, episode ids, anchor keys).

    Returns:
        (N,) int64 tensor.
    """
    index: dict[Hashable, int] = {}
    return torch.tensor([index.setdefault(k, len(index)) for k in keys], dtype=torch.long)


@dataclass(frozen=True)
class AdvantageBatch:
    """N step samples, flattened from groups of trajectories. Every tensor has shape (N,).

    Attributes:
        rewards: float, the step's immediate reward r_t (outcome-only setups put the task reward on the
            last step and 0 elsewhere; single-step grounding has one step per trajectory).
        group_ids: int64, the comparison group: trajectories of the same task and seed (GRPO/GiGPO/ARPO),
            the N rollouts of one expert trajectory (UI-S1), or the G samples drawn at one state (Hi-Agent).
        traj_ids: int64, the trajectory the row belongs to; a trajectory lies in exactly one group.
        step_ids: int64, 0-based step index inside the trajectory (UI-S1: the expert step). Rows of one
            trajectory may come in any order; (traj_id, step_id) pairs are unique.
        mask: bool, True for rows that become training samples. False rows are context only (UI-S1
            patched steps): their reward still counts in returns and trajectory totals, but they take no
            part in group statistics and get advantage 0.
        matched: bool or None, whether the policy's action matched the expert's (UI-S1 only).
        anchor_ids: int64 or None, anchor-state id (GiGPO only; see :mod:`guiagent.algos.anchors`).
    """

    rewards: torch.Tensor
    group_ids: torch.Tensor
    traj_ids: torch.Tensor
    step_ids: torch.Tensor
    mask: torch.Tensor
    matched: torch.Tensor | None = None
    anchor_ids: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.rewards, torch.Tensor) or self.rewards.dim() != 1:
            raise DataError(f"AdvantageBatch.rewards: expected a 1-D tensor, got {getattr(self.rewards, 'shape', self.rewards)!r}")
        n = self.rewards.shape[0]
        for name in ("rewards", "group_ids", "traj_ids", "step_ids", "mask", "matched", "anchor_ids"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, torch.Tensor) or value.dim() != 1 or value.shape[0] != n:
                raise DataError(f"AdvantageBatch.{name}: expected a 1-D tensor of length {n}, got "
                                f"{getattr(value, 'shape', type(value).__name__)}")
        if not self.rewards.is_floating_point():
            raise DataError(f"AdvantageBatch.rewards: expected a float tensor, got {self.rewards.dtype}")
        bad = (~torch.isfinite(self.rewards)).nonzero()
        if len(bad):
            # A NaN reward is a failed reward function; silently treating it as 0 would train on it.
            i = int(bad[0])
            raise DataError(f"AdvantageBatch.rewards: reward is {self.rewards[i].item()}", record=i)
        for name in ("group_ids", "traj_ids", "step_ids", "anchor_ids"):
            value = getattr(self, name)
            if value is not None and (value.is_floating_point() or value.dtype == torch.bool):
                raise DataError(f"AdvantageBatch.{name}: expected an integer tensor, got {value.dtype}")
        for name in ("mask", "matched"):
            value = getattr(self, name)
            if value is not None and value.dtype != torch.bool:
                raise DataError(f"AdvantageBatch.{name}: expected a bool tensor, got {value.dtype}")
        traj_group: dict[int, int] = {}
        seen: set[tuple[int, int]] = set()
        for i, (t, g, s) in enumerate(zip(self.traj_ids.tolist(), self.group_ids.tolist(), self.step_ids.tolist())):
            if traj_group.setdefault(t, g) != g:
                raise DataError(f"AdvantageBatch: trajectory {t} is in groups {traj_group[t]} and {g}", record=i)
            if (t, s) in seen:
                raise DataError(f"AdvantageBatch: trajectory {t} has step {s} twice", record=i)
            seen.add((t, s))

    def __len__(self) -> int:
        return self.rewards.shape[0]

    def select(self, rows: torch.Tensor) -> AdvantageBatch:
        """The sub-batch of ``rows`` ((N,) bool mask or int64 indices), e.g. after a sampling filter."""
        pick = {name: getattr(self, name) for name in ("rewards", "group_ids", "traj_ids", "step_ids", "mask", "matched", "anchor_ids")}
        return AdvantageBatch(**{k: (v[rows] if v is not None else None) for k, v in pick.items()})

    @classmethod
    def from_trajectories(
        cls,
        groups: Sequence[Sequence[Trajectory]],
    ) -> AdvantageBatch:
        """Flatten groups of rewarded trajectories into a batch, rows in group → trajectory → step order.

        Args:
            groups: The comparison groups; every step must carry ``Step.reward``. GiGPO's anchor ids come from
                :func:`guiagent.algos.anchors.anchor_ids` (``dataclasses.replace(batch, anchor_ids=...)``).

        Returns:
            The batch. ``mask`` is ``not step.patched``; ``matched`` is ``step.matched`` (UI-S1's
            verdict, arXiv 2509.11543) when every step has one, and None when no step has one.

        Raises:
            DataError: a step has no reward, or only some steps record ``matched``.
        """
        rewards, group_ids, traj_ids, step_ids, mask, matched = [], [], [], [], [], []
        traj_count = 0
        for g, group in enumerate(groups):
            for traj in group:
                for step in traj.steps:
                    if step.reward is None:
                        raise DataError("step has no reward", record=f"{traj.episode_id} step {step.index}")
                    rewards.append(float(step.reward))
                    group_ids.append(g)
                    traj_ids.append(traj_count)
                    step_ids.append(step.index)
                    mask.append(not step.patched)
                    matched.append(step.matched)
                traj_count += 1
        have_matched = [m is not None for m in matched]
        if any(have_matched) and not all(have_matched):
            raise DataError("some steps record Step.matched and some do not",
                            record=have_matched.index(False))
        return cls(
            rewards=torch.tensor(rewards, dtype=torch.float32),
            group_ids=torch.tensor(group_ids, dtype=torch.long),
            traj_ids=torch.tensor(traj_ids, dtype=torch.long),
            step_ids=torch.tensor(step_ids, dtype=torch.long),
            mask=torch.tensor(mask, dtype=torch.bool),
            matched=torch.tensor([bool(m) for m in matched], dtype=torch.bool) if all(have_matched) and matched else None,
            anchor_ids=None,
        )


def normalize_in_groups(
    scores: torch.Tensor,
    keys: torch.Tensor,
    *,
    norm: Norm = "std",
    epsilon: float = DEFAULT_EPSILON,
) -> torch.Tensor:
    """GRPO normalisation (arXiv 2402.03300): ``(s - mean) / (std + eps)`` or ``s - mean`` per group.

    The std is Bessel-corrected (``torch.std``), so one group [1, 0, 0, 1] gives ±0.866 and mean-only
    gives ±0.5. Decided edge cases: a group of one member has no peer to compare with, so its
    advantage is 0 (verl instead keeps the raw score there); an all-equal group gives exactly 0.

    Args:
        scores: (M,) float scores.
        keys: (M,) int64 group key, or (M, K) int64 compound key (rows compared as tuples).
        norm: ``"std"`` divides by the group std, ``"mean"`` only subtracts the group mean (GiGPO's F = 1).
        epsilon: Added to the std before dividing.

    Returns:
        (M,) float advantages, same dtype as ``scores``.
    """
    if norm not in ("std", "mean"):
        raise ValueError(f"norm must be 'std' or 'mean', got {norm!r}")
    if scores.numel() == 0:
        return scores.clone()
    _, inverse, counts = torch.unique(keys, dim=0, return_inverse=True, return_counts=True)
    # float64 sums: advantages must not depend on the order rows come in (permutation property).
    s = scores.double()
    sums = torch.zeros(len(counts), dtype=torch.float64).index_add_(0, inverse, s)
    means = sums / counts
    centred = s - means[inverse]
    if norm == "mean":
        return centred.to(scores.dtype)
    sq = torch.zeros(len(counts), dtype=torch.float64).index_add_(0, inverse, centred**2)
    std = torch.where(counts > 1, (sq / (counts - 1).clamp(min=1)).sqrt(), torch.zeros_like(sq))
    return (centred / (std[inverse] + epsilon)).to(scores.dtype)


def group_std(scores: torch.Tensor, keys: torch.Tensor) -> dict[int, float]:
    """Bessel std of ``scores`` per group key; a single-member group has std 0 (no spread to learn from).

    Args:
        scores: (M,) float scores.
        keys: (M,) int64 group keys.

    Returns:
        ``{key: std}``.
    """
    out: dict[int, float] = {}
    for key in keys.unique().tolist():
        member = scores[keys == key].double()
        out[key] = float(member.std()) if len(member) > 1 else 0.0
    return out


def trajectory_totals(batch: AdvantageBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sum each trajectory's step rewards (masked rows included: a patched step's reward still happened).

    Returns:
        ``(totals, traj_groups, row_to_traj)``: (K,) float64 total reward of each of the K trajectories,
        (K,) int64 their group ids, and (N,) int64 the index into those K for every row.
    """
    _, row_to_traj = torch.unique(batch.traj_ids, return_inverse=True)
    k = int(row_to_traj.max()) + 1 if len(batch) else 0
    totals = torch.zeros(k, dtype=torch.float64).index_add_(0, row_to_traj, batch.rewards.double())
    traj_groups = torch.zeros(k, dtype=torch.long).index_copy_(0, row_to_traj, batch.group_ids)
    return totals, traj_groups, row_to_traj


def discounted_returns(
    batch: AdvantageBatch,
    gamma: float,
    segment_end: torch.Tensor | None = None,
    *,
    include_end: bool = True,
) -> torch.Tensor:
    """R_t = Σ_{k=t}^{t_end} γ^{k-t} r_k inside each trajectory, walking its rows in step order.

    Args:
        batch: The rows.
        gamma: Discount factor in [0, 1].
        segment_end: (N,) bool, rows that end a return segment (UI-S1: mismatched steps). None means a
            segment runs to the end of the trajectory (GiGPO).
        include_end: Whether a segment-ending row's reward counts in the returns of the steps before it
            (UI-S1 paper: yes; its released code: no). The ending row's own return is always its reward.

    Returns:
        (N,) float64 returns.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    returns = torch.zeros(len(batch), dtype=torch.float64)
    rewards = batch.rewards.double().tolist()
    ends = segment_end.tolist() if segment_end is not None else [False] * len(batch)
    rows_of: dict[int, list[int]] = {}
    for i, t in enumerate(batch.traj_ids.tolist()):
        rows_of.setdefault(t, []).append(i)
    steps = batch.step_ids.tolist()
    for rows in rows_of.values():
        running = 0.0
        for i in sorted(rows, key=steps.__getitem__, reverse=True):
            if ends[i]:
                returns[i] = rewards[i]
                running = rewards[i] if include_end else 0.0
            else:
                running = rewards[i] + gamma * running
                returns[i] = running
    return returns


__all__ = [
    "DEFAULT_EPSILON",
    "AdvantageBatch",
    "Norm",
    "dense_ids",
    "discounted_returns",
    "group_std",
    "normalize_in_groups",
    "trajectory_totals",
]
