"""SFT warm-up: teacher-forced cross-entropy on expert responses before RL.

The expert's action is written as model text with :func:`guiagent.actions.format_action` in the prompt's
answer format, and the prompt is built the way the policy sees it at that step
(:func:`guiagent.policy.prompts.build_messages`), the history holding the expert's earlier responses, so
the warmed-up policy is trained on exactly the dialogues it will later be asked to continue.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import torch

from guiagent.errors import DataError
from guiagent.trainer.batching import TrainingSample, encode_sample, micro_batch_logprobs, plan_micro_batches
from guiagent.types import Trajectory


def expert_samples(
    experts: Sequence[Trajectory], processor: Any, prompt: Any, image_root: str | os.PathLike | None = None
) -> list[TrainingSample]:
    """One SFT sample per expert step: the step's prompt and the expert action as model text + stop token.

    Args:
        experts: Expert trajectories (e.g. :func:`guiagent.data.store.iter_episodes` of an oracle store).
        processor: The model's processor (its tokenizer writes the response ids; its eos ends them).
        prompt: :class:`guiagent.policy.prompts.PromptConfig` (answer format, resize bounds, history window).
        image_root: Directory store-relative screenshot paths resolve against.

    Returns:
        Samples in trajectory → step order.

    Raises:
        DataError: a step has no action or no screenshot (``record`` names the episode and step).
    """
    from guiagent.actions import format_action
    from guiagent.policy.prompts import HistoryStep, build_messages

    tokenizer = processor.tokenizer
    samples, fmt = [], prompt.actions.format
    for expert in experts:
        history: list[HistoryStep] = []
        for step in expert.steps:
            record = f"{expert.episode_id} step {step.index}"
            if step.action is None:
                raise DataError("expert step has no action", record=record)
            obs = step.observation
            try:
                screen = obs.screenshot_source(image_root)
            except DataError as exc:
                raise DataError(str(exc), record=record) from None
            instruction = expert.instruction or obs.instruction or ""
            messages = build_messages(instruction, screen, history, prompt)
            text = format_action(step.action, fmt, prompt.geometry(obs.width, obs.height))
            # The stop token is part of the target: the policy must learn to end its answer.
            ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            samples.append(TrainingSample(messages, tuple(ids), record))
            history.append(HistoryStep(response=text, screenshot=screen))
    return samples


def sft_warmup(
    engine: Any,
    processor: Any,
    samples: Sequence[TrainingSample],
    steps: int,
    batch_size: int = 4,
    seed: int = 0,
    micro_batch_size: int | None = None,
) -> dict[str, Any]:
    """Teacher-forced cross-entropy on the response tokens, one ``engine.step`` per batch.

    Batches are drawn epoch by epoch from a seeded permutation, so the same seed, model, engine settings and
    samples give the same losses. Each batch runs in micro-batches (length buckets, shared prompt prefixes:
    :func:`~guiagent.trainer.batching.plan_micro_batches`), each micro-batch's summed cross-entropy divided by
    the batch's token count, so the accumulated gradient is the batch's token-mean. The model is left in the
    mode (train/eval) it came in.

    Args:
        engine: A training engine (:class:`guiagent.trainer.engine.TorchEngine` or the DeepSpeed one) whose
            ``module`` is the policy; its optimizer, learning-rate schedule (e.g. ``lr_schedule("linear",
            steps)``, the usual fine-tuning decay) and gradient clip apply.
        processor: The policy's processor.
        samples: The training set (:func:`expert_samples`).
        steps: Optimizer steps.
        batch_size: Samples per step.
        seed: Seeds the batch order and torch's RNG (dropout, if any).
        micro_batch_size: Samples per forward/backward; None: the whole batch at once.

    Returns:
        ``losses`` (per step, token-mean cross-entropy), ``loss_start`` / ``loss_end`` (means of the first and
        last ``min(10, steps)`` steps), ``grad_norm_last``, ``steps``, ``samples``, ``tokens_per_step``,
        ``seconds``.

    Raises:
        DataError: no samples.
    """
    if not samples:
        raise DataError("SFT warm-up needs at least one sample")
    start = time.perf_counter()
    encoded = [encode_sample(processor, s) for s in samples]  # prompt encoding is the same every epoch
    model = engine.module
    order = torch.Generator().manual_seed(seed)
    queue: list[int] = []
    losses, tokens, grad_norm = [], 0, 0.0
    was_training = model.training
    model.train()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for _ in range(steps):
                if len(queue) < batch_size:
                    queue += torch.randperm(len(encoded), generator=order).tolist()
                rows, queue = queue[:batch_size], queue[batch_size:]
                batch = [encoded[i] for i in rows]
                batch_tokens = sum(len(e.response_ids) for e in batch)
                loss = 0.0
                plan = plan_micro_batches(batch, micro_batch_size or batch_size)
                for k, micro in enumerate(plan):
                    logprobs, _, mask = micro_batch_logprobs(model, processor, batch, micro)
                    micro_loss = -(logprobs * mask).sum() / batch_tokens
                    engine.backward(micro_loss, last=k == len(plan) - 1)
                    loss += float(micro_loss.detach())
                grad_norm = engine.step()["grad_norm"]
                losses.append(loss)
                tokens += batch_tokens
    finally:
        model.train(was_training)
    window = max(1, min(10, steps))
    return {
        "losses": losses,
        "loss_start": sum(losses[:window]) / window if losses else None,
        "loss_end": sum(losses[-window:]) / window if losses else None,
        "grad_norm_last": grad_norm,
        "steps": steps,
        "samples": len(samples),
        "tokens_per_step": tokens / steps if steps else 0.0,
        "seconds": time.perf_counter() - start,
    }


__all__ = ["expert_samples", "sft_warmup"]
