"""Advantage estimators: GRPO, RLOO, UI-S1 semi-online, GiGPO and Hi-Agent.

Every estimator has the registry's calling convention ``fn(batch, **options) -> (N,) float32``: one
advantage per row of the :class:`~guiagent.algos.batch.AdvantageBatch`, 0 on context-only rows
(``mask`` False). Keyword options default to the paper's values; where a paper and its released code
differ, the paper is the default and the code's choice is an option (DESIGN.md "Algorithms").

Shared decisions (see :func:`~guiagent.algos.batch.normalize_in_groups`): std is Bessel-corrected, a
single-member group and an all-equal group get advantage 0, epsilon 1e-6 is added to the std.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from guiagent.algos.batch import (
    DEFAULT_EPSILON,
    AdvantageBatch,
    Norm,
    discounted_returns,
    normalize_in_groups,
    trajectory_totals,
)
from guiagent.algos.registry import register_advantage
from guiagent.errors import DataError


def episode_advantages(batch: AdvantageBatch, *, norm: Norm = "std", epsilon: float = DEFAULT_EPSILON) -> torch.Tensor:
    """GRPO over trajectories: each trajectory's total reward normalised within its group, per row.

    Each trajectory counts once in its group's statistics, however many steps it has.

    Returns:
        (N,) float64, the trajectory's advantage on each of its rows (mask not applied).
    """
    totals, traj_groups, row_to_traj = trajectory_totals(batch)
    return normalize_in_groups(totals, traj_groups, norm=norm, epsilon=epsilon)[row_to_traj]


def step_advantages(
    batch: AdvantageBatch,
    returns: torch.Tensor,
    step_group: torch.Tensor,
    *,
    norm: Norm = "std",
    epsilon: float = DEFAULT_EPSILON,
) -> torch.Tensor:
    """Normalise per-row returns within step groups, over trainable rows only.

    Args:
        batch: The rows (its ``mask`` selects who takes part).
        returns: (N,) per-row returns or rewards.
        step_group: (N,) or (N, K) int64 step-group key of each row.

    Returns:
        (N,) float64, 0 on masked rows.
    """
    out = torch.zeros(len(batch), dtype=torch.float64)
    m = batch.mask
    if bool(m.any()):
        out[m] = normalize_in_groups(returns.double()[m], step_group[m], norm=norm, epsilon=epsilon)
    return out


def _finish(advantages: torch.Tensor, batch: AdvantageBatch) -> torch.Tensor:
    return torch.where(batch.mask, advantages, torch.zeros_like(advantages)).to(torch.float32)


@register_advantage("grpo")
def grpo_advantages(batch: AdvantageBatch, *, norm: Norm = "std", epsilon: float = DEFAULT_EPSILON) -> torch.Tensor:
    """GRPO outcome advantages (arXiv 2402.03300), broadcast to every step of the trajectory.

    A trajectory's score is the sum of its step rewards; scores are normalised within each group.
    One group with scores [1, 0, 0, 1]: mean 0.5, Bessel std 0.577 → [0.866, -0.866, -0.866, 0.866];
    ``norm="mean"`` → [0.5, -0.5, -0.5, 0.5] (Dr. GRPO, arXiv 2503.20783, drops the std).

    Args:
        batch: N rows.
        norm: ``"std"`` or ``"mean"``.
        epsilon: Added to the group std.

    Returns:
        (N,) float32 advantages.
    """
    return _finish(episode_advantages(batch, norm=norm, epsilon=epsilon), batch)


@register_advantage("rloo")
def rloo_advantages(batch: AdvantageBatch) -> torch.Tensor:
    """REINFORCE leave-one-out (arXiv 2402.14740): A_i = s_i - mean of the other members' scores.

    Equals ``G/(G-1) * (s_i - mean)``. A single-member group has no other member: advantage 0.

    Returns:
        (N,) float32 advantages, trajectory score = sum of its step rewards, broadcast to its rows.
    """
    totals, traj_groups, row_to_traj = trajectory_totals(batch)
    centred = normalize_in_groups(totals, traj_groups, norm="mean")
    _, inverse, counts = torch.unique(traj_groups, return_inverse=True, return_counts=True)
    size = counts[inverse].double()
    loo = torch.where(size > 1, centred * size / (size - 1).clamp(min=1), torch.zeros_like(centred))
    return _finish(loo[row_to_traj], batch)


def uis1_returns(batch: AdvantageBatch, *, gamma: float = 0.5, include_mismatch: bool = True) -> torch.Tensor:
    """UI-S1 discounted future returns over the matched segment (arXiv 2509.11543).

    R_t = Σ_{k=t}^{t_end} γ^{k-t} r_k with t_end the first mismatched step at or after t (or the last
    step). With patching a trajectory goes on after a mismatch, so each mismatch closes one segment and
    the next step starts a new one. ``include_mismatch=False`` is the released code's variant: the
    mismatched step's reward does not flow into earlier steps' returns (its own return is its reward).

    Returns:
        (N,) float64 returns.

    Raises:
        DataError: the batch has no ``matched`` flags.
    """
    if batch.matched is None:
        raise DataError("UI-S1 returns need AdvantageBatch.matched (the per-step expert match flags)")
    return discounted_returns(batch, gamma, ~batch.matched, include_end=include_mismatch)


@register_advantage("uis1")
def uis1_advantages(
    batch: AdvantageBatch,
    *,
    gamma: float = 0.5,
    omega: float = 1.0,
    norm: Norm = "std",
    epsilon: float = DEFAULT_EPSILON,
    include_mismatch: bool = True,
    episode_score: Literal["total", "immediate"] = "total",
) -> torch.Tensor:
    """UI-S1 semi-online advantages (arXiv 2509.11543): A = A^E + ω·A^S.

    Rows: ``group_ids`` = the N rollouts of one expert trajectory, ``step_ids`` = the expert step,
    ``matched`` = the policy's action matched the expert's, ``mask`` False on patched (context) rows.

    * A^S: the return R_t (:func:`uis1_returns`) normalised over the rollouts' rows at the same expert
      step of the same task, i.e. step groups keyed by (group_id, step_id).
    * A^E: ``episode_score="total"`` (paper) normalises each trajectory's total reward R(τ) = Σ_t r_t
      over the N trajectories; ``"immediate"`` is the released code's variant, which normalises every
      row's immediate reward r_t over all rows of the task.

    Args:
        batch: N rows with ``matched`` set.
        gamma: Discount of future step rewards.
        omega: Weight of the step-level advantage.
        norm: ``"std"`` or ``"mean"`` for both levels.
        epsilon: Added to group stds.
        include_mismatch: Whether the first mismatch's reward ends (and counts in) the segment.
        episode_score: ``"total"`` or ``"immediate"``.

    Returns:
        (N,) float32 advantages, 0 on patched rows.
    """
    returns = uis1_returns(batch, gamma=gamma, include_mismatch=include_mismatch)
    a_step = step_advantages(batch, returns, torch.stack([batch.group_ids, batch.step_ids], 1), norm=norm, epsilon=epsilon)
    if episode_score == "total":
        a_episode = episode_advantages(batch, norm=norm, epsilon=epsilon)
    elif episode_score == "immediate":
        a_episode = step_advantages(batch, batch.rewards, batch.group_ids, norm=norm, epsilon=epsilon)
    else:
        raise ValueError(f"episode_score must be 'total' or 'immediate', got {episode_score!r}")
    return _finish(a_episode + omega * a_step, batch)


@register_advantage("gigpo")
def gigpo_advantages(
    batch: AdvantageBatch,
    *,
    gamma: float = 0.95,
    omega: float = 1.0,
    norm: Norm = "std",
    epsilon: float = DEFAULT_EPSILON,
    episode_stats: Literal["trajectories", "steps"] = "trajectories",
) -> torch.Tensor:
    """GiGPO (arXiv 2505.10978): A = A^E + ω·A^S with step groups formed by anchor states.

    * A^E: GRPO over the group's trajectories (total reward, normalised by ``norm``).
    * A^S: R_t = Σ_{k≥t} γ^{k-t} r_k over the whole trajectory, normalised among the rows of the same
      group that share an anchor state, i.e. step groups keyed by (group_id, anchor_id). A state the
      same trajectory visits twice puts both visits in one step group, as in the paper.

    ``episode_stats`` says what the A^E mean and std are taken over. Group: X (1 step, total 1) and
    Y (3 steps, total 0). ``"trajectories"``: [1, 0] → X +0.707, Y -0.707. ``"steps"``: the rows
    [1, 0, 0, 0], mean 0.25, std 0.5 → X +1.5, Y -0.5.

    Args:
        batch: N rows with ``anchor_ids`` set (see :mod:`guiagent.algos.anchors`).
        gamma: Discount of step returns.
        omega: Weight of the step-level advantage.
        norm: ``"std"`` (F = std) or ``"mean"`` (F = 1), for both levels.
        epsilon: Added to group stds.
        episode_stats: ``"trajectories"`` (paper) or ``"steps"`` (released code).

    Returns:
        (N,) float32 advantages.

    Raises:
        DataError: the batch has no ``anchor_ids``.
    """
    if batch.anchor_ids is None:
        raise DataError("GiGPO needs AdvantageBatch.anchor_ids (anchor-state ids of the steps)")
    # Paper (Eq. 3): each trajectory counts once in its group's mean/std. Released code (verl-agent
    # gigpo/core_gigpo.py, episode_norm_reward, compute_mean_std_cross_steps=True by default): every step
    # row carries its trajectory's total and the stats run over those rows, so a trajectory with more
    # steps weighs more. Here those rows are the trainable ones, as at the step level.
    if episode_stats == "trajectories":
        a_episode = episode_advantages(batch, norm=norm, epsilon=epsilon)
    elif episode_stats == "steps":
        totals, _, row_to_traj = trajectory_totals(batch)
        a_episode = step_advantages(batch, totals[row_to_traj], batch.group_ids, norm=norm, epsilon=epsilon)
    else:
        raise ValueError(f"episode_stats must be 'trajectories' or 'steps', got {episode_stats!r}")
    returns = discounted_returns(batch, gamma)
    a_step = step_advantages(batch, returns, torch.stack([batch.group_ids, batch.anchor_ids], 1), norm=norm, epsilon=epsilon)
    return _finish(a_episode + omega * a_step, batch)


def foresight_reward(format_ok: bool, low_level_correct: Sequence[bool]) -> float:
    """Hi-Agent's high-level reward (arXiv 2510.14388): format + foresight.

    The foresight term is the success rate of the low-level policy's sampled actions when it executes
    the subgoal, i.e. the fraction of its samples that match the correct action. A subgoal that does
    not parse cannot be executed, so it earns 0 in total.

    Args:
        format_ok: The high-level output parsed (``<reasoning>…</reasoning><instruction>…</instruction>``).
        low_level_correct: One flag per low-level sample given this subgoal.

    Returns:
        A reward in [0, 2].
    """
    if not format_ok:
        return 0.0
    if not low_level_correct:
        raise ValueError("foresight_reward needs at least one low-level sample for a parsed subgoal")
    return 1.0 + sum(bool(c) for c in low_level_correct) / len(low_level_correct)


@register_advantage("hi_agent")
def hi_agent_advantages(batch: AdvantageBatch, *, norm: Norm = "std", epsilon: float = DEFAULT_EPSILON) -> torch.Tensor:
    """Hi-Agent per-state GRPO (arXiv 2510.14388), used at each level separately.

    Both policies are sampled G times at the same state; each sample is one row with its own
    ``traj_ids``, ``group_ids`` the episode and ``step_ids`` the state's step, so rows are compared within
    (group_id, step_id). Rewards are :func:`foresight_reward` for the high level and the action-match
    reward for the low level; advantages use the immediate reward (no discounting across states).

    Returns:
        (N,) float32 advantages.
    """
    keys = torch.stack([batch.group_ids, batch.step_ids], 1)
    return _finish(step_advantages(batch, batch.rewards, keys, norm=norm, epsilon=epsilon), batch)
