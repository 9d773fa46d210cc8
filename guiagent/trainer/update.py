"""One policy-gradient update on rollout groups: score the responses, apply a registered loss, step the engine.

Rows follow :meth:`guiagent.algos.AdvantageBatch.from_trajectories` exactly (group → trajectory → step), so
the advantages any registered estimator returns line up with them. Rows whose ``mask`` is False there
(context-only steps, ``Step.patched``) are not encoded at all: they contribute nothing to the loss or its
gradient. Each row's prompt is rebuilt with :func:`guiagent.policy.prompts.step_messages` (the history rule the
rollout sampled with, or a Hi-Agent sample's planner or executor prompt), i.e. the same dialogue the response
was sampled in; rows with the same prompt inputs (a GRPO group's G samples of one state) share one encoding.

The update runs in micro-batches (:func:`guiagent.trainer.batching.plan_micro_batches`: length buckets, prefix
groups scored once per group by :func:`~guiagent.trainer.batching.shared_prefix_logprobs`). Each micro-batch's
loss is scaled by its share of the batch, so the accumulated gradient is the whole batch's:
``token_mean`` weighs a micro-batch by its tokens / the batch's tokens, ``seq_mean`` by its sequences / the
batch's sequences (:func:`guiagent.algos.losses.aggregate`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import os
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch

from guiagent.errors import DataError
from guiagent.policy.prompts import step_messages
from guiagent.trainer.batching import (
    EncodedSample,
    TrainingSample,
    encode_sample,
    micro_batch_logprobs,
    plan_micro_batches,
)
from guiagent.types import Trajectory

OldLogprobs = Literal["recorded", "recompute"]


def _prompt_key(trajectory: Trajectory, t: int) -> tuple[Any, ...]:
    """Everything :func:`~guiagent.policy.prompts.step_messages` reads for step ``t`` (and a little more): two
    rows with equal keys have equal prompts, so their screenshots are decoded and encoded once."""

    def screen(step: Any) -> str:
        source = step.observation.screenshot
        return hashlib.sha1(source).hexdigest() if source is not None else f"path:{step.observation.screenshot_path}"

    step = trajectory.steps[t]
    return (
        trajectory.instruction, step.observation.instruction, screen(step), trajectory.info.get("level"),
        repr(step.info.get("previous_actions")), step.info.get("subgoal"),
        tuple((screen(s), s.response, s.patch) for s in trajectory.steps[:t]),
    )


def rollout_samples(
    groups: Sequence[Sequence[Trajectory]], processor: Any, prompt: Any,
    image_root: str | os.PathLike | None = None,
) -> tuple[list[EncodedSample | None], list[tuple[float, ...] | None]]:
    """The encoded training sample and recorded log-probs of every row, in ``AdvantageBatch`` row order.

    Returns:
        ``(samples, recorded)``, both of length N; None at context-only (patched) rows. ``recorded[i]`` is None
        too where step i carries no log-probs.

    Raises:
        DataError: a trained step lacks its token ids, or its log-probs are not one per token.
    """
    root = None if image_root is None else str(image_root)
    prompts: dict[tuple[Any, ...], EncodedSample] = {}
    samples: list[EncodedSample | None] = []
    recorded: list[tuple[float, ...] | None] = []
    for group in groups:
        for trajectory in group:
            for t, step in enumerate(trajectory.steps):
                if step.patched:
                    samples.append(None)
                    recorded.append(None)
                    continue
                record = f"{trajectory.episode_id} step {step.index}"
                ids = step.token_ids
                if not ids or (step.logprobs is not None and len(step.logprobs) != len(ids)):
                    raise DataError(
                        "a trained step needs Step.token_ids and, when it has Step.logprobs, one per token "
                        f"(got {len(ids or ())} ids, {len(step.logprobs or ())} log-probs)",
                        record=record,
                    )
                key = _prompt_key(trajectory, t)
                if key not in prompts:
                    prompts[key] = encode_sample(
                        processor, TrainingSample(step_messages(trajectory, t, prompt, root), ids, record))
                samples.append(dataclasses.replace(prompts[key], response_ids=tuple(ids), record=record))
                recorded.append(None if step.logprobs is None else tuple(step.logprobs))
    return samples, recorded


def _pad(rows: Sequence[torch.Tensor], span: int) -> torch.Tensor:
    """(B_k, T_k) blocks → one (ΣB_k, span) tensor, zero-padded on the right."""
    return torch.cat([torch.nn.functional.pad(r, (0, span - r.shape[1])) for r in rows])


def _aggregation(loss_fn: Callable[..., Any], options: dict[str, Any]) -> str:
    """The aggregation the loss will use: the option given, else the loss's own default."""
    parameter = inspect.signature(loss_fn).parameters.get("aggregation")
    default = parameter.default if parameter is not None else "token_mean"
    return options.get("aggregation", default)


