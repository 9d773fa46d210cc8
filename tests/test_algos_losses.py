"""PPO clip / dual clip, k3 KL, entropy and aggregation against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from guiagent.algos import get_loss
from guiagent.algos.losses import aggregate, k3_kl

ppo = get_loss("ppo_clip")

# Two samples of three tokens. old log-probs are 0, so ratio = exp(logprobs):
#   sample 0, advantage +1, ratios [1.5, 0.5, 1.0]
#   sample 1, advantage -1, ratios [4.0, 0.5, 1.0]
RATIOS = torch.tensor([[1.5, 0.5, 1.0], [4.0, 0.5, 1.0]])
ADV = torch.tensor([1.0, -1.0])
# Per-token surrogate max(-A·ρ, -A·clip(ρ, 0.8, 1.2)):
#   sample 0: ρ 1.5 → max(-1.5, -1.2) = -1.2 (clipped);  ρ 0.5 → max(-0.5, -0.8) = -0.5;  ρ 1 → -1
#   sample 1: ρ 4.0 → max(4.0, 1.2) = 4.0, dual clip c = 3 → min(4.0, 3) = 3;
#             ρ 0.5 → max(0.5, 0.8) = 0.8 (clipped);  ρ 1 → 1
# token-mean with dual clip: (-1.2 - 0.5 - 1 + 3 + 0.8 + 1) / 6 = 2.1 / 6 = 0.35
# without dual clip:         (-1.2 - 0.5 - 1 + 4 + 0.8 + 1) / 6 = 3.1 / 6 = 0.51667


def _inputs():
    logprobs = RATIOS.log().clone().requires_grad_(True)
    return logprobs, torch.zeros_like(logprobs), ADV, torch.ones_like(logprobs, dtype=torch.bool)


def test_clip_and_dual_clip_values():
    loss, metrics = ppo(*_inputs())
    assert loss.item() == pytest.approx(0.35, abs=1e-6)
    # Clipped branch active on sample 0 token 0 and sample 1 token 1: 2 of 6 tokens; dual clip on 1 of 6.
    assert metrics["clip_fraction"] == pytest.approx(2 / 6)
    assert metrics["dual_clip_fraction"] == pytest.approx(1 / 6)
    # Mean ratio (1.5 + 0.5 + 1 + 4 + 0.5 + 1) / 6 = 1.41667.
    assert metrics["ratio_mean"] == pytest.approx(8.5 / 6)
    loss, metrics = ppo(*_inputs(), dual_clip=None)
    assert loss.item() == pytest.approx(3.1 / 6, abs=1e-6)
    assert metrics["dual_clip_fraction"] == 0.0


def test_clip_higher_changes_only_the_upper_bound():
    # clip_high 0.6: sample 0 token 0 ρ 1.5 is now inside [0.8, 1.6] → -1.5 instead of -1.2.
    loss, _ = ppo(*_inputs(), clip_high=0.6)
    assert loss.item() == pytest.approx((-1.5 - 0.5 - 1 + 3 + 0.8 + 1) / 6, abs=1e-6)


def test_gradient_flows_only_through_unclipped_tokens():
    logprobs, old, adv, mask = _inputs()
    loss, _ = ppo(logprobs, old, adv, mask)
    loss.backward()
    # d(-A·ρ)/d logprob = -A·ρ, divided by the 6 tokens; clipped and dual-clipped tokens give 0:
    #   sample 0: [0 (clipped), -0.5/6, -1/6];  sample 1: [0 (dual clip), 0 (clipped), +1/6]
    expected = [[0.0, -0.5 / 6, -1 / 6], [0.0, 0.0, 1 / 6]]
    assert logprobs.grad.tolist() == [pytest.approx(row, abs=1e-6) for row in expected]


def test_token_mean_and_seq_mean_differ_with_masks():
    logprobs, old, adv, _ = _inputs()
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    # token-mean: (-1.2 - 0.5 - 1 + 3 + 0.8) / 5 = 1.1 / 5 = 0.22
    loss, _ = ppo(logprobs, old, adv, mask, aggregation="token_mean")
    assert loss.item() == pytest.approx(0.22, abs=1e-6)
    # seq-mean: sample 0 (-2.7)/3 = -0.9, sample 1 (3 + 0.8)/2 = 1.9 → (−0.9 + 1.9)/2 = 0.5
    loss, _ = ppo(logprobs, old, adv, mask, aggregation="seq_mean")
    assert loss.item() == pytest.approx(0.5, abs=1e-6)


def test_seq_mean_skips_fully_masked_samples_and_all_masked_batch_is_zero():
    values = torch.tensor([[2.0, 4.0], [100.0, 100.0]])
    mask = torch.tensor([[1, 1], [0, 0]], dtype=torch.bool)
    # Sample 1 has no token: the sample average is over sample 0 only: (2 + 4)/2 = 3.
    assert aggregate(values, mask, "seq_mean").item() == 3.0
    logprobs, old, adv, _ = _inputs()
    loss, _ = ppo(logprobs, old, adv, torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()  # still connected to the graph
    assert logprobs.grad.abs().sum().item() == 0.0


def test_k3_kl_value_and_kl_term():
    # log π = log 0.5, log π_ref = log 0.25: d = log(0.25/0.5) = -0.693147,
    # k3 = e^d - d - 1 = 0.5 + 0.693147 - 1 = 0.193147.
    logprobs = torch.full((1, 2), math.log(0.5))
    ref = torch.full((1, 2), math.log(0.25))
    assert k3_kl(logprobs, ref).tolist() == [pytest.approx([0.193147, 0.193147], abs=1e-6)]
    assert k3_kl(logprobs, logprobs).abs().max().item() == 0.0
    # With zero advantages only the KL term is left: 0.1 · 0.193147 = 0.0193147.
    lp = logprobs.clone().requires_grad_(True)
    loss, metrics = ppo(lp, lp.detach(), torch.zeros(1), torch.ones(1, 2), ref, kl_coef=0.1)
    assert loss.item() == pytest.approx(0.0193147, abs=1e-6)
    assert metrics["kl"] == pytest.approx(0.193147, abs=1e-6)
    loss.backward()
    # d k3 / d logπ = 1 - e^d = 0.5, times 0.1, over 2 tokens → 0.025 each: pulls log π down towards π_ref.
    assert lp.grad.tolist() == [pytest.approx([0.025, 0.025], abs=1e-6)]


def test_k3_kl_is_clamped_per_token_like_verl():
    # verl's "low_var_kl" clamps each token's k3 to [-10, 10] (and d to [-20, 20] before exp).
    # Four tokens, d = log π_ref - log π, k3 = e^d - d - 1:
    #   0: π 0.01, π_ref 0.5: d = log 50 = 3.912023, k3 = 50 - 3.912023 - 1 = 45.087977 → clamped to 10
    #   1: π 0.05, π_ref 0.5: d = log 10 = 2.302585, k3 = 10 - 2.302585 - 1 = 6.697415 (inside, unchanged)
    #   2: π 0.5, π_ref 1e-6: d = log 2e-6 = -13.122363, k3 = 0.000002 + 13.122363 - 1 = 12.122365 → 10
    #   3: log π -100, log π_ref 0: d = 100 (e^100 overflows float32), clamped to 20 first → k3 → 10
    logprobs = torch.tensor([[math.log(0.01), math.log(0.05), math.log(0.5), -100.0]])
    ref = torch.tensor([[math.log(0.5), math.log(0.5), math.log(1e-6), 0.0]])
    assert k3_kl(logprobs, ref).tolist() == [pytest.approx([10.0, 6.697415, 10.0, 10.0], abs=1e-5)]
    # Zero advantages, kl_coef 1: loss = (10 + 6.697415 + 10 + 10)/4 = 9.174354.
    lp = logprobs.clone().requires_grad_(True)
    loss, metrics = ppo(lp, lp.detach(), torch.zeros(1), torch.ones(1, 4), ref, kl_coef=1.0)
    assert loss.item() == pytest.approx(9.174354, abs=1e-5)
    assert metrics["kl"] == pytest.approx(9.174354, abs=1e-5)
    loss.backward()
    # Clamped tokens get gradient 0 (not NaN for token 3); token 1: d k3 / d log π = 1 - e^d = 1 - 10 = -9,
    # over 4 tokens → -2.25.
    assert lp.grad.tolist() == [pytest.approx([0.0, -2.25, 0.0, 0.0], abs=1e-5)]


def test_entropy_bonus():
    lp = torch.zeros(1, 2, requires_grad=True)
    entropy = torch.full((1, 2), 2.0)
    # Zero advantages: loss = -0.01 · mean entropy 2 = -0.02.
    loss, metrics = ppo(lp, lp.detach(), torch.zeros(1), torch.ones(1, 2), None, entropy, entropy_coef=0.01)
    assert loss.item() == pytest.approx(-0.02)
    assert metrics["entropy"] == 2.0


def test_per_token_advantages_and_shape_errors():
    logprobs, old, _, mask = _inputs()
    per_token = ADV.unsqueeze(1).expand(2, 3).clone()
    assert ppo(logprobs, old, per_token, mask)[0].item() == pytest.approx(0.35, abs=1e-6)
    with pytest.raises(ValueError, match="advantages"):
        ppo(logprobs, old, torch.zeros(3), mask)
    with pytest.raises(ValueError, match="share one"):
        ppo(logprobs, old[:, :2], ADV, mask)
    with pytest.raises(ValueError, match="ref_logprobs"):
        ppo(logprobs, old, ADV, mask, kl_coef=0.1)
