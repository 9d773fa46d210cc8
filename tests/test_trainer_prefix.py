"""Prefix sharing (guiagent.trainer.batching.shared_prefix_logprobs) against the plain batch on the tiny Qwen2.5-VL:
the same log-probs, entropies and gradients, with each prefix and each distinct screenshot encoded once."""

from __future__ import annotations

import pytest
import torch

from guiagent.actions import ActionSpaceConfig
from guiagent.policy.local import LocalPolicy
from guiagent.policy.prompts import HistoryStep, PromptConfig, build_messages
from guiagent.trainer.batching import (
    EncodedSample,
    TrainingSample,
    common_prefix,
    encode_sample,
    micro_batch_logprobs,
    plan_micro_batches,
)

PROMPT = PromptConfig(actions=ActionSpaceConfig(max_pixels=64 * 28 * 28), history_images=2)
RESPONSES = ('<tool_call>\n{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [12, 30]}}\n</tool_call>',
             "open the settings app", "wait", '{"action": "type", "text": "hello world"}')


@pytest.fixture(scope="module")
def policy(tiny_qwen25vl):
    return LocalPolicy.from_pretrained(tiny_qwen25vl)


def _rows(policy, messages: list, per_prompt: int) -> list[EncodedSample]:
    """``per_prompt`` rows per prompt (a GRPO group: one encoding, different responses of different lengths)."""
    tokenizer = policy.processor.tokenizer
    rows = []
    for m in messages:
        encoded = encode_sample(policy.processor, TrainingSample(m, (1,)))
        for g in range(per_prompt):
            text = RESPONSES[g % len(RESPONSES)] * (1 + g // len(RESPONSES))
            ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            rows.append(EncodedSample(encoded.prompt, tuple(ids), f"row {len(rows)}", encoded.image_spans,
                                      encoded.image_keys))
    return rows


def _score(policy, rows, plan, share_prefix: bool):
    """Log-probs and entropies per row, and the gradient of Σ (log-prob + 0.1·entropy) over all micro-batches."""
    model = policy.model
    model.zero_grad(set_to_none=True)
    logprobs, entropies = {}, {}
    for batch in plan:
        lp, ent, mask = micro_batch_logprobs(model, policy.processor, rows, batch, share_prefix=share_prefix,
                                             with_entropy=True)
        ((lp + 0.1 * ent) * mask).sum().backward()
        for k, r in enumerate(batch.rows):
            n = len(rows[r].response_ids)
            logprobs[r], entropies[r] = lp[k, :n].detach(), ent[k, :n].detach()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return logprobs, entropies, grads


def _assert_same(policy, rows, plan):
    visual = policy.model.model.visual
    images = []
    hook = visual.register_forward_hook(lambda module, args, kwargs, out: images.append(len(kwargs["grid_thw"])),
                                        with_kwargs=True)
    try:
        shared = _score(policy, rows, plan, share_prefix=True)
        seen_shared, images[:] = list(images), []
        plain = _score(policy, rows, plan, share_prefix=False)
        seen_plain = list(images)
    finally:
        hook.remove()
    for r in range(len(rows)):
        assert shared[0][r] == pytest.approx(plain[0][r].tolist(), abs=1e-5)
        assert shared[1][r] == pytest.approx(plain[1][r].tolist(), abs=1e-5)
    assert (shared[2] - plain[2]).norm() <= 1e-5 * plain[2].norm()
    return seen_shared, seen_plain


def test_grpo_groups_share_their_prompt_and_screenshot(policy, policy_screenshots):
    """Two GRPO groups of G = 4 (two tasks): each group's prompt runs once, each screenshot is encoded once."""
    prompts = [build_messages("turn on wifi", policy_screenshots[0], (), PROMPT),
               build_messages("search for a contact named alice", policy_screenshots[2], (), PROMPT)]
    rows = _rows(policy, prompts, per_prompt=4)
    plan = plan_micro_batches(rows, micro_batch_size=8)
    assert len(plan) == 1
    groups = sorted(plan[0].groups, key=lambda g: min(g.rows))
    assert [sorted(g.rows) for g in groups] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [g.shared for g in groups] == [rows[0].prompt_length - 1, rows[4].prompt_length - 1]
    seen_shared, seen_plain = _assert_same(policy, rows, plan)
    assert seen_shared == [2] and seen_plain == [8]  # images through the vision tower per forward


def test_groups_split_across_micro_batches_still_give_the_plain_gradient(policy, policy_screenshots):
    rows = _rows(policy, [build_messages("turn on wifi", policy_screenshots[0], (), PROMPT)], per_prompt=5)
    plan = plan_micro_batches(rows, micro_batch_size=3)
    assert [len(b.rows) for b in plan] == [3, 2] and all(b.groups[0].shared > 0 for b in plan)
    # Length bucketing: the group's rows are packed shortest first.
    lengths = [len(rows[r].response_ids) for b in plan for r in b.rows]
    assert lengths == sorted(lengths)
    _assert_same(policy, rows, plan)


def test_semi_online_rows_share_the_prompt_up_to_the_first_different_history_turn(policy, policy_screenshots):
    """Three rollouts at one expert step: same expert screens (the previous one and the current one), different
    earlier responses. All six rows share the system prompt, the query and the previous screen, up to the
    assistant turn that differs; the current screen comes after it, in each row's own continuation."""
    current, previous = policy_screenshots[2], policy_screenshots[1]
    prompts = [build_messages("open the shopping list", current, [HistoryStep(response=r, screenshot=previous)], PROMPT)
               for r in ("click the list", "swipe up", "click the list")]
    rows = _rows(policy, prompts, per_prompt=2)
    plan = plan_micro_batches(rows, micro_batch_size=6)
    ((group,),) = [b.groups for b in plan]
    previous_screen, current_screen = rows[0].image_spans
    assert len(group.rows) == 6 and group.shared == common_prefix(rows[0], rows[2])
    assert previous_screen[1] <= group.shared < current_screen[0]
    seen_shared, seen_plain = _assert_same(policy, rows, plan)
    assert seen_shared == [2] and seen_plain == [12]


def test_a_different_screenshot_under_equal_tokens_ends_the_shared_prefix(policy, policy_screenshots):
    """Screenshots 0 and 1 have the same size, so their prompts have equal tokens; the prefix stops at the image."""
    a, b = (build_messages("turn on wifi", policy_screenshots[i], (), PROMPT) for i in (0, 1))
    rows = _rows(policy, [a, b], per_prompt=2)
    assert rows[0].prompt["input_ids"].tolist() == rows[2].prompt["input_ids"].tolist()
    assert common_prefix(rows[0], rows[2]) == rows[0].image_spans[0][0]
    _assert_same(policy, rows, plan_micro_batches(rows, micro_batch_size=4))


def test_gradient_checkpointing_falls_back_to_whole_rows_with_the_same_numbers(tiny_qwen25vl, policy_screenshots):
    """transformers' gradient checkpointing drops a layer's cache: a prefix group then runs its rows whole."""
    policy = LocalPolicy.from_pretrained(tiny_qwen25vl)
    policy.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    policy.model.train()
    rows = _rows(policy, [build_messages("turn on wifi", policy_screenshots[0], (), PROMPT)], per_prompt=2)
    plan = plan_micro_batches(rows, micro_batch_size=2)
    assert plan[0].groups[0].shared > 0
    _assert_same(policy, rows, plan)
