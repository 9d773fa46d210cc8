"""One policy-gradient update on rollout groups: recompute log-probs, apply a registered loss, step.

Rows follow :meth:`guiagent.algos.AdvantageBatch.from_trajectories` exactly (group → trajectory → step),
so the advantages any registered estimator returns line up with them. Rows whose ``mask`` is False there
(context-only steps, ``Step.patched``) are not encoded at all: they contribute nothing to the loss or its
gradient. The old log-probs are the ones the rollout recorded with each response (``Step.logprobs``, one
per ``Step.token_ids``), and the prompt is rebuilt with :func:`guiagent.policy.prompts.step_messages` (the
history rule the rollout sampled with, or a Hi-Agent sample's planner or executor prompt), i.e. the same
dialogue the response was sampled in.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from guiagent.errors import DataError
from guiagent.policy.prompts import step_messages
from guiagent.trainer.batching import TrainingSample, collate, response_logprobs
from guiagent.types import Trajectory


def rollout_samples(
    groups: Sequence[Sequence[Trajectory]], prompt: Any, image_root: str | os.PathLike | None = None
) -> tuple[list[TrainingSample | None], list[tuple[float, ...] | None]]:
    """The training sample and recorded log-probs of every row, in ``AdvantageBatch`` row order.

    Returns:
        ``(samples, old_logprobs)``, both of length N; None at context-only (patched) rows.

    Raises:
        DataError: a trained step lacks its token ids or log-probs, or their lengths differ.
    """
    samples: list[TrainingSample | None] = []
    old: list[tuple[float, ...] | None] = []
    for group in groups:
        for trajectory in group:
            for t, step in enumerate(trajectory.steps):
                if step.patched:
                    samples.append(None)
                    old.append(None)
                    continue
                record = f"{trajectory.episode_id} step {step.index}"
                ids = step.token_ids
                if not ids or step.logprobs is None or len(step.logprobs) != len(ids):
                    raise DataError(
                        "a trained step needs Step.token_ids and as many Step.logprobs "
                        f"(got {len(ids or ())} ids, {len(step.logprobs or ())} log-probs)",
                        record=record,
                    )
                messages = step_messages(trajectory, t, prompt, None if image_root is None else str(image_root))
                samples.append(TrainingSample(messages, ids, record))
                old.append(tuple(step.logprobs))
    return samples, old


def policy_gradient_step(
    model: Any,
    optimizer: torch.optim.Optimizer,
    groups: Sequence[Sequence[Trajectory]],
    advantages: torch.Tensor,
    *,
    processor: Any,
    prompt: Any,
    image_root: str | os.PathLike | None = None,
    loss_name: str = "ppo_clip",
    max_grad_norm: float = 1.0,
    **loss_options: Any,
) -> dict[str, Any]:
    """One optimizer step of the registered loss ``loss_name`` over every trained row of ``groups``.

    All trained rows go through the model in one forward pass (one batch; no micro-batching yet).

    Args:
        model: The policy model being trained (its ``requires_grad`` parameters are updated).
        optimizer: Optimizer over those parameters.
        groups: Rewarded rollout groups (e.g. :func:`guiagent.rollout.semi_online.semi_online_rollouts`).
        advantages: (N,) advantages in ``AdvantageBatch.from_trajectories(groups)`` row order (what
            ``get_advantage(name)(batch)`` returns).
        processor: The model's processor.
        prompt: The :class:`~guiagent.policy.prompts.PromptConfig` the rollouts were sampled with.
        image_root: Directory store-relative screenshot paths resolve against.
        loss_name: A loss registered in :mod:`guiagent.algos.registry`.
        max_grad_norm: Global gradient-norm clip.
        **loss_options: Keyword options of that loss (e.g. ``clip_low``, ``aggregation``).

    Returns:
        ``loss``, ``grad_norm`` (before clipping), the loss's own metrics (``ppo_clip``: ``pg_loss``,
        ``clip_fraction``, ``ratio_mean``, ``approx_kl_old`` ...), ``samples`` / ``context_rows`` /
        ``tokens``,
        and ``max_abs_logprob_diff``: the largest |recomputed − recorded| log-prob before the step (the
        trainer/sampler mismatch; ~1e-5 when both run the same weights in fp32).

    Raises:
        DataError: ``advantages`` does not have one entry per row, or no row is trained.
        ConfigError: ``loss_name`` is not registered.
    """
    from guiagent.algos import get_loss

    loss_fn = get_loss(loss_name)
    samples, old = rollout_samples(groups, prompt, image_root)
    advantages = torch.as_tensor(advantages, dtype=torch.float32)
    if advantages.shape != (len(samples),):
        shape = tuple(advantages.shape)
        raise DataError(f"advantages has shape {shape}; the groups have {len(samples)} rows")
    rows = [i for i, s in enumerate(samples) if s is not None]
    if not rows:
        raise DataError("no trained rows: every step is context only")
    batch = collate(processor, [samples[i] for i in rows])
    span = batch.response_ids.shape[1]
    old_logprobs = torch.tensor([list(old[i]) + [0.0] * (span - len(old[i])) for i in rows])
    params = [p for p in model.parameters() if p.requires_grad]
    logprobs = response_logprobs(model, batch)
    mask = batch.response_mask
    loss, metrics = loss_fn(logprobs, old_logprobs, advantages[rows], mask, **loss_options)
    if not torch.isfinite(loss):
        raise DataError(f"the {loss_name} loss is {float(loss)}; no step taken")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm))
    optimizer.step()
    diff = ((logprobs.detach() - old_logprobs).abs() * mask).max()
    return {
        "loss": float(loss.detach()),
        "grad_norm": grad_norm,
        **metrics,
        "samples": len(rows),
        "context_rows": len(samples) - len(rows),
        "tokens": int(mask.sum()),
        "max_abs_logprob_diff": float(diff),
    }


def recompute_logprobs(
    model: Any,
    processor: Any,
    trajectories: Sequence[Trajectory],
    prompt: Any,
    image_root: str | os.PathLike | None = None,
) -> list[Trajectory]:
    """``trajectories`` with every trained step's ``Step.logprobs`` recomputed under ``model``'s current
    weights (no gradient), for the same prompts and token ids.

    ARPO (arXiv 2505.16282) injects stored successes sampled by an older policy into all-failure groups;
    their recorded log-probs are stale, and the PPO ratio needs the old-policy log-probs of the policy that
    is being updated, so they are recomputed before the update. ``info["logprobs_recomputed"]`` marks them.
    """
    import dataclasses

    samples, _ = rollout_samples([[t] for t in trajectories], prompt, image_root)
    rows = [i for i, s in enumerate(samples) if s is not None]
    fresh: dict[int, tuple[float, ...]] = {}
    if rows:
        batch = collate(processor, [samples[i] for i in rows])
        with torch.no_grad():
            logprobs = response_logprobs(model, batch)
        for k, i in enumerate(rows):
            n = len(samples[i].response_ids)
            fresh[i] = tuple(float(v) for v in logprobs[k, :n])
    out, row = [], 0
    for trajectory in trajectories:
        steps = []
        for step in trajectory.steps:
            if row in fresh:
                step = dataclasses.replace(step, logprobs=fresh[row])
            steps.append(step)
            row += 1
        out.append(dataclasses.replace(trajectory, steps=tuple(steps),
                                       info={**trajectory.info, "logprobs_recomputed": True}))
    return out


__all__ = ["policy_gradient_step", "recompute_logprobs", "rollout_samples"]