def policy_gradient_step(
    engine: Any,
    groups: Sequence[Sequence[Trajectory]],
    advantages: torch.Tensor,
    *,
    processor: Any,
    prompt: Any,
    image_root: str | os.PathLike | None = None,
    loss_name: str = "ppo_clip",
    micro_batch_size: int = 8,
    old_logprobs: OldLogprobs = "recorded",
    ref_model: Any = None,
    share_prefix: bool = True,
    **loss_options: Any,
) -> dict[str, Any]:
    """One optimizer step of the registered loss ``loss_name`` over every trained row of ``groups``.

    ``engine.backward`` runs once per micro-batch (its loss scaled to its share of the batch; ``last`` on the
    final one) and ``engine.step`` once.

    Args:
        engine: A training engine (:class:`guiagent.trainer.engine.TorchEngine` or the DeepSpeed one): its
            ``module`` is the policy, ``backward(loss, last)`` accumulates, ``step()`` clips and steps.
        groups: Rewarded rollout groups (e.g. :func:`guiagent.rollout.semi_online.semi_online_rollouts`).
        advantages: (N,) advantages in ``AdvantageBatch.from_trajectories(groups)`` row order (what
            ``get_advantage(name)(batch)`` returns).
        processor: The model's processor.
        prompt: The :class:`~guiagent.policy.prompts.PromptConfig` the rollouts were sampled with.
        image_root: Directory store-relative screenshot paths resolve against.
        loss_name: A loss registered in :mod:`guiagent.algos.registry`.
        micro_batch_size: Rows per forward/backward.
        old_logprobs: ``"recorded"``: the sampler's ``Step.logprobs`` (required on every trained step);
            ``"recompute"``: the current policy's log-probs, taken detached from this step's own forward (the
            weights do not change before ``engine.step``, so a separate no-grad pass would give the same
            numbers). Stale recorded log-probs (ARPO replay) are refreshed with :func:`recompute_logprobs`.
        ref_model: Frozen reference policy; its log-probs (no grad, same micro-batches) feed the loss's
            ``ref_logprobs`` (k3 KL for ``ppo_clip`` with ``kl_coef``).
        share_prefix: Score prefix groups once per group (the default); False runs the model's own forward
            on plain micro-batches (same numbers, more work).
        **loss_options: Keyword options of that loss (e.g. ``clip_low``, ``aggregation``, ``kl_coef``,
            ``entropy_coef``: per-token entropies are computed only when it is non-zero).

    Returns:
        ``loss`` (the whole batch's), the engine's ``grad_norm`` (before clipping) and ``lr``, the loss's own
        metrics over the whole batch (``ppo_clip``: ``pg_loss``, ``clip_fraction``, ``ratio_mean``, ``kl``,
        ``entropy``, ``approx_kl_old`` ...), ``samples`` / ``context_rows`` / ``tokens`` / ``micro_batches``,
        and with recorded log-probs ``max_abs_logprob_diff``: the largest |recomputed − recorded| log-prob
        before the step (the trainer/sampler mismatch; ~1e-5 when both run the same weights in fp32).

    Raises:
        DataError: ``advantages`` does not have one entry per row, no row is trained, a trained row has no
            recorded log-probs while ``old_logprobs`` is ``"recorded"``, or a micro-batch's loss is not finite
            (the gradients accumulated so far are dropped, no step is taken).
        ConfigError: ``loss_name`` is not registered.
        ValueError: ``old_logprobs`` is neither ``"recorded"`` nor ``"recompute"``.
    """
    from guiagent.algos import get_loss

    loss_fn = get_loss(loss_name)
    if old_logprobs not in ("recorded", "recompute"):
        raise ValueError(f"old_logprobs must be 'recorded' or 'recompute', got {old_logprobs!r}")
    samples, recorded = rollout_samples(groups, processor, prompt, image_root)
    advantages = torch.as_tensor(advantages, dtype=torch.float32)
    if advantages.shape != (len(samples),):
        shape = tuple(advantages.shape)
        raise DataError(f"advantages has shape {shape}; the groups have {len(samples)} rows")
    rows = [i for i, s in enumerate(samples) if s is not None]
    if not rows:
        raise DataError("no trained rows: every step is context only")
    if old_logprobs == "recorded":
        for i in rows:
            if recorded[i] is None:
                raise DataError("old_logprobs='recorded' needs Step.logprobs on every trained step",
                                record=samples[i].record)
    trained = [samples[i] for i in rows]
    plan = plan_micro_batches(trained, micro_batch_size, share_prefix=share_prefix)
    weight_by_tokens = _aggregation(loss_fn, loss_options) == "token_mean"
    total = sum(len(s.response_ids) for s in trained) if weight_by_tokens else len(trained)
    with_entropy = bool(loss_options.get("entropy_coef"))
    model = engine.module
    kept: dict[str, list[torch.Tensor]] = {"logprobs": [], "old": [], "mask": [], "ref": [], "entropy": []}
    order: list[int] = []
    for k, batch in enumerate(plan):
        logprobs, entropy, mask = micro_batch_logprobs(model, processor, trained, batch, share_prefix=share_prefix,
                                                       with_entropy=with_entropy)
        span = mask.shape[1]
        if old_logprobs == "recorded":
            old = torch.tensor([list(recorded[rows[r]]) + [0.0] * (span - len(recorded[rows[r]]))
                                for r in batch.rows], device=logprobs.device)
        else:
            old = logprobs.detach()
        ref = None
        if ref_model is not None:
            with torch.no_grad():
                ref = micro_batch_logprobs(ref_model, processor, trained, batch, share_prefix=share_prefix)[0]
        loss, _ = loss_fn(logprobs, old, advantages[[rows[r] for r in batch.rows]].to(logprobs.device), mask,
                          ref_logprobs=ref, entropy=entropy, **loss_options)
        if not torch.isfinite(loss):
            engine.zero_grad()
            raise DataError(f"the {loss_name} loss is {float(loss)} on a micro-batch; no step taken")
        share = (int(mask.sum()) if weight_by_tokens else len(batch.rows)) / total
        engine.backward(loss * share, last=k == len(plan) - 1)
        order += batch.rows
        for name, value in (("logprobs", logprobs), ("old", old), ("mask", mask), ("ref", ref), ("entropy", entropy)):
            if value is not None:
                kept[name].append(value.detach().cpu())
    stats = engine.step()
    # The whole batch's loss and metrics, from the detached per-token values (rows back in plan order).
    span = max(m.shape[1] for m in kept["mask"])
    whole = {name: _pad(values, span) if values else None for name, values in kept.items()}
    loss, metrics = loss_fn(whole["logprobs"], whole["old"], advantages[[rows[r] for r in order]],
                            whole["mask"], ref_logprobs=whole["ref"], entropy=whole["entropy"], **loss_options)
    result = {"loss": float(loss), **stats, **metrics, "samples": len(rows),
              "context_rows": len(samples) - len(rows), "tokens": int(whole["mask"].sum()),
              "micro_batches": len(plan)}
    if old_logprobs == "recorded":
        result["max_abs_logprob_diff"] = float(((whole["logprobs"] - whole["old"]).abs() * whole["mask"]).max())
    return result


