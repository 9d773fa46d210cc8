"""Setting a training run up: everything :class:`guiagent.trainer.loop.Trainer` needs, built from the config.

In order: the run directory and its config (a resumed run must have the same one), seeds, the model
(LoRA or full, vision tower optionally frozen), expert data (a store, or MobileSim demonstrations recorded
here), held-out tasks and their demonstrations, the SFT warm-up, the engine, the frozen reference model,
policy serving and weight sync (in-process, or a vLLM server kept in step with ``lora``/``reload``/``nccl``),
the farm (a local one started here, or the configured broker), the rollout source, the held-out
evaluation, the checkpoint to resume from, and the metrics log. Whatever is started here is stopped by the
caller's ``ExitStack``, also when the run fails.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from guiagent.errors import ConfigError
from guiagent.trainer.loop import version_number

SCREEN = (1080, 2400)  # MobileSim's screen on the farm's sim workers and in-process


@dataclass
class Run:
    """A set-up run (see the module docstring)."""

    config: Any
    run_dir: Path
    processor: Any
    engine: Any
    prompt: Any
    source: Any
    sampler: Callable[[str], Any]  # policy version -> the policy that samples the rollouts
    sync: Callable[[str], None]  # policy version -> the served policy moves to the current weights
    eval_policy: Callable[[str], Any]
    evaluation: Any
    log: Any
    progress: Callable[..., Callable[[int, dict], None]]
    store: Any = None  # RUN/store: rollouts and evaluation episodes
    start_step: int = 0
    ref_model: Any = None
    buffer: Any = None
    setup_info: dict[str, Any] = field(default_factory=dict)

    def state(self) -> dict[str, Any]:
        """Trainer state for a checkpoint beside the weights and the engine (JSON values only)."""
        from guiagent.trainer.checkpoint import without_screenshots

        return {} if self.buffer is None else {"replay": self.buffer.to_json(without_screenshots)}

    def final_evaluation(self, steps_done: int) -> dict[str, Any] | None:
        """The held-out evaluation after the last update (the loop ran it already when it finished)."""
        path = self.run_dir / "eval" / f"step-{steps_done:06d}.json"
        if self.evaluation is None:
            return None
        if path.exists():
            return json.loads(path.read_text(encoding="utf-8"))
        return self.evaluation(f"step-{steps_done:06d}", self.eval_policy(f"v{steps_done}"), f"v{steps_done}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _config_json(config: Any) -> dict[str, Any]:
    return config.model_dump(mode="json")


def prepare_run_dir(config: Any, run_dir: Path, resume: bool) -> None:
    """Create ``run_dir`` and write ``config.json``; a resumed run must bring the same config.

    Raises:
        ConfigError: resuming with a different config, or starting over a run directory that has checkpoints.
    """
    saved = run_dir / "config.json"
    if resume:
        if not saved.exists():
            raise ConfigError(f"--resume: {run_dir} has no run to resume (no config.json)")
        before = json.loads(saved.read_text(encoding="utf-8"))
        if before != _config_json(config):
            changed = sorted(k for k in set(before) | set(_config_json(config))
                             if before.get(k) != _config_json(config).get(k))
            raise ConfigError(f"--resume: the config differs from the run's {saved} in {changed}")
        return
    if (run_dir / "checkpoints").exists():
        raise ConfigError(f"{run_dir} already holds a run with checkpoints; pass --resume or another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(_config_json(config), indent=2) + "\n", encoding="utf-8")


def load_model(config: Any, run_dir: Path) -> tuple[Any, Any, Path]:
    """The model to train, its processor and the directory of its initial weights."""
    from guiagent.policy.local import LocalPolicy

    if config.trainer.model == "tiny":
        from guiagent.policy.tiny import load_tiny_policy

        base = run_dir / "base-model"
        policy, _ = load_tiny_policy(base, seed=config.seed)
    else:
        base = Path(config.trainer.model)
        policy = LocalPolicy.from_pretrained(base)
    return policy.model, policy.processor, base


def mobilesim_tasks(templates: list[str], seeds: list[int]) -> list[Any]:
    from guiagent.envs.sim.tasks import make_task

    try:
        return [make_task(template, seed) for template in templates for seed in seeds]
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None


def training_tasks(data: Any) -> list[Any]:
    """The online training tasks of a :class:`~guiagent.trainer.config.DataConfig`."""
    names = data.online_templates or data.templates
    if data.suite == "osworld":
        from guiagent.envs.osworld import load_osworld_tasks

        return load_osworld_tasks(data.task_files)
    if data.suite == "miniwob":
        from guiagent.envs.web import miniwob_tasks

        return miniwob_tasks(names, data.seeds)
    return mobilesim_tasks(names, data.seeds)


def demonstrations(tasks: list[Any], root: Path) -> tuple[list[Any], Path]:
    """The MobileSim oracle's labelled demonstrations of ``tasks`` in the UI-S1-format store ``root`` (reused
    when already recorded there, e.g. by the run being resumed)."""
    from guiagent.data.store import TrajectoryStore
    from guiagent.envs.sim.env import MobileSimEnv
    from guiagent.rollout.experts import record_expert_episodes

    store = TrajectoryStore(root, dataset="uis1")
    return record_expert_episodes(MobileSimEnv(env_id="mobilesim-expert"), tasks, store), root


def expert_data(config: Any, run_dir: Path) -> tuple[list[Any], Path | None]:
    """The expert trajectories (and where their screenshots resolve) of the SFT warm-up and offline rollouts."""
    data = config.data
    if data.store is not None:
        from guiagent.data.store import TrajectoryStore

        return list(TrajectoryStore(data.store).iter_trajectories()), Path(data.store)
    if data.templates:
        return demonstrations(mobilesim_tasks(data.templates, data.seeds), run_dir / "data" / "train")
    return [], None


def sft_phase(config: Any, model: Any, processor: Any, prompt: Any, experts: list[Any], root: Path | None,
              run_dir: Path) -> dict[str, Any] | None:
    """The SFT warm-up on the expert data (None when ``sft.steps`` is 0)."""
    from guiagent.trainer.plots import plot_curve
    from guiagent.trainer.sft import expert_samples, sft_warmup

    sft = config.sft
    if sft.steps == 0:
        return None
    if not experts:
        raise ConfigError("sft.steps > 0 needs expert data (data.store or data.templates)")
    from guiagent.trainer.config import OptimizerConfig
    from guiagent.trainer.engine import make_engine

    samples = expert_samples(experts, processor, prompt, root)
    # The warm-up's own AdamW, decaying linearly to 0 over its steps; the RL updates start a fresh optimizer.
    settings = OptimizerConfig(lr=sft.lr, schedule="linear", max_grad_norm=config.optimizer.max_grad_norm)
    engine = make_engine(model, config.trainer, settings, total_steps=sft.steps)
    result = sft_warmup(engine, processor, samples, steps=sft.steps, batch_size=sft.batch_size, seed=config.seed,
                        micro_batch_size=config.trainer.micro_batch_size)
    (run_dir / "plots").mkdir(parents=True, exist_ok=True)
    plot_curve(result["losses"], run_dir / "plots" / "sft_loss.png", title="SFT warm-up",
               ylabel="cross-entropy per token", log=True)
    (run_dir / "sft.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return {k: v for k, v in result.items() if k != "losses"}


def rollout_prompt(config: Any) -> Any:
    """The prompt the rollouts sample with (and the update rebuilds)."""
    kind = config.trainer.rollout
    if kind == "semi_online":
        return config.semi_online.prompt
    if kind == "hierarchical":
        return config.hierarchical.prompt
    if kind == "grounding":
        return config.grounding.prompt
    return config.prompt


def progress_bar(echo: Any) -> Callable[..., Callable[[int, dict], None]]:
    """A rich progress bar over updates, or plain lines when ``echo`` is not ``print`` (tests, logs)."""

    def start(total: int, completed: int) -> Callable[[int, dict], None]:
        def line(step: int, metrics: dict) -> None:
            shown = {k: metrics[k] for k in ("reward_mean", "success_rate", "loss", "kl", "entropy")
                     if isinstance(metrics.get(k), (int, float))}
            echo(f"[train] update {step}/{total} " + " ".join(f"{k} {v:.4g}" for k, v in shown.items()))

        return line

    return start


def setup_run(config: Any, run_dir: Path, *, resume: bool, stack: contextlib.ExitStack, echo: Any = print) -> Run:
    """Build the :class:`Run` of ``config`` in ``run_dir`` (see the module docstring)."""
    from guiagent.data.store import TrajectoryStore
    from guiagent.eval.heldout import HeldOutEvaluation
    from guiagent.policy.local import LocalPolicy
    from guiagent.trainer.checkpoint import latest_checkpoint, load_checkpoint, load_weights, save_checkpoint
    from guiagent.trainer.engine import make_engine, prepare_model
    from guiagent.trainer.metrics import MetricsLog

    trainer = config.trainer
    if trainer is None:
        raise ConfigError("the config has no trainer section")
    prepare_run_dir(config, run_dir, resume)
    seed_everything(config.seed)
    info: dict[str, Any] = {}
    model, processor, base = load_model(config, run_dir)
    prompt = rollout_prompt(config)
    experts, root = expert_data(config, run_dir)
    info["expert_episodes"] = len(experts)
    checkpoint = latest_checkpoint(run_dir) if resume else None

    # The SFT warm-up runs once: a resumed run finds its weights in the step-0 checkpoint or a later one.
    model = prepare_model(model, trainer.finetune, trainer.lora, trainer.freeze_vision)
    model.train()
    if checkpoint is None:
        info["sft"] = sft_phase(config, model, processor, prompt, experts, root, run_dir)
    engine = make_engine(model, trainer, config.optimizer, total_steps=trainer.steps)
    ref_model = None
    if float(config.algo.loss_options.get("kl_coef", 0.0)) > 0:
        ref_model = copy.deepcopy(engine.module).eval().requires_grad_(False)
    buffer = None
    if config.algo.replay.enabled:
        from guiagent.algos.replay import ReplayBuffer

        r = config.algo.replay
        buffer = ReplayBuffer(r.capacity, r.success_threshold, r.fail_std, r.fail_mean, enabled=True)

    start_step = 0
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, engine.module, engine)
        start_step = int(state["step"])
        if buffer is not None and "replay" in state:
            from guiagent.algos.replay import ReplayBuffer

            buffer = ReplayBuffer.from_json(state["replay"])
        if ref_model is not None:  # the reference is the policy the RL started from: the step-0 weights
            load_weights(ref_model, run_dir / "checkpoints" / "step-000000" / "model")
        info["resumed_from"] = str(checkpoint)
        echo(f"[train] resuming from {checkpoint} (update {start_step})")
    store = TrajectoryStore(run_dir / "store")

    # Serving: in-process sampling sees the live weights; a served policy is pushed each new version.
    served = {"name": None}
    client = None
    if config.sync.backend == "local":
        def sampler(version: str) -> Any:
            return LocalPolicy(engine.module, processor, name=version)

        def sync(version: str) -> None:
            return None
    else:
        from guiagent.policy.client import VLLMClient
        from guiagent.policy.serve import VLLMServer, cpu_server
        from guiagent.policy.sync import make_weight_sync

        server = VLLMServer(config.server) if config.server is not None else cpu_server(
            base, run_dir / "vllm.log", served_model_name="policy", max_lora_rank=max(16, trainer.lora.r))
        stack.enter_context(server)
        client = stack.enter_context(VLLMClient(server.url, "policy", timeout=300, max_retries=1))
        weight_sync = make_weight_sync(config.sync.model_copy(update={"directory": str(run_dir / "sync")}), client)

        def sync(version: str) -> None:
            served["name"] = weight_sync.push(engine.module, version_number(version))

        def sampler(version: str) -> Any:
            # Offline rollouts name no model in their requests: the server's default is the pushed version.
            if config.sync.backend == "lora" and trainer.rollout != "online":
                raise ConfigError("offline rollouts with a served policy use sync.backend reload or nccl (the "
                                  "served name stays); lora serves each version under a new adapter name")
            return client

        sync(f"v{start_step}")

    # The farm: online rollouts play on it, and so does the held-out evaluation of a served policy.
    farm_client = None
    if trainer.rollout == "online" or (client is not None and trainer.local_farm):
        farm_client = stack.enter_context(_farm(config, run_dir, stack, echo))

    def agent_spec(version: str) -> Any:
        from guiagent.farm.specs import policy_agent_spec
        from guiagent.policy.base import SamplingParams

        if client is None:
            raise ConfigError("online rollouts are played by a served policy: set sync.backend to lora, reload "
                              "or nccl (a vLLM server), not local")
        # Unseeded: vLLM seeds each request, and the G members of a group send the same prompts, so a shared
        # seed would play the same episode G times (no spread in the group, no advantage).
        sampling = SamplingParams(max_tokens=trainer.max_tokens, temperature=trainer.temperature)
        return policy_agent_spec(client.base_url, served["name"], prompt, sampling, [SCREEN])

    source = make_source(config, experts, root, store, farm_client, agent_spec, buffer, engine, processor, prompt)

    evaluation = None
    evaluation_config = config.evaluation
    if evaluation_config is not None and evaluation_config.templates:
        tasks = mobilesim_tasks(evaluation_config.templates, evaluation_config.seeds)
        expert_store = demonstrations(tasks, run_dir / "data" / "heldout")[1] if evaluation_config.sop else None
        play = None
        if evaluation_config.on_farm:
            if farm_client is None or client is None:
                raise ConfigError("evaluation.on_farm needs a farm and a served policy (online rollouts)")
            play = _farm_player(farm_client, store, agent_spec, evaluation_config.max_steps)
        evaluation = HeldOutEvaluation(tasks, run_dir / "eval", store, prompt, max_tokens=evaluation_config.max_tokens,
                                       max_steps=evaluation_config.max_steps, expert_store=expert_store, play=play)

    def eval_policy(version: str) -> Any:
        return LocalPolicy(engine.module, processor, name=version)

    log = MetricsLog(run_dir, resume_step=start_step if checkpoint is not None else None,
                     tensorboard=trainer.tensorboard, wandb_project=trainer.wandb_project)
    stack.callback(log.close)
    run = Run(config=config, run_dir=run_dir, processor=processor, engine=engine, prompt=prompt,
              source=source, sampler=sampler, sync=sync, eval_policy=eval_policy, evaluation=evaluation, log=log,
              progress=progress_bar(echo), store=store, start_step=start_step, ref_model=ref_model, buffer=buffer, setup_info=info)
    if checkpoint is None:
        if evaluation is not None and evaluation_config.before:
            echo("[train] held-out evaluation before RL ...")
            info["eval_before"] = evaluation("before_rl", eval_policy("v0"), "v0")
        # Step 0: the policy the updates start from (after the SFT warm-up), so a resume never redoes SFT.
        save_checkpoint(run_dir, 0, engine.module, processor, engine, run.state(), keep=trainer.keep_checkpoints)
    return run


@contextlib.contextmanager
def _farm(config: Any, run_dir: Path, stack: contextlib.ExitStack, echo: Any):
    """A farm client: a local farm started for the run (``trainer.local_farm`` sims), or the configured one."""
    from guiagent.farm.client import FarmClient
    from guiagent.farm.config import FarmConfig

    if config.trainer.local_farm:
        from guiagent.farm.local import LocalFarm

        base = (config.farm or FarmConfig()).model_copy(update={"store_url": str(run_dir / "store")})
        farm = LocalFarm(run_dir / "farm", sims=config.trainer.local_farm, config=base)
        stack.callback(farm.stop)
        echo(f"[train] starting a local farm: {config.trainer.local_farm} MobileSim workers")
        farm_config = farm.start()
    elif config.farm is not None:
        farm_config = config.farm
    else:
        raise ConfigError("online rollouts need a farm: set trainer.local_farm or a farm section")
    with FarmClient(farm_config) as client:
        yield client


def _farm_player(client: Any, store: Any, agent_spec: Callable[[str], Any], max_steps: int | None):
    def play(tasks: list[Any], policy: Any, version: str, prefix: str) -> list[Any]:
        from guiagent.errors import FarmError
        from guiagent.farm.specs import EpisodeSpec

        agent = agent_spec(version)
        specs = [EpisodeSpec(f"{prefix}-{t.template}-{t.seed}", t, agent, kind="sim", max_steps=max_steps,
                             policy_version=version) for t in tasks]
        results = client.run(specs, timeout=3600)
        failed = [r for r in results if r.status == "error"]
        if failed:
            raise FarmError(f"{len(failed)} evaluation episodes failed, e.g. {failed[0].episode_id}: {failed[0].message}")
        return [store.get(spec.episode_id) for spec in specs]

    return play


def make_source(config: Any, experts: list[Any], root: Path | None, store: Any, farm_client: Any,
                agent_spec: Callable[[str], Any], buffer: Any, engine: Any, processor: Any, prompt: Any) -> Any:
    """The rollout source of ``trainer.rollout``."""
    from guiagent.rollout.sources import ExpertSource, OfflineSource, OnlineSource

    trainer, kind = config.trainer, config.trainer.rollout
    if kind == "sft":
        return ExpertSource(experts, root, trainer.groups_per_step, config.seed)
    if kind == "online":
        from guiagent.trainer.update import recompute_logprobs

        tasks = training_tasks(config.data)

        def rescore(trajectories: list[Any]) -> list[Any]:
            return recompute_logprobs(engine.module, processor, trajectories, prompt, store.url)

        return OnlineSource(farm_client, store, tasks, agent_spec, config.online, buffer=buffer, rescore=rescore,
                            per_step=trainer.groups_per_step, seed=config.seed)
    settings = {"semi_online": config.semi_online, "hierarchical": config.hierarchical,
                "grounding": config.grounding}[kind]
    settings = settings.model_copy(update={"temperature": trainer.temperature})
    items = experts
    if kind == "grounding":
        from guiagent.rollout.grounding import iter_grounding_samples

        items = list(iter_grounding_samples(root))
    return OfflineSource(kind, items, settings, root, trainer.groups_per_step, config.seed)


__all__ = ["Run", "setup_run"]
