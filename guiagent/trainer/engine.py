"""The training engine: who owns the parameters, runs backward and steps the optimizer.

The update code (SFT and policy gradient) never calls ``loss.backward()`` or ``optimizer.step()`` itself: it
calls :meth:`Engine.backward` once per micro-batch, with the micro-batch's share of the batch loss (so the
accumulated gradient is the whole batch's), then :meth:`Engine.step` once. Two engines sit behind that:

- :class:`TorchEngine`: plain PyTorch (CPU here, one GPU elsewhere).
- :class:`DeepSpeedEngine`: DeepSpeed ZeRO-2/3 (``configs/deepspeed/``); bf16 on GPUs, fp32 with gloo in one
  process on CPU, where it gives the same losses as :class:`TorchEngine` for the same seed and data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from guiagent.errors import ConfigError

Schedule = Callable[[int], float]


def lr_schedule(kind: str, total_steps: int, warmup_steps: int = 0) -> Schedule:
    """The learning-rate multiplier at optimizer step ``s``: linear warm-up, then ``constant``, ``linear``
    decay to 0, or ``cosine`` decay to 0 over ``total_steps``."""
    if kind not in ("constant", "linear", "cosine"):
        raise ConfigError(f"lr schedule must be constant, linear or cosine, got {kind!r}")

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if kind == "constant" or total_steps <= warmup_steps:
            return 1.0
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return 1.0 - progress if kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

    return multiplier


class TorchEngine:
    """Plain PyTorch: AdamW over the trainable parameters, a LambdaLR schedule, a global-norm clip.

    Args:
        model: The policy; every parameter with ``requires_grad`` is trained.
        lr: Peak learning rate.
        weight_decay: AdamW weight decay.
        betas: AdamW betas.
        max_grad_norm: Global gradient-norm clip applied in :meth:`step`.
        schedule: Learning-rate multiplier per optimizer step (:func:`lr_schedule`); None: constant.

    Attributes:
        module: The model to run forward passes with.
        steps: Optimizer steps taken.
    """

    def __init__(self, model: torch.nn.Module, *, lr: float, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), max_grad_norm: float = 1.0,
                 schedule: Schedule | None = None):
        self.module = model
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ConfigError("the model has no trainable parameters")
        self.optimizer = torch.optim.AdamW(self.params, lr=lr, weight_decay=weight_decay, betas=betas)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule or (lambda step: 1.0))
        self.max_grad_norm = max_grad_norm
        self.steps = 0

    def backward(self, loss: torch.Tensor, last: bool = True) -> None:
        """Accumulate the gradient of ``loss`` (one micro-batch's share of the batch loss); ``last`` marks
        the update's final micro-batch (DeepSpeed reduces the gradients there)."""
        loss.backward()

    def step(self) -> dict[str, float]:
        """Clip, step the optimizer and the schedule, clear the gradients.

        Returns:
            ``grad_norm`` (before clipping) and ``lr`` (the rate this step used).
        """
        lr = self.optimizer.param_groups[0]["lr"]
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        return {"grad_norm": grad_norm, "lr": lr}

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        """Optimizer and schedule state (the weights are saved separately, as a Hugging Face directory)."""
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.steps = int(state["steps"])


class DeepSpeedEngine(TorchEngine):
    """DeepSpeed ZeRO (stage 2 or 3 from ``config``) around the same AdamW and schedule as :class:`TorchEngine`.

    The optimizer is ours (passed as DeepSpeed's client optimizer), so plain torch and DeepSpeed step the
    same AdamW; gradient accumulation is driven by :meth:`backward`'s ``last`` flag rather than a fixed
    ``gradient_accumulation_steps``, because an update's micro-batch count depends on its rollouts. On a
    machine without a launcher (one CPU process) it initialises a world of one over gloo.

    Args:
        model: The policy.
        config: The DeepSpeed config (a ``configs/deepspeed/*.json`` as a dict); its optimizer, scheduler,
            batch-size and clipping keys are set here from the other arguments.
        **options: As :class:`TorchEngine`.
    """

    def __init__(self, model: torch.nn.Module, config: dict[str, Any], **options: Any):
        import os

        import deepspeed

        super().__init__(model, **options)
        for key, value in (("MASTER_ADDR", "127.0.0.1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
            os.environ.setdefault(key, value)
        if "MASTER_PORT" not in os.environ:
            from guiagent.net import free_port

            os.environ["MASTER_PORT"] = str(free_port())
        if not torch.distributed.is_initialized():
            deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
        config = {**config, "train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
                  "gradient_clipping": self.max_grad_norm, "zero_allow_untested_optimizer": True}
        config.pop("optimizer", None)
        config.pop("scheduler", None)
        self.engine, self.optimizer, _, _ = deepspeed.initialize(
            model=model, optimizer=self.optimizer, lr_scheduler=self.scheduler, config=config,
            model_parameters=self.params)
        self.module = self.engine.module

    def backward(self, loss: torch.Tensor, last: bool = True) -> None:
        self.engine.set_gradient_accumulation_boundary(last)
        # The caller already scaled the loss to its share of the batch.
        self.engine.backward(loss, scale_wrt_gas=False)

    def step(self) -> dict[str, float]:
        lr = self.scheduler.get_last_lr()[0]
        self.engine.set_gradient_accumulation_boundary(True)
        self.engine.step()
        self.steps += 1
        norm = self.engine.get_global_grad_norm()
        return {"grad_norm": float(norm) if norm is not None else float("nan"), "lr": lr}

    def zero_grad(self) -> None:
        self.engine.zero_grad()

    def state_dict(self) -> dict[str, Any]:
        # ZeRO's optimizer state is partitioned: its own state_dict gathers this rank's partition.
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "steps": self.steps}


def prepare_model(model: torch.nn.Module, finetune: str = "full", lora: Any = None,
                  freeze_vision: bool = False) -> torch.nn.Module:
    """The model as the trainer trains it: LoRA adapters (peft) or full fine-tuning, optionally with the
    vision tower frozen. Returns the (possibly wrapped) model."""
    if finetune == "lora":
        from peft import LoraConfig, get_peft_model

        settings = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                              target_modules=list(lora.target_modules), bias="none")
        model = get_peft_model(model, settings)
    elif finetune != "full":
        raise ConfigError(f"finetune must be full or lora, got {finetune!r}")
    if freeze_vision:
        frozen = 0
        for name, parameter in model.named_parameters():
            if ".visual." in f".{name}" or name.startswith("visual."):
                parameter.requires_grad_(False)
                frozen += 1
        if not frozen:
            raise ConfigError("freeze_vision: the model has no 'visual' parameters")
    return model


def make_engine(model: torch.nn.Module, trainer: Any, optimizer: Any, total_steps: int) -> TorchEngine:
    """The engine a :class:`~guiagent.trainer.config.TrainerConfig` names, with its optimizer settings."""
    options = dict(lr=optimizer.lr, weight_decay=optimizer.weight_decay, betas=tuple(optimizer.betas),
                   max_grad_norm=optimizer.max_grad_norm,
                   schedule=lr_schedule(optimizer.schedule, total_steps, optimizer.warmup_steps))
    if trainer.engine == "torch":
        return TorchEngine(model, **options)
    import json
    from pathlib import Path

    path = Path(trainer.deepspeed_config)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the DeepSpeed config: {exc}") from None
    if trainer.precision == "bf16":
        config["bf16"] = {"enabled": True}
    return DeepSpeedEngine(model, config, **options)


__all__ = ["DeepSpeedEngine", "Schedule", "TorchEngine", "lr_schedule", "make_engine", "prepare_model"]
