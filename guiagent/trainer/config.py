"""The trainer's config sections: what to train, how to step the optimizer, where data and tasks come from,
and how the run is evaluated. They join the strict file schema (:mod:`guiagent.schema`) beside the rollout,
algorithm, sync and farm sections, so ``guiagent train CONFIG`` reads one checked file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from guiagent.config import StrictModel


class LoraSettings(StrictModel):
    """PEFT LoRA adapters on the language model's projections (the base weights stay frozen)."""

    r: int = Field(16, ge=1, description="Adapter rank.")
    alpha: int = Field(32, ge=1, description="Scaling numerator (the adapter output is scaled by alpha / r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Module names that get adapters.")


class OptimizerConfig(StrictModel):
    """AdamW and its learning-rate schedule (one optimizer step per update)."""

    lr: float = Field(1e-6, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    max_grad_norm: float = Field(1.0, gt=0, description="Global gradient-norm clip.")
    schedule: Literal["constant", "linear", "cosine"] = Field("constant", description="Decay after warm-up.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")


class SftConfig(StrictModel):
    """The SFT warm-up on expert data before RL (teacher-forced cross-entropy on the expert actions)."""

    steps: int = Field(0, ge=0, description="Optimizer steps (0: no warm-up).")
    batch_size: int = Field(4, ge=1, description="Expert steps per optimizer step.")
    lr: float = Field(1e-5, gt=0, description="Peak learning rate (linear decay to 0 over the warm-up).")


class DataConfig(StrictModel):
    """Where expert data and online tasks come from.

    Offline rollout kinds (semi_online, hierarchical, grounding) and the SFT warm-up read expert trajectories:
    a trajectory store (``store``) or MobileSim demonstrations generated at the start of the run from
    ``templates`` × ``seeds``. Online rollouts play MobileSim tasks ``online_templates`` × ``seeds``.
    """

    store: str | None = Field(None, description="Expert trajectory store (path or fsspec URL); None: generate.")
    templates: list[str] = Field(default_factory=list, description="MobileSim templates demonstrated by the oracle.")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2, 3], description="Training task seeds.")
    online_templates: list[str] | None = Field(
        None, description="Tasks the online rollouts play: MobileSim templates (None: the demonstrated ones; "
        "templates without demonstrations are learned from the task reward alone), or MiniWoB++ task names.")
    suite: Literal["mobilesim", "miniwob", "osworld"] = Field(
        "mobilesim", description="Where online training tasks come from: MobileSim templates x seeds, MiniWoB++ "
        "names x seeds, or OSWorld task JSON files (task_files).")
    task_files: str | None = Field(None, description="osworld: a task JSON file or a directory of them.")

    @model_validator(mode="after")
    def _some_data(self) -> DataConfig:
        if self.suite == "osworld" and not self.task_files:
            raise ValueError("suite osworld needs task_files (OSWorld task JSON)")
        if self.store is None and not self.templates and not self.online_templates and not self.task_files:
            raise ValueError("data needs a store, MobileSim templates to demonstrate, or online templates to play")
        return self


class EvaluationConfig(StrictModel):
    """Held-out evaluation: before training, every ``every`` updates and at the end."""

    every: int = Field(0, ge=0, description="Updates between evaluations (0: only before and after).")
    templates: list[str] = Field(default_factory=list, description="MobileSim templates evaluated online.")
    seeds: list[int] = Field(default_factory=lambda: [100, 101, 102, 103], description="Held-out task seeds.")
    max_steps: int | None = Field(None, ge=1, description="Step budget per episode (None: the task's).")
    before: bool = Field(True, description="Also evaluate before the first update (eval/before_rl.json).")
    on_farm: bool = Field(
        False, description="Play the held-out episodes on the farm with the served policy instead of in-process "
        "with the trainer's own weights (which makes runs with and without a server comparable).")
    sop: bool = Field(True, description="Also score SOP offline on the oracle's demonstrations of these tasks.")
    max_tokens: int = Field(64, ge=1, description="Most tokens per greedy answer.")


class TrainerConfig(StrictModel):
    """The training run: the model, the rollout kind, the engine and the cadence of its phases."""

    model: str = Field("tiny", description="A Hugging Face model directory, or 'tiny' (built into the run directory).")
    rollout: Literal["sft", "semi_online", "online", "grounding", "hierarchical"] = Field(
        "semi_online", description="Where the update's samples come from.")
    steps: int = Field(10, ge=0, description="Updates (RL steps, or SFT steps for rollout 'sft').")
    max_seconds: float | None = Field(None, gt=0, description="Stop starting updates after this wall time.")
    groups_per_step: int = Field(4, ge=1, description="Expert trajectories / tasks / samples per update.")
    micro_batch_size: int = Field(8, ge=1, description="Rows per forward/backward (gradient accumulation).")
    old_logprobs: Literal["recorded", "recompute"] = Field(
        "recorded", description="PPO's old log-probs: those the sampler recorded, or recomputed by the trainer.")
    max_staleness: int = Field(0, ge=0, description="Policy versions a trajectory may lag the update by.")
    drop_zero_advantage: bool = Field(True, description="Skip an update whose advantages are all zero.")
    temperature: float = Field(1.0, gt=0, description="Rollout sampling temperature.")
    max_tokens: int = Field(64, ge=1, description="Most tokens per sampled response.")
    engine: Literal["torch", "deepspeed"] = Field("torch", description="Plain PyTorch, or DeepSpeed ZeRO.")
    deepspeed_config: str | None = Field(None, description="DeepSpeed JSON (configs/deepspeed/); engine deepspeed.")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="Training precision (bf16 on GPUs).")
    finetune: Literal["full", "lora"] = Field("full", description="Train every weight, or LoRA adapters.")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA settings (finetune lora).")
    freeze_vision: bool = Field(False, description="Keep the vision tower frozen.")
    local_farm: int = Field(0, ge=0, description="Start a local farm of this many MobileSim workers for the run "
                            "(0: use the farm section's broker when the run needs a farm).")
    checkpoint_every: int = Field(0, ge=0, description="Updates between checkpoints (0: only at the end).")
    keep_checkpoints: int = Field(2, ge=1, description="Checkpoints kept on disk (the newest).")
    tensorboard: bool = Field(True, description="Also write TensorBoard event files.")
    wandb_project: str | None = Field(None, description="Also log to this Weights & Biases project.")

    @model_validator(mode="after")
    def _engine_config(self) -> TrainerConfig:
        if self.engine == "deepspeed" and not self.deepspeed_config:
            raise ValueError("engine deepspeed needs deepspeed_config (e.g. configs/deepspeed/zero2.json)")
        return self


__all__ = ["DataConfig", "EvaluationConfig", "LoraSettings", "OptimizerConfig", "SftConfig", "TrainerConfig"]