def recompute_logprobs(
    model: Any,
    processor: Any,
    trajectories: Sequence[Trajectory],
    prompt: Any,
    image_root: str | os.PathLike | None = None,
    micro_batch_size: int = 8,
) -> list[Trajectory]:
    """``trajectories`` with every trained step's ``Step.logprobs`` recomputed under ``model``'s current
    weights (no gradient), for the same prompts and token ids.

    ARPO (arXiv 2505.16282) injects stored successes sampled by an older policy into all-failure groups;
    their recorded log-probs are stale, and the PPO ratio needs the old-policy log-probs of the policy that
    is being updated, so they are recomputed before the update. ``info["logprobs_recomputed"]`` marks them.
    """
    samples, _ = rollout_samples([list(trajectories)], processor, prompt, image_root)
    rows = [i for i, s in enumerate(samples) if s is not None]
    trained = [samples[i] for i in rows]
    fresh: dict[int, tuple[float, ...]] = {}
    with torch.no_grad():
        for batch in plan_micro_batches(trained, micro_batch_size):
            logprobs = micro_batch_logprobs(model, processor, trained, batch)[0]
            for k, r in enumerate(batch.rows):
                fresh[rows[r]] = tuple(logprobs[k, : len(trained[r].response_ids)].tolist())
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


__all__ = ["OldLogprobs", "policy_gradient_step", "recompute_logprobs", "rollout_samples"]
