"""Weight sync: name mapping between transformers and checkpoints/vLLM, LoRA merging, adapter checks."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors import safe_open

from guiagent.errors import WeightSyncError
from guiagent.policy.sync import (
    LoraSync,
    NcclSync,
    checkpoint_name,
    checkpoint_state_dict,
    vllm_parameter_name,
)

LANGUAGE_LORA = r".*language_model.*\.(q_proj|v_proj|gate_proj)"


@pytest.fixture(scope="module")
def model(tiny_qwen25vl):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(tiny_qwen25vl).eval()


@pytest.mark.parametrize(
    ("trainer_name", "checkpoint", "vllm"),
    [
        ("model.language_model.layers.1.self_attn.k_proj.weight", "model.layers.1.self_attn.k_proj.weight",
         "language_model.model.layers.1.self_attn.qkv_proj.weight"),
        ("model.language_model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.up_proj.weight",
         "language_model.model.layers.0.mlp.gate_up_proj.weight"),
        ("model.language_model.embed_tokens.weight", "model.embed_tokens.weight",
         "language_model.model.embed_tokens.weight"),
        ("model.visual.blocks.0.attn.qkv.bias", "visual.blocks.0.attn.qkv.bias", "visual.blocks.0.attn.qkv.bias"),
        ("model.visual.blocks.1.mlp.gate_proj.weight", "visual.blocks.1.mlp.gate_proj.weight",
         "visual.blocks.1.mlp.gate_up_proj.weight"),
        ("model.visual.merger.mlp.0.weight", "visual.merger.mlp.0.weight", "visual.merger.mlp.0.weight"),
        ("lm_head.weight", "lm_head.weight", "language_model.lm_head.weight"),
    ],
)
def test_names_map_by_hand(trainer_name, checkpoint, vllm):
    assert checkpoint_name(trainer_name) == checkpoint
    assert checkpoint_name(checkpoint) == checkpoint  # already-checkpoint names pass through
    assert vllm_parameter_name(trainer_name) == vllm_parameter_name(checkpoint) == vllm


def test_checkpoint_names_are_what_save_pretrained_writes(model, tiny_qwen25vl):
    """transformers' own reverse conversion on save is the reference for checkpoint naming."""
    state = checkpoint_state_dict(model)
    with safe_open(str(tiny_qwen25vl / "model.safetensors"), "pt") as saved:
        assert set(state) == set(saved.keys())
        for name in state:
            assert torch.equal(state[name], saved.get_tensor(name)), name


def test_lora_is_merged_without_touching_the_model(model):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(copy.deepcopy(model),
                                LoraConfig(r=4, lora_alpha=8, target_modules=LANGUAGE_LORA, init_lora_weights=False))
    before = {k: v.clone() for k, v in peft_model.state_dict().items()}
    state = checkpoint_state_dict(peft_model)
    assert all(torch.equal(before[k], v) for k, v in peft_model.state_dict().items())  # not modified
    reference = checkpoint_state_dict(peft_model.merge_and_unload())
    assert set(state) == set(reference)
    changed = [k for k in state if not torch.equal(state[k], checkpoint_state_dict(model)[k])]
    assert changed and all(("q_proj" in k or "v_proj" in k or "gate_proj" in k) for k in changed)
    for name in state:
        torch.testing.assert_close(state[name], reference[name], rtol=1e-5, atol=1e-6)


def test_state_dicts_in_trainer_naming_are_mapped(model):
    state = checkpoint_state_dict(dict(model.state_dict()))
    assert "model.layers.0.self_attn.q_proj.weight" in state and "visual.patch_embed.proj.weight" in state


def test_lora_sync_refuses_vision_tower_adapters(model, tmp_path):
    from peft import LoraConfig, get_peft_model

    from guiagent.policy.client import VLLMClient

    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules=["qkv"]))  # vision attention
    with VLLMClient("http://127.0.0.1:9", "tiny", timeout=1, max_retries=0) as client:
        with pytest.raises(WeightSyncError, match="vision tower"):
            LoraSync(client, tmp_path).push(peft_model, version=1)
        with pytest.raises(WeightSyncError, match="PEFT model or an adapter directory"):
            LoraSync(client, tmp_path).push(model, version=1)


@pytest.mark.gpu
def test_nccl_sync_pushes_weights(model):
    """Needs a CUDA GPU, vLLM in this environment and a server started with --weight-transfer-config nccl
    at $GUIAGENT_VLLM_URL; checks the server reports the pushed version."""
    import os

    import httpx

    url = os.environ.get("GUIAGENT_VLLM_URL")
    if not url:
        pytest.skip("set GUIAGENT_VLLM_URL to a vLLM server started with --weight-transfer-config nccl")
    sync = NcclSync(url, model_name="tiny")
    assert sync.push(model.cuda(), version=5) == "tiny"
    assert httpx.get(f"{url}/weight_info", timeout=30).json()["weight_version"] == "5"


def test_sync_config_picks_the_backend_and_rejects_unknown_keys(tmp_path):
    from guiagent.config import parse_config
    from guiagent.errors import ConfigError
    from guiagent.policy.client import VLLMClient
    from guiagent.policy.sync import ReloadSync, SyncConfig, make_weight_sync

    with VLLMClient("http://127.0.0.1:9", "served-name", timeout=1) as client:
        lora = make_weight_sync(SyncConfig(directory=str(tmp_path), prefix="agent", keep=3), client)
        assert isinstance(lora, LoraSync) and (lora.prefix, lora.keep) == ("agent", 3)
        reload = make_weight_sync(parse_config({"backend": "reload", "directory": str(tmp_path)}, SyncConfig), client)
        assert isinstance(reload, ReloadSync) and reload.model_name == "served-name"
        nccl = make_weight_sync(SyncConfig(backend="nccl", master_port=29700), client)
        assert isinstance(nccl, NcclSync) and nccl.base_url == "http://127.0.0.1:9"
    with pytest.raises(ConfigError, match="did you mean 'backend'"):
        parse_config({"backnd": "lora"}, SyncConfig)
