"""Integration: vLLM's CPU build serving the tiny model, against the local backend and PEFT.

The server (and, on first use, its venv) is a session fixture: install and start-up are paid once.
"""

from __future__ import annotations

import httpx
import pytest
import torch

from guiagent.policy.base import GenerationRequest, Policy, SamplingParams
from guiagent.policy.client import VLLMClient
from guiagent.policy.local import LocalPolicy
from guiagent.policy.prompts import HistoryStep, PromptConfig, build_messages
from guiagent.policy.sync import LoraSync, ReloadSync, vllm_parameter_name

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
GREEDY = SamplingParams(max_tokens=24, greedy=True)
LANGUAGE_LORA = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@pytest.fixture(scope="module")
def client(vllm_server):
    with VLLMClient(vllm_server.url, "tiny", timeout=300, max_retries=1, max_concurrency=4) as c:
        yield c


@pytest.fixture(scope="module")
def local(tiny_qwen25vl):
    return LocalPolicy.from_pretrained(tiny_qwen25vl)


@pytest.fixture(scope="module")
def requests_(policy_screenshots):
    one = GenerationRequest(build_messages("open settings", policy_screenshots[0], [], PromptConfig()))
    history = [HistoryStep("<tool_call>\n{}\n</tool_call>", "click", policy_screenshots[0])]
    two = GenerationRequest(build_messages("add milk", policy_screenshots[2], history, PromptConfig(history_images=2)))
    return [one, two]


def _assert_same(server_gens, local_gens):
    for s, l in zip(server_gens, local_gens, strict=True):
        assert s.token_ids == l.token_ids
        assert s.text == l.text
        assert s.prompt_tokens == l.prompt_tokens
        assert s.logprobs == pytest.approx(l.logprobs, abs=2e-3)


def test_chat_with_screenshots_greedy_equals_local(client, local, requests_):
    assert isinstance(client, Policy)
    _assert_same(client.generate(requests_, GREEDY), local.generate(requests_, GREEDY))


def test_seeded_sampling_is_reproducible_under_concurrency(vllm_server, requests_):
    """Seeded requests whose prompts are batched together (the CPU build needs chunked prefill off)."""
    with VLLMClient(vllm_server.url, "tiny", timeout=300, max_retries=0, max_concurrency=8) as client:
        batch = requests_ * 4
        sample = SamplingParams(max_tokens=12, temperature=1.0, seed=11)
        first = client.generate(batch, sample)
        second = client.generate(batch, sample)
        alone = client.generate(batch[2:3], SamplingParams(max_tokens=12, temperature=1.0, seed=13))
    assert [g.token_ids for g in first] == [g.token_ids for g in second]
    # Request i samples with seed + i: one prompt asked G times in a call gets G samples (a GRPO group),
    # and request 2 alone with seed 13 is request 2 of the call.
    assert len({g.token_ids for g in first[0::2]}) > 1
    assert alone[0].token_ids == first[2].token_ids


def test_parameter_names_map_onto_vllm_parameters(vllm_server, local):
    body = httpx.post(f"{vllm_server.url}/weight_checker", json={"action": "checksum"}, timeout=120).json()
    # Keys look like "dp0:pp0:pcp0:tp0:<name>"; with LoRA enabled vLLM wraps layers in ".base_layer.".
    served = {key.rsplit(":", 1)[-1].replace(".base_layer.", ".") for key in body["checksums"]}
    assert {vllm_parameter_name(name) for name in local.model.state_dict()} == served


