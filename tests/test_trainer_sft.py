"""SFT warm-up (guiagent.trainer.sft) on MobileSim oracle trajectories with the tiny Qwen2.5-VL."""

from __future__ import annotations

import pytest
import torch

from guiagent.actions import ActionSpaceConfig, format_action
from guiagent.data.store import iter_episodes
from guiagent.errors import DataError
from guiagent.policy.local import LocalPolicy
from guiagent.policy.prompts import PromptConfig
from guiagent.trainer.engine import TorchEngine, lr_schedule
from guiagent.trainer.sft import expert_samples, sft_warmup

PROMPT = PromptConfig(actions=ActionSpaceConfig(format="qwen25vl_mobile", max_pixels=32 * 28 * 28))


def test_expert_samples_are_the_expert_actions_as_model_text_with_expert_history(tiny_qwen25vl, expert_store):
    processor = LocalPolicy.from_pretrained(tiny_qwen25vl).processor
    (expert,) = list(iter_episodes(expert_store))
    samples = expert_samples([expert], processor, PROMPT, expert_store)
    assert len(samples) == len(expert.steps) >= 2
    tokenizer = processor.tokenizer
    texts = []
    for sample, step in zip(samples, expert.steps):
        geometry = PROMPT.geometry(step.observation.width, step.observation.height)
        texts.append(format_action(step.action, "qwen25vl_mobile", geometry))
        assert sample.response_ids[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(sample.response_ids[:-1]) == texts[-1]
    # Step 2's prompt holds the expert's step-1 answer as the previous assistant turn (text history).
    prompt_text = "".join(
        m["content"] if isinstance(m["content"], str) else "".join(part.get("text", "") for part in m["content"])
        for m in samples[1].messages
    )
    assert texts[0] in prompt_text and texts[1] not in prompt_text


def test_expert_samples_name_the_step_without_an_action(tiny_qwen25vl, expert_store):
    import dataclasses

    processor = LocalPolicy.from_pretrained(tiny_qwen25vl).processor
    (expert,) = list(iter_episodes(expert_store))
    broken = dataclasses.replace(expert, steps=(dataclasses.replace(expert.steps[0], action=None),))
    with pytest.raises(DataError, match="no action") as info:
        expert_samples([broken], processor, PROMPT, expert_store)
    assert "step 0" in str(info.value)


@pytest.mark.timeout(120)
def test_sft_loss_falls_and_is_deterministic_for_a_seed(tiny_qwen25vl, expert_store):
    experts = list(iter_episodes(expert_store))
    policy = LocalPolicy.from_pretrained(tiny_qwen25vl)
    samples = expert_samples(experts, policy.processor, PROMPT, expert_store)
    before = [p.detach().clone() for p in policy.model.parameters()]
    engine = TorchEngine(policy.model, lr=1e-3, schedule=lr_schedule("linear", 30))
    metrics = sft_warmup(engine, policy.processor, samples, steps=30, batch_size=2, seed=3)
    assert len(metrics["losses"]) == 30 and all(torch.isfinite(torch.tensor(metrics["losses"])))
    # Random init predicts ~uniform over the 4k vocabulary on the first tokens; 30 steps of a 3-sample set
    # bring the mean cross-entropy far down.
    assert metrics["loss_end"] < 0.25 * metrics["loss_start"], metrics
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.model.parameters()))
    assert not policy.model.training  # left in the mode it came in

    again = LocalPolicy.from_pretrained(tiny_qwen25vl)
    # Same seed, same run (the linear schedule depends on the step count, so the whole run is repeated), here
    # with micro-batches of one sample: the accumulated gradient is the batch's, so the losses are the same
    # (up to float summation order, which Adam's normalised steps carry into the last, ~0.01 losses as ~1e-5).
    engine = TorchEngine(again.model, lr=1e-3, schedule=lr_schedule("linear", 30))
    rerun = sft_warmup(engine, again.processor, samples, steps=30, batch_size=2, seed=3, micro_batch_size=1)
    assert rerun["losses"] == pytest.approx(metrics["losses"], rel=1e-4, abs=3e-5)
