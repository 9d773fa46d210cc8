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
from typing import Any, Literal

import torch

from guiagent.errors import DataError
from guiagent.trainer.batching import TrainingSample, collate, encode_sample, response_logprobs
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
    model: Any,
    processor: Any,
    samples: Sequence[TrainingSample],
    steps: int,
    lr: float = 1e-3,
    batch_size: int = 4,
    seed: int = 0,
    max_grad_norm: float = 1.0,
    weight_decay: float = 0.0,
    schedule: Literal["linear", "constant"] = "linear",
) -> dict[str, Any]:
    """Teacher-forced cross-entropy on the response tokens, AdamW, gradient clipping.

    Batches are drawn epoch by epoch from a seeded permutation, so the same seed, model and samples give the
    same losses. The model is left in the mode (train/eval) it came in.

    Args:
        model: The policy model; every parameter with ``requires_grad`` is trained.
        processor: Its processor.
        samples: The training set (:func:`expert_samples`).
        steps: Optimizer steps.
        lr: AdamW peak learning rate.
        batch_size: Samples per step.
        seed: Seeds the batch order and torch's RNG (dropout, if any).
        max_grad_norm: Global gradient-norm clip.
        weight_decay: AdamW weight decay.
        schedule: ``"linear"`` decays the learning rate linearly from ``lr`` to 0 over ``steps`` (the usual
            fine-tuning schedule; the last steps then settle instead of bouncing on a tiny set), or
            ``"constant"``.

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
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if schedule not in ("linear", "constant"):
        raise ValueError(f"schedule must be 'linear' or 'constant', got {schedule!r}")
    decay = (lambda step: 1.0 - step / steps) if schedule == "linear" else (lambda step: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
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
                batch = collate(processor, [encoded[i] for i in rows])
                logprobs = response_logprobs(model, batch)
                mask = batch.response_mask
                loss = -(logprobs * mask).sum() / mask.sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm))
                optimizer.step()
                scheduler.step()
                losses.append(float(loss.detach()))
                tokens += int(mask.sum())
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