def test_lora_sync_serves_what_peft_merged_computes(client, local, requests_, tmp_path):
    import copy

    from peft import LoraConfig, get_peft_model

    torch.manual_seed(3)
    # init_lora_weights=False: random A and B, so the adapter really changes the outputs.
    peft_model = get_peft_model(copy.deepcopy(local.model),
                                LoraConfig(r=8, lora_alpha=16, target_modules=LANGUAGE_LORA, init_lora_weights=False))
    sync = LoraSync(client, tmp_path / "adapters", keep=1)
    name = sync.push(peft_model, version=1)
    assert name == "policy-v1"
    merged = LocalPolicy(copy.deepcopy(peft_model).merge_and_unload(), local.processor)  # merging mutates
    expected = merged.generate(requests_, GREEDY)
    assert expected[0].token_ids != local.generate(requests_[:1], GREEDY)[0].token_ids
    _assert_same(client.generate([GenerationRequest(r.messages, model=name) for r in requests_], GREEDY), expected)
    # The base model is still served unchanged beside the adapter.
    _assert_same(client.generate(requests_[:1], GREEDY), local.generate(requests_[:1], GREEDY))

    # Version 2 replaces version 1 (keep=1): v1 is unloaded from the server.
    sync.push(peft_model, version=2)
    models = {m["id"] for m in httpx.get(f"{client.base_url}/v1/models", timeout=30).json()["data"]}
    assert "policy-v2" in models and "policy-v1" not in models


def test_reload_sync_serves_the_new_weights(client, local, requests_, tmp_path, tiny_qwen25vl):
    from transformers import AutoModelForImageTextToText

    from guiagent.policy.tiny import build_tiny_qwen25vl

    other_dir = build_tiny_qwen25vl(tmp_path / "seed1", seed=1)  # same tokenizer, other weights
    other = LocalPolicy(AutoModelForImageTextToText.from_pretrained(other_dir).eval(), local.processor)
    expected = other.generate(requests_, GREEDY)
    assert expected[0].token_ids != local.generate(requests_[:1], GREEDY)[0].token_ids
    sync = ReloadSync(client, tmp_path / "weights", model_name="tiny")
    try:
        assert sync.push(other.model, version=1) == "tiny"
        _assert_same(client.generate(requests_, GREEDY), expected)
        assert httpx.get(f"{client.base_url}/weight_info", timeout=30).json()["weight_version"] == "1"
    finally:
        sync.push(local.model, version=2)  # leave the session's server as the other tests expect it
    _assert_same(client.generate(requests_[:1], GREEDY), local.generate(requests_[:1], GREEDY))


def test_serve_cli_serves_until_sigterm_then_stops_everything(tiny_qwen25vl, tmp_path):
    """`guiagent serve --cpu --lora` as a user runs it: healthy, serves base and adapter, SIGTERM stops all."""
    import signal
    import subprocess
    import sys

    import psutil
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from guiagent.net import free_port
    from guiagent.policy.serve import wait_until_healthy

    adapter = tmp_path / "adapter-v0"
    base = AutoModelForImageTextToText.from_pretrained(tiny_qwen25vl)
    get_peft_model(base, LoraConfig(r=4, target_modules=LANGUAGE_LORA)).save_pretrained(adapter)
    port = free_port()
    cli = subprocess.Popen(
        [sys.executable, "-m", "guiagent", "serve", str(tiny_qwen25vl), "--cpu", "--port", str(port),
         "--served-model-name", "cli-tiny", "--dtype", "float32", "--max-model-len", "2048",
         "--lora", f"policy-v0={adapter}", "--log-file", str(tmp_path / "serve.log")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    spawned: list[psutil.Process] = []
    try:
        log = tmp_path / "serve.log"
        wait_until_healthy(f"http://127.0.0.1:{port}", 900, cli, describe=lambda: log.exists() and log.read_text())
        spawned = psutil.Process(cli.pid).children(recursive=True)
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=30).json()["data"]
        assert {m["id"] for m in models} == {"cli-tiny", "policy-v0"}  # the adapter given with --lora
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=120) == 0
        _, alive = psutil.wait_procs(spawned, timeout=30)
        assert not alive, f"server processes left running: {[p.pid for p in alive]}"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait(timeout=30)
        for process in spawned:  # by PID: only the processes this test started
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
