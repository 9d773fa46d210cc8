"""The training loop: ``guiagent train CONFIG``.

:func:`train` sets a run up (:mod:`guiagent.trainer.setup`: model, engine, data, rollout source, policy
serving and weight sync, farm, held-out evaluation), warms the policy up by SFT, and then runs
:meth:`Trainer.fit`, whose body is the whole algorithm, one named and timed phase after another::

    rollout → reward → advantage → update → sync_weights → evaluate → checkpoint

Every trajectory records the policy version that sampled it (``v<step>``), and the update refuses
trajectories older than ``trainer.max_staleness`` versions (replayed ARPO members excepted: their old
log-probs were recomputed by the current policy). A run killed at any point resumes from its newest
checkpoint with ``--resume`` and ends with the same weights as a run that was never interrupted.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from guiagent.errors import DataError
from guiagent.trainer.phases import PhaseTimer


def version_number(version: str) -> int:
    """``"v12"`` → 12."""
    try:
        return int(version.removeprefix("v"))
    except ValueError:
        raise DataError(f"policy version {version!r} is not 'v<number>'") from None


def check_versions(groups: list[list[Any]], stale: list[tuple[int, ...]], version: str, max_staleness: int) -> None:
    """Refuse trajectories sampled by a policy more than ``max_staleness`` versions older than ``version``.

    Raises:
        DataError: naming the episode and both versions.
    """
    current = version_number(version)
    for g, group in enumerate(groups):
        replayed = set(stale[g]) if g < len(stale) else set()
        for member, trajectory in enumerate(group):
            if member in replayed:
                continue
            lag = current - version_number(trajectory.policy_version)
            if not 0 <= lag <= max_staleness:
                raise DataError(f"trajectory sampled by {trajectory.policy_version}, the update is at {version} "
                                f"(trainer.max_staleness is {max_staleness})", record=trajectory.episode_id)


class Trainer:
    """Runs the updates of a set-up run (:class:`guiagent.trainer.setup.Run`)."""

    def __init__(self, run: Any):
        self.run = run
        self.timer = PhaseTimer(None)

    def fit(self) -> dict[str, Any]:
        """Run updates ``run.start_step .. trainer.steps`` (or until ``trainer.max_seconds``); return a summary."""
        from guiagent.trainer.checkpoint import save_checkpoint

        run, trainer = self.run, self.run.config.trainer
        phase = self.timer.phase
        started = time.monotonic()
        step = run.start_step
        progress = run.progress(total=trainer.steps, completed=step)
        while step < trainer.steps:
            version, mark = f"v{step}", len(self.timer.phases)
            with phase("rollout"):
                batch = run.source.collect(run.sampler(version), step, version)
            if batch.demonstrations is not None:  # rollout kind sft: imitate; no reward, no advantage
                with phase("update"):
                    metrics = {"policy_version": version, **batch.metrics, **imitate(run, batch, step)}
            else:
                metrics = self.policy_gradient(batch, version)
            step += 1
            last = step == trainer.steps or (
                trainer.max_seconds is not None and time.monotonic() - started > trainer.max_seconds)
            with phase("sync_weights"):
                run.sync(f"v{step}")
            if run.evaluation is not None and (last or due(run.config.evaluation.every, step)):
                with phase("evaluate"):
                    result = run.evaluation(f"step-{step:06d}", run.eval_policy(f"v{step}"), f"v{step}")
                    metrics.update(eval_success=result["success"], eval_sop=result["sop"])
            if last or due(trainer.checkpoint_every, step):
                with phase("checkpoint"):
                    save_checkpoint(run.run_dir, step, run.engine.module, run.processor, run.engine,
                                    run.state(), keep=trainer.keep_checkpoints)
            metrics.update({f"time/{p['name']}": p["seconds"] for p in self.timer.phases[mark:]})
            metrics["time"] = round(time.monotonic() - started, 3)
            run.log.log(step, metrics)
            progress(step, metrics)
            if last:
                break
        return {"steps_done": step, "seconds": round(time.monotonic() - started, 2), "phases": self.timer.phases}

    def policy_gradient(self, batch: Any, version: str) -> dict[str, Any]:
        """The reward → advantage → update phases of one RL step; returns its metrics."""
        from guiagent.algos import AdvantageBatch, get_advantage
        from guiagent.algos.anchors import anchor_ids
        from guiagent.algos.filters import dynamic_sampling_mask
        from guiagent.rollout.recording import record_groups
        from guiagent.trainer.update import policy_gradient_step

        run, trainer, algo = self.run, self.run.config.trainer, self.run.config.algo
        phase = self.timer.phase
        with phase("reward"):
            check_versions(batch.groups, batch.stale, version, trainer.max_staleness)
            metrics: dict[str, Any] = {"policy_version": version, **batch.metrics}
        with phase("advantage"):
            rows = AdvantageBatch.from_trajectories(batch.groups)
            # GiGPO's anchor-state groups; estimators that do not use them ignore them.
            rows = dataclasses.replace(rows, anchor_ids=anchor_ids(batch.groups, image_root=batch.image_root))
            advantages = get_advantage(algo.advantage)(rows, **algo.advantage_options)
            if algo.dynamic_sampling_eta is not None:
                advantages = advantages * dynamic_sampling_mask(rows, eta=algo.dynamic_sampling_eta)
            metrics["nonzero_advantages"] = int((advantages != 0).sum())
            if not batch.recorded:  # into the run's store, advantages on their steps (guiagent view RUN)
                record_groups(run.store, batch.groups, advantages=advantages, prompt=run.prompt,
                              image_root=batch.image_root, rollout=trainer.rollout)
        if trainer.drop_zero_advantage and not metrics["nonzero_advantages"]:
            metrics["skipped_update"] = 1  # no learning signal: the weights stay as they are
            return metrics
        with phase("update"):
            update = policy_gradient_step(
                run.engine, batch.groups, advantages, processor=run.processor, prompt=run.prompt,
                image_root=batch.image_root, loss_name=algo.loss, micro_batch_size=trainer.micro_batch_size,
                ref_model=run.ref_model, old_logprobs=trainer.old_logprobs, **algo.loss_options)
            metrics.update({k: v for k, v in update.items() if isinstance(v, (int, float))})
        return metrics


def imitate(run: Any, batch: Any, step: int) -> dict[str, Any]:
    """One SFT step (teacher-forced cross-entropy) on the expert steps of ``batch.demonstrations``."""
    from guiagent.trainer.sft import expert_samples, sft_warmup

    samples = expert_samples(batch.demonstrations, run.processor, run.prompt, batch.image_root)
    result = sft_warmup(run.engine, run.processor, samples, steps=1, batch_size=len(samples),
                        seed=run.config.seed * 1_000_003 + step, micro_batch_size=run.config.trainer.micro_batch_size)
    return {"loss": result["losses"][0], "grad_norm": result["grad_norm_last"], "samples": len(samples)}


def due(every: int, step: int) -> bool:
    """Whether a periodic phase runs after update ``step`` (every ``every`` updates; 0: never)."""
    return every > 0 and step % every == 0


def stop_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit`` so a stopped run unwinds: the local farm, the policy server and the
    metrics log it started are stopped by the set-up's ``ExitStack`` instead of outliving it."""
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def train(config: Any, run_dir: str | Path, *, resume: bool = False, echo: Any = print) -> dict[str, Any]:
    """Set up and run a whole training job; returns the run's summary (also in ``RUN/summary.json``). The HTML
    report (:func:`guiagent.ui.report.write_report`) is written by the callers above the trainer's layer.

    Args:
        config: A :class:`guiagent.schema.GuiAgentConfig` with a ``trainer`` section.
        run_dir: The run directory (config, checkpoints, metrics, plots, store, evaluations, report).
        resume: Continue from the newest checkpoint in ``run_dir`` (the config must be the same).
        echo: Where progress lines go.
    """
    import contextlib
    import json

    from guiagent.trainer.setup import setup_run

    run_dir = Path(run_dir)
    with contextlib.ExitStack() as stack:
        run = setup_run(config, run_dir, resume=resume, stack=stack, echo=echo)
        summary: dict[str, Any] = {"run_dir": str(run_dir), "setup": run.setup_info}
        fitted = Trainer(run).fit()
        summary.update(fitted)
        summary["final_eval"] = run.final_evaluation(fitted["steps_done"])
        summary["plots"] = [str(p) for p in run.log.plot()]
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
        return summary


__all__ = ["Trainer", "check_versions", "due", "imitate", "stop_on_sigterm", "train", "version_number"]

