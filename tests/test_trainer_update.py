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


def _fresh(tiny_qwen25vl, lr: float = 0.0):
    policy = LocalPolicy.from_pretrained(tiny_qwen25vl)
    return policy, torch.optim.SGD(policy.model.parameters(), lr=lr)


def _grads(model) -> list[torch.Tensor]:
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


def test_step_changes_parameters_with_a_finite_loss_and_matches_the_rollout_logprobs(tiny_qwen25vl, rollouts):
    root, groups = rollouts
    n = len(AdvantageBatch.from_trajectories(groups))
    policy = LocalPolicy.from_pretrained(tiny_qwen25vl)
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in policy.model.parameters()]
    advantages = torch.linspace(-1.0, 1.0, n)
    metrics = policy_gradient_step(
        policy.model, optimizer, groups, advantages, processor=policy.processor, prompt=PROMPT, image_root=root
    )
    assert torch.isfinite(torch.tensor(metrics["loss"])) and metrics["grad_norm"] > 0
    assert metrics["samples"] + metrics["context_rows"] == n and metrics["context_rows"] >= 1
    # Same weights as the sampler: ratio 1, nothing clipped, recomputed log-probs = recorded ones.
    assert metrics["max_abs_logprob_diff"] < 2e-4
    assert metrics["ratio_mean"] == pytest.approx(1.0, abs=1e-3) and metrics["clip_fraction"] == 0.0
    changed = [not torch.equal(a, b) for a, b in zip(before, policy.model.parameters())]
    assert sum(changed) > len(changed) // 2


def test_context_rows_contribute_no_gradient(tiny_qwen25vl, rollouts):
    root, groups = rollouts
    batch = AdvantageBatch.from_trajectories(groups)
    context = ~batch.mask
    assert context.any()
    advantages = torch.linspace(-1.0, 1.0, len(batch))

    def grads(groups, advantages):
        policy, optimizer = _fresh(tiny_qwen25vl)  # lr 0: the step leaves .grad and the weights as they are
        policy_gradient_step(policy.model, optimizer, groups, advantages, processor=policy.processor,
                             prompt=PROMPT, image_root=root)
        return _grads(policy.model)

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
    policy, optimizer = _fresh(tiny_qwen25vl)
    n = len(AdvantageBatch.from_trajectories(groups))
    kwargs = dict(processor=policy.processor, prompt=PROMPT, image_root=root)
    with pytest.raises(DataError, match="rows"):
        policy_gradient_step(policy.model, optimizer, groups, torch.zeros(n + 1), **kwargs)
    with pytest.raises(ConfigError, match="unknown loss"):
        policy_gradient_step(policy.model, optimizer, groups, torch.zeros(n), loss_name="nope", **kwargs)
    step = groups[0][0].steps[-1]
    broken = dataclasses.replace(step, logprobs=step.logprobs[:-1])
    bad = [[dataclasses.replace(groups[0][0], steps=(*groups[0][0].steps[:-1], broken)), *groups[0][1:]]]
    with pytest.raises(DataError, match="log-probs") as info:
        policy_gradient_step(policy.model, optimizer, bad, torch.zeros(n), **kwargs)
    assert groups[0][0].episode_id in str(info.value)
