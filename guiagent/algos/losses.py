"""Policy losses: PPO clip with dual clip, k3 KL to a reference, entropy bonus, masked aggregation.

Shapes (B samples, T response tokens, padded):

* ``logprobs`` (B, T): log-probs of the response tokens under the policy being trained (with grad).
* ``old_logprobs`` (B, T): under the policy that sampled them (recomputed after ARPO replay injection).
* ``advantages`` (B,) per sample, broadcast over its tokens, or (B, T) per token.
* ``mask`` (B, T): 1/True on response tokens that count, 0/False on padding and prompt.
* ``ref_logprobs`` (B, T), optional: under the frozen reference policy, for the KL term.
* ``entropy`` (B, T), optional: per-token entropy of the policy's distribution, for the entropy bonus.
"""

from __future__ import annotations

from typing import Literal

import torch

from guiagent.algos.registry import register_loss

Aggregation = Literal["token_mean", "seq_mean"]


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the tokens where ``mask`` is set; 0 (still in the graph) when none is."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, aggregation: Aggregation) -> torch.Tensor:
    """Reduce a (B, T) per-token loss to a scalar.

    * ``token_mean``: every response token in the batch weighs the same, so long responses weigh more
      (DAPO, arXiv 2503.14476).
    * ``seq_mean``: average tokens within each sample, then samples (the original GRPO); samples
      without any token (fully masked rows) are left out of the sample average.

    Args:
        per_token: (B, T) loss per token.
        mask: (B, T) token mask.
        aggregation: ``"token_mean"`` or ``"seq_mean"``.

    Returns:
        Scalar tensor.
    """
    if aggregation == "token_mean":
        return masked_mean(per_token, mask)
    if aggregation == "seq_mean":
        m = mask.to(per_token.dtype)
        tokens = m.sum(dim=1)
        per_seq = (per_token * m).sum(dim=1) / tokens.clamp(min=1.0)
        return masked_mean(per_seq, tokens > 0)
    raise ValueError(f"aggregation must be 'token_mean' or 'seq_mean', got {aggregation!r}")


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(π ‖ π_ref) per token, clamped to [-10, 10] as in verl's "low_var_kl".

    k3 = exp(d) - d - 1 with d = log π_ref - log π: non-negative, unbiased for samples from π, and
    low-variance (http://joschu.net/blog/kl-approx.html). The clamp makes it biased for tokens far from
    the reference: d = log 50 = 3.912 gives 50 - 3.912 - 1 = 45.088, counted as 10, and such a token gets
    no KL gradient. d = log 10 = 2.303 gives 10 - 2.303 - 1 = 6.697, inside the clamp and unchanged.

    Returns:
        Tensor of the inputs' shape, values in [0, 10].
    """
    # verl (verl/trainer/ppo/core_algos.py, kl_penalty "low_var_kl") clamps d to [-20, 20] and the k3
    # value to [-10, 10]: one token whose policy drifted far from the reference must not dominate the
    # loss. The d clamp changes no value (|d| > 20 gives k3 > 10 either way) but keeps exp finite, so
    # the zero gradient of a clamped token is not 0·inf = NaN. k3 >= 0, so only the upper bound acts.
    d = (ref_logprobs - logprobs).clamp(min=-20.0, max=20.0)
    return (torch.exp(d) - d - 1.0).clamp(min=-10.0, max=10.0)


@register_loss("ppo_clip")
def ppo_clip_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ref_logprobs: torch.Tensor | None = None,
    entropy: torch.Tensor | None = None,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = 3.0,
    kl_coef: float = 0.0,
    entropy_coef: float = 0.0,
    aggregation: Aggregation = "token_mean",
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO clipped surrogate (arXiv 1707.06347) with dual clip (arXiv 1912.09729), k3 KL and entropy.

    Per token, with ratio ρ = exp(logprobs - old_logprobs) and advantage A::

        pg  = max(-A·ρ, -A·clip(ρ, 1 - clip_low, 1 + clip_high))
        pg  = min(pg, -A·c)        where A < 0 (dual clip: bounds the loss when ρ ≫ 1 on a bad action)
        loss_t = pg + kl_coef·k3(π, π_ref) - entropy_coef·H

    then aggregated over the mask. ``clip_high > clip_low`` is DAPO's clip-higher.

    Args:
        logprobs: (B, T), with grad.
        old_logprobs: (B, T).
        advantages: (B,) or (B, T).
        mask: (B, T) bool or 0/1.
        ref_logprobs: (B, T) reference log-probs; required when ``kl_coef`` > 0.
        entropy: (B, T) per-token entropy; required when ``entropy_coef`` > 0.
        clip_low: Lower clip range ε_low.
        clip_high: Upper clip range ε_high.
        dual_clip: The constant c > 1, or None to disable dual clip.
        kl_coef: Weight of the k3 KL penalty.
        entropy_coef: Weight of the entropy bonus (subtracted from the loss).
        aggregation: ``"token_mean"`` or ``"seq_mean"``.

    Returns:
        ``(loss, metrics)``: the scalar loss and floats ``pg_loss``, ``clip_fraction`` (tokens where the
        clipped branch is active), ``dual_clip_fraction``, ``ratio_mean``, ``kl`` (k3 to the reference,
        0 without one), ``entropy`` (0 without one), ``approx_kl_old`` (k3 to the sampling policy).
    """
    if logprobs.shape != old_logprobs.shape or logprobs.shape != mask.shape or logprobs.dim() != 2:
        raise ValueError(f"logprobs {tuple(logprobs.shape)}, old_logprobs {tuple(old_logprobs.shape)} and "
                         f"mask {tuple(mask.shape)} must share one (B, T) shape")
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    if advantages.shape[0] != logprobs.shape[0] or advantages.shape[1] not in (1, logprobs.shape[1]):
        raise ValueError(f"advantages {tuple(advantages.shape)} must be (B,) or (B, T) for logprobs "
                         f"{tuple(logprobs.shape)}")
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1 (or None), got {dual_clip}")
    advantages = advantages.to(logprobs.dtype).expand_as(logprobs)
    mask = mask.bool()

    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    pg = torch.maximum(unclipped, clipped)
    dual_active = torch.zeros_like(mask)
    if dual_clip is not None:
        bound = -advantages * dual_clip
        dual_active = (advantages < 0) & (pg > bound)
        pg = torch.where(dual_active, bound, pg)
    per_token = pg

    kl = None
    if ref_logprobs is not None:
        kl = k3_kl(logprobs, ref_logprobs)
        per_token = per_token + kl_coef * kl
    elif kl_coef:
        raise ValueError("kl_coef > 0 needs ref_logprobs")
    if entropy is not None:
        per_token = per_token - entropy_coef * entropy
    elif entropy_coef:
        raise ValueError("entropy_coef > 0 needs entropy")

    loss = aggregate(per_token, mask, aggregation)
    with torch.no_grad():
        metrics = {
            "pg_loss": float(aggregate(pg, mask, aggregation)),
            "clip_fraction": float(masked_mean((clipped > unclipped).float(), mask)),
            "dual_clip_fraction": float(masked_mean(dual_active.float(), mask)),
            "ratio_mean": float(masked_mean(ratio, mask)),
            "kl": float(masked_mean(kl, mask)) if kl is not None else 0.0,
            "entropy": float(masked_mean(entropy, mask)) if entropy is not None else 0.0,
            "approx_kl_old": float(masked_mean(k3_kl(logprobs, old_logprobs), mask)),
        }
    return loss, metrics
