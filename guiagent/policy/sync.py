"""Push the trainer's new weights to the serving vLLM policy: one interface, three backends.

* ``lora``   — save the PEFT adapter, ``POST /v1/load_lora_adapter`` under a versioned name
  (``policy-v3``), unload versions older than ``keep``. Server: ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``.
* ``reload`` — save the full weights (merged when LoRA) as safetensors, then ``/pause`` →
  ``/collective_rpc reload_weights(weights_path=...)`` → ``/resume``. Server: ``VLLM_SERVER_DEV_MODE=1``.
* ``nccl``   — vLLM's native weight transfer (``/init_weight_transfer_engine``, ``/start_weight_update``,
  ``/update_weights``, ``/finish_weight_update``) broadcasting tensors over NCCL from the trainer's GPU;
  needs vLLM installed beside the trainer and a server started with ``--weight-transfer-config``.

Parameter names: transformers 5 keeps Qwen2.5-VL's weights in memory as ``model.language_model.*``,
``model.visual.*`` and ``lm_head.*``, while checkpoints (what ``save_pretrained`` writes, what vLLM's
loader reads) say ``model.*``, ``visual.*`` and ``lm_head.*``. :func:`checkpoint_name` maps the first to
the second; :func:`vllm_parameter_name` maps checkpoint names to vLLM's own module parameters (its
``language_model.model.*`` prefix and its fused ``qkv_proj`` / ``gate_up_proj``), which is what vLLM's
weight checksums report and what the tests compare against.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
from pydantic import Field

from guiagent.config import StrictModel
from guiagent.errors import ConfigError, GuiAgentError, WeightSyncError
from guiagent.policy.client import VLLMClient

# In-memory (transformers 5) prefix -> checkpoint prefix. Order matters: the most specific first.
_CHECKPOINT_PREFIXES = (("model.language_model.", "model."), ("model.visual.", "visual."))
# Checkpoint prefix -> vLLM module prefix (Qwen2_5_VLForConditionalGeneration.hf_to_vllm_mapper).
_VLLM_PREFIXES = (("visual.", "visual."), ("model.", "language_model.model."), ("lm_head.", "language_model.lm_head."))
# Separate checkpoint projections that vLLM fuses into one parameter.
_VLLM_FUSED = (
    (re.compile(r"\.self_attn\.[qkv]_proj\."), ".self_attn.qkv_proj."),
    (re.compile(r"\.mlp\.(gate|up)_proj\."), ".mlp.gate_up_proj."),
)


def checkpoint_name(name: str) -> str:
    """Map a parameter name of the trainer's model to the checkpoint's (``model.language_model.x`` → ``model.x``)."""
    for prefix, replacement in _CHECKPOINT_PREFIXES:
        if name.startswith(prefix):
            return replacement + name[len(prefix) :]
    return name


def vllm_parameter_name(name: str) -> str:
    """Map a checkpoint (or in-memory) parameter name to the vLLM model parameter it loads into."""
    name = checkpoint_name(name)
    for prefix, replacement in _VLLM_PREFIXES:
        if name.startswith(prefix):
            name = replacement + name[len(prefix) :]
            break
    for pattern, replacement in _VLLM_FUSED:
        name = pattern.sub(replacement, name)
    return name


def checkpoint_state_dict(model_or_state: Any) -> dict[str, Any]:
    """The full weights in checkpoint naming, LoRA deltas merged in, without modifying the model.

    Args:
        model_or_state: A transformers model, a PEFT ``PeftModel`` around one, or a state dict in either
            naming.

    Returns:
        ``{checkpoint name: tensor}`` (detached, contiguous), e.g. ``model.layers.0.self_attn.q_proj.weight``.
    """
    import torch

    if isinstance(model_or_state, dict):
        return {checkpoint_name(k): v.detach().contiguous() for k, v in model_or_state.items()}
    model = model_or_state
    deltas: dict[str, torch.Tensor] = {}
    if hasattr(model, "peft_config"):
        from peft.tuners.lora import LoraLayer

        adapter = model.active_adapter
        for module_name, module in model.named_modules():
            if isinstance(module, LoraLayer) and adapter in module.lora_A:
                deltas[f"{module_name}.base_layer.weight"] = module.get_delta_weight(adapter)
    state = {}
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if "lora_" in name:
                continue
            merged = tensor + deltas[name].to(tensor.dtype) if name in deltas else tensor
            clean = name.removeprefix("base_model.model.").replace(".base_layer.", ".")
            state[checkpoint_name(clean)] = merged.detach().contiguous()
    return state


class WeightSync(Protocol):
    """Pushes a new policy version to the server."""

    def push(self, model_or_state: Any, version: int) -> str:
        """Make ``model_or_state`` the serving policy as version ``version``.

        Returns:
            The model name clients must request to be served by the new weights (``GenerationRequest.model``).

        Raises:
            WeightSyncError: the server did not take the new weights.
        """
        ...


def _post(client: VLLMClient, what: str, path: str, payload: dict[str, Any] | None = None, **params: Any) -> Any:
    try:
        return client.post(path, payload, params=params or None)
    except GuiAgentError as exc:
        raise WeightSyncError(f"{what}: {exc}") from exc


class LoraSync:
    """``lora`` backend: adapters under versioned names, older versions unloaded.

    Args:
        client: Client of the server (its ``max_retries`` / ``timeout`` apply to the sync calls).
        adapter_dir: Where adapters are saved (one sub-directory per version); must be readable by the server.
        prefix: Adapter names are ``f"{prefix}-v{version}"``.
        keep: Versions kept loaded (>= 1): in-flight episodes of the previous version may finish.
    """

    def __init__(self, client: VLLMClient, adapter_dir: str | Path, prefix: str = "policy", keep: int = 2):
        if keep < 1:
            raise WeightSyncError("keep must be >= 1")
        self.client, self.adapter_dir, self.prefix, self.keep = client, Path(adapter_dir), prefix, keep
        self.loaded: list[str] = []

    def push(self, model_or_state: Any, version: int) -> str:
        """Save (a ``PeftModel``) or take (a directory path) the adapter and load it as ``prefix-v{version}``."""
        name = f"{self.prefix}-v{version}"
        if isinstance(model_or_state, (str, Path)):
            path = Path(model_or_state)
        elif hasattr(model_or_state, "peft_config"):
            path = self.adapter_dir / name
            model_or_state.save_pretrained(path)
        else:
            raise WeightSyncError(f"lora sync needs a PEFT model or an adapter directory, got {type(model_or_state)}")
        _check_adapter(path)
        _post(self.client, f"load adapter {name} from {path}", "/v1/load_lora_adapter",
              # load_inplace: pushing a version again (a resumed trainer) replaces it instead of failing.
              {"lora_name": name, "lora_path": str(path.resolve()), "load_inplace": True})
        self.loaded.append(name)
        while len(self.loaded) > self.keep:
            old = self.loaded.pop(0)
            _post(self.client, f"unload adapter {old}", "/v1/unload_lora_adapter", {"lora_name": old})
            shutil.rmtree(self.adapter_dir / old, ignore_errors=True)
        return name


def _check_adapter(path: Path) -> None:
    """Refuse adapters vLLM would load only partly: by default it applies LoRA to the language model only."""
    from safetensors import safe_open

    weights = path / "adapter_model.safetensors"
    if not weights.exists():
        raise WeightSyncError(f"{weights} not found (save the adapter with PeftModel.save_pretrained)")
    with safe_open(str(weights), "pt") as f:
        vision = [k for k in f.keys() if ".visual." in k]
    if vision:
        raise WeightSyncError(
            f"adapter {path} has LoRA weights on the vision tower ({vision[0]} ...), which vLLM does not apply; "
            "restrict target_modules to the language model (e.g. r'.*language_model.*\\.(q|k|v|o)_proj') "
            "or use the reload backend"
        )


class ReloadSync:
    """``reload`` backend: full weights through a shared directory and vLLM's in-place reload.

    Args:
        client: Client of the server (started with ``VLLM_SERVER_DEV_MODE=1``).
        weights_dir: Where each version's safetensors go (one sub-directory per version); the server reads it.
        model_name: The served model name (returned by :meth:`push`: reload keeps the name).
        keep: Version directories kept on disk.
    """

    def __init__(self, client: VLLMClient, weights_dir: str | Path, model_name: str, keep: int = 1):
        self.client, self.weights_dir, self.model_name, self.keep = client, Path(weights_dir), model_name, keep
        self.saved: list[Path] = []

    def push(self, model_or_state: Any, version: int) -> str:
        from safetensors.torch import save_file

        path = self.weights_dir / f"v{version}"
        path.mkdir(parents=True, exist_ok=True)
        save_file(checkpoint_state_dict(model_or_state), str(path / "model.safetensors"))
        # "wait" lets in-flight requests finish on the old weights instead of aborting them.
        _post(self.client, "pause", "/pause", mode="wait")
        try:
            _post(self.client, f"reload weights from {path}", "/collective_rpc",
                  {"method": "reload_weights", "kwargs": {"weights_path": str(path.resolve())}})
        finally:
            _post(self.client, "resume", "/resume")
        _post(self.client, "record weight version", "/update_weight_version", {"new_version": str(version)})
        self.saved.append(path)
        while len(self.saved) > self.keep:
            shutil.rmtree(self.saved.pop(0), ignore_errors=True)
        return self.model_name


class NcclSync:
    """``nccl`` backend: vLLM's native NCCL weight transfer (GPU only; vLLM must be importable here).

    The first push opens the transfer group (trainer = rank 0, the server's workers = ranks 1..N); each
    push broadcasts every parameter in checkpoint naming, merged when LoRA.

    Args:
        base_url: Server root; the server runs with ``--weight-transfer-config '{"backend": "nccl"}'``.
        model_name: Served model name (kept across versions).
        master_address: Address of this trainer, reachable by the server's workers.
        master_port: Free TCP port for the NCCL rendezvous.
        server_world_size: Number of server workers (tensor x pipeline parallel size).
    """

    def __init__(self, base_url: str, model_name: str, master_address: str = "127.0.0.1",
                 master_port: int = 29600, server_world_size: int = 1):
        self.base_url, self.model_name = base_url.rstrip("/"), model_name
        self.master_address, self.master_port = master_address, master_port
        self.server_world_size = server_world_size
        self.engine: Any = None  # vLLM's trainer-side engine, created by the first push
        self.source: Any = None
        self.client: Any = None

    def push(self, model_or_state: Any, version: int) -> str:
        try:
            from vllm.distributed.weight_transfer.base import ParamMeta, WeightSource
            from vllm.distributed.weight_transfer.clients import HTTPVLLMWeightSyncClient
            from vllm.distributed.weight_transfer.nccl_engine import (
                NCCLTrainerInitInfo,
                NCCLTrainerWeightTransferEngine,
            )
        except ImportError as exc:
            raise WeightSyncError("the nccl backend needs vLLM installed in the trainer's environment") from exc

        class StateSource(WeightSource):
            """The latest pushed state dict, re-iterable as vLLM's engine requires."""

            def __init__(self) -> None:
                self.state: dict[str, Any] = {}

            def metadata(self) -> list[ParamMeta]:
                return [ParamMeta(name, t.dtype, tuple(t.shape)) for name, t in self.state.items()]

            def __iter__(self):
                return iter(self.state.items())

        started = time.monotonic()
        try:
            if self.engine is None:
                self.source = StateSource()
                self.client = HTTPVLLMWeightSyncClient(self.base_url)
                info = NCCLTrainerInitInfo(
                    master_address=self.master_address, master_port=self.master_port,
                    world_size=1 + self.server_world_size, rank=0,
                )
                self.engine = NCCLTrainerWeightTransferEngine.trainer_init(info, client=self.client, source=self.source)
            self.source.state = checkpoint_state_dict(model_or_state)
            self.engine.send_weights()
            httpx.post(f"{self.base_url}/update_weight_version", json={"new_version": str(version)},
                       timeout=60).raise_for_status()
        except Exception as exc:  # NCCL / HTTP failures surface as many types; all mean the push failed
            raise WeightSyncError(f"nccl weight push of version {version} failed after "
                                  f"{time.monotonic() - started:.1f} s: {exc}") from exc
        return self.model_name


class SyncConfig(StrictModel):
    """Which weight-sync backend the trainer uses and where it puts files."""

    backend: Literal["local", "lora", "reload", "nccl"] = Field(
        "lora", description="How new weights reach the server; local: no server, the trainer's own model samples.")
    directory: str = Field("runs/sync", description="lora/reload: where adapters or weights are saved (server-readable).")
    prefix: str = Field("policy", description="lora: adapters are served as '<prefix>-v<version>'.")
    keep: int = Field(2, ge=1, description="Versions kept loaded (lora) or on disk (reload).")
    master_address: str = Field("127.0.0.1", description="nccl: this trainer's address as the workers reach it.")
    master_port: int = Field(29600, ge=1, le=65535, description="nccl: TCP port of the NCCL rendezvous.")
    server_world_size: int = Field(1, ge=1, description="nccl: number of server workers (TP x PP).")


def make_weight_sync(config: SyncConfig, client: VLLMClient) -> WeightSync:
    """The backend ``config.backend`` names, talking to the server behind ``client``."""
    if config.backend == "local":
        raise ConfigError("sync backend local has no server to push to (the trainer's model samples in-process)")
    if config.backend == "lora":
        return LoraSync(client, config.directory, prefix=config.prefix, keep=config.keep)
    if config.backend == "reload":
        return ReloadSync(client, config.directory, model_name=client.model, keep=config.keep)
    return NcclSync(client.base_url, client.model, master_address=config.master_address,
                    master_port=config.master_port, server_world_size=config.server_world_size)
