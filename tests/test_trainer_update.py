"""One policy-gradient step (guiagent.trainer.update) on real semi-online rollouts of the tiny Qwen2.5-VL."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from guiagent.actions import ActionSpaceConfig
from guiagent.algos import AdvantageBatch
from guiagent.data.store import iter_episodes
from guiagent.errors import ConfigError, DataError
from guiagent.policy.local import LocalPolicy
from guiagent.policy.prompts import PromptConfig
from guiagent.rollout.semi_online import SemiOnlineConfig, semi_online_rollouts
from guiagent.trainer.engine import TorchEngine
from guiagent.trainer.update import policy_gradient_step

PROMPT = PromptConfig(actions=ActionSpaceConfig(format="qwen25vl_mobile", max_pixels=32 * 28 * 28))


@pytest.fixture(scope="module")
def rollouts(tiny_qwen25vl, expert_store):
    """(store root, groups): N = 2 rollouts of one oracle trajectory; patched-over steps are context rows."""
    root = expert_store
    policy = LocalPolicy.from_pretrained(tiny_qwen25vl)
    config = SemiOnlineConfig(n_rollouts=2, max_tokens=6, prompt=PROMPT, patched_steps="context")
    groups = semi_online_rollouts(policy, list(iter_episodes(root)), config, image_root=root)
    return root, groups


class GradientKeeper:
    """An engine that accumulates gradients like :class:`TorchEngine` but whose ``step`` leaves them (and the
    weights) as they are, so a test can read the gradient an update produced."""

    def __init__(self, model):
        self.module = model

    def backward(self, loss, last=True):
        loss.backward()

    def step(self):
        return {"grad_norm": 0.0, "lr": 0.0}

    def zero_grad(self):
        self.module.zero_grad(set_to_none=True)

    def gradients(self) -> list[torch.Tensor]:
        return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in self.module.parameters()]


def _keeper(tiny_qwen25vl) -> tuple[LocalPolicy, GradientKeeper]:
    policy = LocalPolicy.from_pretrained(tiny_qwen25vl)
    return policy, GradientKeeper(policy.model)


def _close(a: list[torch.Tensor], b: list[torch.Tensor], rel: float = 1e-5) -> bool:
    flat_a, flat_b = torch.cat([g.flatten() for g in a]), torch.cat([g.flatten() for g in b])
    return bool((flat_a - flat_b).norm() <= rel * flat_b.norm())


def test_step_changes_parameters_with_a_finite_loss_and_matches_the_rollout_logprobs(tiny_qwen25vl, rollouts):
    root, groups = rollouts
    n = len(AdvantageBatch.from_trajectories(groups))
    policy = LocalPolicy.from_pretrained(tiny_qwen25vl)
    engine = TorchEngine(policy.model, lr=1e-3)
    before = [p.detach().clone() for p in policy.model.parameters()]
    advantages = torch.linspace(-1.0, 1.0, n)
    metrics = policy_gradient_step(
        engine, groups, advantages, processor=policy.processor, prompt=PROMPT, image_root=root, micro_batch_size=2
    )
    assert torch.isfinite(torch.tensor(metrics["loss"])) and metrics["grad_norm"] > 0
    assert metrics["samples"] + metrics["context_rows"] == n and metrics["context_rows"] >= 1
    assert metrics["micro_batches"] == -(-metrics["samples"] // 2) and engine.steps == 1
    # Same weights as the sampler: ratio 1, nothing clipped, recomputed log-probs = recorded ones.
    assert metrics["max_abs_logprob_diff"] < 2e-4
    assert metrics["ratio_mean"] == pytest.approx(1.0, abs=1e-3) and metrics["clip_fraction"] == 0.0
    changed = [not torch.equal(a, b) for a, b in zip(before, policy.model.parameters())]
    assert sum(changed) > len(changed) // 2


@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean"])
def test_micro_batches_accumulate_the_whole_batch_gradient(tiny_qwen25vl, rollouts, aggregation):
    """Micro-batches of 1 row vs. the whole batch at once: same loss, same gradient (each micro-batch's loss is
    scaled by its share of the batch's tokens or sequences)."""
    root, groups = rollouts
    advantages = torch.linspace(-1.0, 1.0, len(AdvantageBatch.from_trajectories(groups)))
    runs = []
    for size in (1, 64):
        policy, engine = _keeper(tiny_qwen25vl)
        metrics = policy_gradient_step(engine, groups, advantages, processor=policy.processor, prompt=PROMPT,
                                       image_root=root, micro_batch_size=size, aggregation=aggregation)
        runs.append((metrics, engine.gradients()))
    (one, grads_one), (whole, grads_whole) = runs
    assert one["micro_batches"] == one["samples"] > 1 and whole["micro_batches"] == 1
    assert one["loss"] == pytest.approx(whole["loss"], rel=1e-5, abs=1e-7)
    assert _close(grads_one, grads_whole)


def test_recomputed_old_logprobs_reference_kl_and_entropy(tiny_qwen25vl, rollouts):
    """No recorded log-probs needed with old_logprobs='recompute'; a reference model with the policy's weights
    gives zero KL; the entropy bonus changes the gradient."""
    root, groups = rollouts
    advantages = torch.linspace(-1.0, 1.0, len(AdvantageBatch.from_trajectories(groups)))
    bare = [[dataclasses.replace(t, steps=tuple(dataclasses.replace(s, logprobs=None) for s in t.steps))
             for t in g] for g in groups]
    reference = LocalPolicy.from_pretrained(tiny_qwen25vl).model.eval()
    grads = {}
    for entropy_coef in (0.0, 0.1):
        policy, engine = _keeper(tiny_qwen25vl)
        metrics = policy_gradient_step(engine, bare, advantages, processor=policy.processor, prompt=PROMPT,
                                       image_root=root, old_logprobs="recompute", ref_model=reference,
                                       kl_coef=0.1, entropy_coef=entropy_coef)
        assert metrics["ratio_mean"] == pytest.approx(1.0) and metrics["kl"] == pytest.approx(0.0, abs=1e-6)
        assert "max_abs_logprob_diff" not in metrics and torch.isfinite(torch.tensor(metrics["loss"]))
        grads[entropy_coef] = engine.gradients()
    assert metrics["entropy"] > 0 and not _close(grads[0.1], grads[0.0], rel=1e-3)
    policy, engine = _keeper(tiny_qwen25vl)
    with pytest.raises(DataError, match="Step.logprobs"):
        policy_gradient_step(engine, bare, advantages, processor=policy.processor, prompt=PROMPT, image_root=root)


def test_context_rows_contribute_no_gradient(tiny_qwen25vl, rollouts):
    root, groups = rollouts
    batch = AdvantageBatch.from_trajectories(groups)
    context = ~batch.mask
    assert context.any()
    advantages = torch.linspace(-1.0, 1.0, len(batch))

    def grads(groups, advantages):
        policy, engine = _keeper(tiny_qwen25vl)
        policy_gradient_step(engine, groups, advantages, processor=policy.processor, prompt=PROMPT, image_root=root)
        return engine.gradients()

    reference = grads(groups, advantages)
    # Any advantage on the context rows: the same gradient.
    other = grads(groups, torch.where(context, torch.full_like(advantages, 7.0), advantages))
    assert all(torch.equal(a, b) for a, b in zip(reference, other))
    # The same rows trained on (patched=False) do change it: the check above can fail.
    unmasked = [[dataclasses.replace(t, steps=tuple(dataclasses.replace(s, patched=False) for s in t.steps))
                 for t in g] for g in groups]
    trained = grads(unmasked, torch.where(context, torch.full_like(advantages, 7.0), advantages))
    assert any(not torch.allclose(a, b) for a, b in zip(reference, trained))


def test_bad_inputs_are_named(tiny_qwen25vl, rollouts):
    root, groups = rollouts
    policy, engine = _keeper(tiny_qwen25vl)
    n = len(AdvantageBatch.from_trajectories(groups))
    kwargs = {"processor": policy.processor, "prompt": PROMPT, "image_root": root}
    with pytest.raises(DataError, match="rows"):
        policy_gradient_step(engine, groups, torch.zeros(n + 1), **kwargs)
    with pytest.raises(ConfigError, match="unknown loss"):
        policy_gradient_step(engine, groups, torch.zeros(n), loss_name="nope", **kwargs)
    step = groups[0][0].steps[-1]
    broken = dataclasses.replace(step, logprobs=step.logprobs[:-1])
    bad = [[dataclasses.replace(groups[0][0], steps=(*groups[0][0].steps[:-1], broken)), *groups[0][1:]]]
    with pytest.raises(DataError, match="log-probs") as info:
        policy_gradient_step(engine, bad, torch.zeros(n), **kwargs)
    assert groups[0][0].episode_id in str(info.value)
