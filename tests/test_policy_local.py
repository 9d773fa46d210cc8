"""Local transformers backend on the tiny model: images, batching, log-probs, greedy determinism, seeds."""

from __future__ import annotations

import pytest
import torch

from guiagent.errors import PolicyError
from guiagent.policy.base import GenerationRequest, Policy, SamplingParams
from guiagent.policy.local import LocalPolicy
from guiagent.policy.prompts import HistoryStep, PromptConfig, build_messages, encode_prompt

GREEDY16 = SamplingParams(max_tokens=16, greedy=True)


@pytest.fixture(scope="module")
def policy(tiny_qwen25vl):
    return LocalPolicy.from_pretrained(tiny_qwen25vl)


@pytest.fixture(scope="module")
def one_image(policy_screenshots):
    return GenerationRequest(build_messages("open settings", policy_screenshots[0], [], PromptConfig()))


@pytest.fixture(scope="module")
def two_images(policy_screenshots):
    history = [HistoryStep('<tool_call>\n{"name": "mobile_use"}\n</tool_call>', "click", policy_screenshots[0])]
    return GenerationRequest(
        build_messages("add milk", policy_screenshots[2], history, PromptConfig(history_images=2)))


def test_local_policy_implements_the_policy_interface(policy):
    assert isinstance(policy, Policy)


def _check_generation(gen, max_tokens):
    assert 1 <= len(gen.token_ids) <= max_tokens
    assert len(gen.logprobs) == len(gen.token_ids)
    assert all(lp <= 0.0 for lp in gen.logprobs)
    assert gen.finish_reason in ("stop", "length")
    assert gen.finish_reason == "length" or gen.token_ids[-1] in (0, 2)


def test_generate_with_one_image(policy, one_image):
    gen = policy.generate([one_image], GREEDY16)[0]
    _check_generation(gen, 16)
    encoded = encode_prompt(policy.processor, one_image.messages)
    assert gen.prompt_tokens == encoded.inputs["input_ids"].shape[1]
    assert gen.text == policy.processor.tokenizer.decode(gen.token_ids, skip_special_tokens=True)


def test_generate_with_two_images(policy, two_images):
    gen = policy.generate([two_images], GREEDY16)[0]
    _check_generation(gen, 16)
    encoded = encode_prompt(policy.processor, two_images.messages)
    assert encoded.n_images == 2 and gen.prompt_tokens == encoded.inputs["input_ids"].shape[1]


def test_logprobs_are_the_models_token_logprobs(policy, two_images):
    """Re-score prompt + completion with one forward pass: the log-probs must be the same numbers."""
    gen = policy.generate([two_images], GREEDY16)[0]
    inputs = encode_prompt(policy.processor, two_images.messages).inputs
    completion = torch.tensor([gen.token_ids])
    full = dict(inputs)
    full["input_ids"] = torch.cat([inputs["input_ids"], completion], dim=1)
    full["attention_mask"] = torch.ones_like(full["input_ids"])
    # transformers 5.23 returns mm_token_type_ids for the prompt only: extend with zeros (text) over the completion.
    full["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(completion)], dim=1)
    with torch.no_grad():
        logits = policy.model(**full).logits[0]
    start = inputs["input_ids"].shape[1]
    rescored = torch.log_softmax(logits[start - 1 : -1].float(), -1).gather(1, completion[0][:, None])[:, 0]
    assert rescored.tolist() == pytest.approx(list(gen.logprobs), abs=1e-4)


def test_greedy_is_deterministic(policy, one_image):
    first = policy.generate([one_image], GREEDY16)[0]
    second = policy.generate([one_image], GREEDY16)[0]
    assert first.token_ids == second.token_ids and first.logprobs == pytest.approx(second.logprobs, abs=1e-6)


def test_batch_with_different_image_counts_matches_single_requests(policy, one_image, two_images):
    batch = policy.generate([one_image, two_images], GREEDY16)
    single = [policy.generate([r], GREEDY16)[0] for r in (one_image, two_images)]
    for b, s in zip(batch, single):
        assert b.token_ids == s.token_ids
        assert b.logprobs == pytest.approx(s.logprobs, abs=1e-3)
        assert b.prompt_tokens == s.prompt_tokens


def test_sampling_is_reproducible_by_seed(policy, one_image):
    sample = SamplingParams(max_tokens=16, temperature=1.5, top_p=0.95, seed=7)
    a = policy.generate([one_image], sample)[0]
    b = policy.generate([one_image], sample)[0]
    others = {policy.generate([one_image], SamplingParams(16, 1.5, 0.95, seed=s))[0].token_ids for s in (8, 9)}
    assert a.token_ids == b.token_ids
    assert others != {a.token_ids}
    # Unseeded calls draw fresh randomness: the same prompt asked again gets other samples.
    fresh = SamplingParams(max_tokens=16, temperature=1.5, top_p=0.95)
    assert len({policy.generate([one_image], fresh)[0].token_ids for _ in range(3)}) > 1


def test_invalid_sampling_and_unknown_model_are_errors(policy, one_image):
    with pytest.raises(PolicyError):
        SamplingParams(temperature=0.0)
    with pytest.raises(PolicyError):
        SamplingParams(top_p=0.0)
    with pytest.raises(PolicyError, match="cannot serve"):
        policy.generate([GenerationRequest(one_image.messages, model="policy-v3")], GREEDY16)


def test_generate_cli_prints_one_greedy_generation(tiny_qwen25vl, policy_screenshots, tmp_path):
    import json
    import subprocess
    import sys

    shot = tmp_path / "screen.png"
    policy_screenshots[0].save(shot)
    argv = [sys.executable, "-m", "guiagent", "policy", "generate", str(tiny_qwen25vl), str(shot), "open settings",
            "--max-tokens", "6"]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert 1 <= len(result["token_ids"]) == len(result["logprobs"]) <= 6
    direct = LocalPolicy.from_pretrained(tiny_qwen25vl).generate(
        [GenerationRequest(build_messages("open settings", shot.read_bytes(), [], PromptConfig()))],
        SamplingParams(max_tokens=6, greedy=True))[0]
    assert tuple(result["token_ids"]) == direct.token_ids
    missing = subprocess.run(argv[:6] + [str(tmp_path / "none.png"), "x"], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and "error:" in missing.stderr
    # --format takes the parser's format names (ActionSpaceConfig.format); anything else is refused up front.
    unknown = subprocess.run(argv + ["--format", "mobile_use"], capture_output=True, text=True, timeout=300)
    assert unknown.returncode == 1 and "qwen3vl_mobile" in unknown.stderr
