"""Step-sample batching (guiagent.trainer.batching) on the tiny Qwen2.5-VL: layout, labels, log-probs."""

from __future__ import annotations

import pytest
import torch

from guiagent.actions import ActionSpaceConfig
from guiagent.policy.base import GenerationRequest, SamplingParams
from guiagent.policy.local import LocalPolicy
from guiagent.policy.prompts import HistoryStep, PromptConfig, build_messages, encode_prompt
from guiagent.trainer.batching import IGNORE_INDEX, collate, response_logprobs

PROMPT = PromptConfig(actions=ActionSpaceConfig(max_pixels=64 * 28 * 28), history_images=2)


@pytest.fixture(scope="module")
def policy(tiny_qwen25vl):
    return LocalPolicy.from_pretrained(tiny_qwen25vl)


@pytest.fixture(scope="module")
def prompts(policy_screenshots):
    """A one-image prompt and a two-image prompt (one previous step inside the image window)."""
    one = build_messages("turn on wifi", policy_screenshots[0], (), PROMPT)
    previous = HistoryStep(response="<tool_call>\n{}\n</tool_call>", screenshot=policy_screenshots[1])
    two = build_messages("open the shopping list", policy_screenshots[2], [previous], PROMPT)
    return [one, two]


def test_collate_masks_labels_to_the_response_and_extends_mm_token_type_ids(policy, prompts):
    from guiagent.trainer.batching import TrainingSample

    processor = policy.processor
    responses = [(5, 6, 7), (8, 9, 10, 11, 12)]
    batch = collate(processor, [TrainingSample(m, r) for m, r in zip(prompts, responses)])
    encoded = [encode_prompt(processor, m).inputs for m in prompts]
    lengths = [e["input_ids"].shape[1] for e in encoded]
    width, span = max(lengths), 5
    assert batch.prompt_width == width and batch.inputs["input_ids"].shape == (2, width + span)
    for row, (e, response) in enumerate(zip(encoded, responses)):
        # Prompt left-padded, response from column P, right-padded.
        assert batch.inputs["input_ids"][row, width - lengths[row] : width].tolist() == e["input_ids"][0].tolist()
        assert batch.inputs["input_ids"][row, width : width + len(response)].tolist() == list(response)
        labelled = (batch.labels[row] != IGNORE_INDEX).nonzero().flatten().tolist()
        assert labelled == list(range(width, width + len(response)))
        assert batch.labels[row, labelled].tolist() == list(response)
        assert batch.response_mask[row].tolist() == [True] * len(response) + [False] * (span - len(response))
        attention = batch.inputs["attention_mask"][row].tolist()
        assert attention == [0] * (width - lengths[row]) + [1] * (lengths[row] + len(response)) + [0] * (
            span - len(response)
        )
        # mm_token_type_ids: the prompt's own values, then zeros over the response (the processor stops at P).
        mm = batch.inputs["mm_token_type_ids"][row]
        assert mm[width - lengths[row] : width].tolist() == e["mm_token_type_ids"][0].tolist()
        assert mm[width:].tolist() == [0] * span and mm[: width - lengths[row]].sum() == 0
    assert batch.inputs["mm_token_type_ids"].shape == batch.inputs["input_ids"].shape
    # Images in sample order, then prompt order: 1 + 2 grids, pixel rows concatenated.
    assert batch.inputs["image_grid_thw"].tolist() == [g for e in encoded for g in e["image_grid_thw"].tolist()]
    assert torch.equal(batch.inputs["pixel_values"], torch.cat([e["pixel_values"] for e in encoded]))


def test_response_logprobs_equal_the_rollouts_recorded_logprobs(policy, prompts):
    """Greedy generation (batched, left-padded, KV cache) vs. one teacher-forced forward of the collated batch."""
    from guiagent.trainer.batching import TrainingSample

    generations = policy.generate([GenerationRequest(m) for m in prompts], SamplingParams(max_tokens=12, greedy=True))
    samples = [TrainingSample(m, g.token_ids) for m, g in zip(prompts, generations)]
    with torch.no_grad():
        # Reverse the order: a row's log-probs must not depend on its neighbours or its padding.
        batch = collate(policy.processor, samples[::-1])
        logprobs, entropy = response_logprobs(policy.model, batch)
        logprobs = logprobs[torch.tensor([1, 0])]
        mask = batch.response_mask[torch.tensor([1, 0])]
    assert entropy is None  # computed only when asked for
    for row, g in enumerate(generations):
        n = len(g.token_ids)
        assert mask[row].sum() == n
        assert logprobs[row, :n].tolist() == pytest.approx(list(g.logprobs), abs=2e-4)
        assert logprobs[row, n:].abs().sum() == 0
    # Greedy tokens are each step's argmax, so their log-probs are the largest: not a vacuous match.
    assert all(lp <= 0 for g in generations for lp in g.logprobs)
