"""In-process generation with transformers: tests, the CPU demo, small evaluations, trainer-side sampling."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guiagent.errors import PolicyError
from guiagent.policy.base import Generation, GenerationRequest, SamplingParams
from guiagent.policy.prompts import check_image_tokens, message_images, render_prompt


class LocalPolicy:
    """A Qwen2.5-VL-style model and its processor, generating in this process.

    Args:
        model: A ``*ForConditionalGeneration`` model (e.g. the trainer's, so sampling sees its live weights).
        processor: The model's processor (tokenizer + image processor + chat template).
        name: The name generations report as their model (a policy version).
    """

    def __init__(self, model: Any, processor: Any, name: str = "local"):
        self.model = model
        self.processor = processor
        self.name = name
        tokenizer = processor.tokenizer
        # Decoder-only batching pads on the left so every row's completion starts at the same column.
        tokenizer.padding_side = "left"
        eos = model.generation_config.eos_token_id
        self.stop_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) | {tokenizer.eos_token_id}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.stop_ids)

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: str = "float32", device: str = "cpu") -> LocalPolicy:
        """Load model and processor from a Hugging Face directory (e.g. one :func:`build_tiny_qwen25vl` wrote)."""
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        try:
            processor = AutoProcessor.from_pretrained(path)
            model = AutoModelForImageTextToText.from_pretrained(path, dtype=getattr(torch, dtype)).to(device).eval()
        except (OSError, ValueError) as exc:
            raise PolicyError(f"cannot load a policy from {path}: {exc}") from exc
        return cls(model, processor, name=Path(path).name)

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingParams) -> list[Generation]:
        """Generate one completion per request as one left-padded batch.

        Returns:
            One :class:`Generation` per request; ``logprobs[t]`` is ``log_softmax(logits_t)[token_t]`` of the
            raw logits (before temperature / top-p), the quantity PPO-style losses need.
        """
        import torch

        if not requests:
            return []
        for request in requests:
            if request.model not in (None, self.name):
                raise PolicyError(f"local policy {self.name!r} cannot serve model {request.model!r}")
        texts = [render_prompt(self.processor, r.messages) for r in requests]
        images = [image for r in requests for image in message_images(r.messages)]
        inputs = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")
        check_image_tokens(self.processor, inputs["input_ids"], inputs.get("image_grid_thw"), images)
        inputs = inputs.to(self.model.device)

        options: dict[str, Any] = dict(
            max_new_tokens=sampling.max_tokens,
            do_sample=not sampling.greedy,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=self.pad_id,
        )
        if not sampling.greedy:
            # top_k=0 switches transformers' default top-50 off, matching vLLM's default (no top-k).
            options.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        # A seeded call draws from its own generator state and leaves the global one as it was; an unseeded
        # call draws fresh randomness from the global state (restoring it would repeat the same sample).
        seeded = torch.random.fork_rng(devices=[]) if sampling.seed is not None else contextlib.nullcontext()
        with seeded, torch.no_grad():
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            out = self.model.generate(**inputs, **options)

        prompt_len = inputs["input_ids"].shape[1]
        completions = out.sequences[:, prompt_len:]
        # logits: tuple over steps of (batch, vocab) -> (batch, steps, vocab) log-probs.
        logprobs = torch.log_softmax(torch.stack(out.logits, dim=1).float(), dim=-1)
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        generations = []
        for row in range(len(requests)):
            ids = completions[row].tolist()
            end = next((i + 1 for i, token in enumerate(ids) if token in self.stop_ids), None)
            ids = ids[:end] if end is not None else ids
            token_logprobs = logprobs[row, torch.arange(len(ids)), torch.tensor(ids)].tolist()
            generations.append(
                Generation(
                    text=self.processor.tokenizer.decode(ids, skip_special_tokens=True),
                    token_ids=tuple(ids),
                    logprobs=tuple(token_logprobs),
                    finish_reason="stop" if end is not None else "length",
                    prompt_tokens=int(prompt_tokens[row]),
                    model=self.name,
                )
            )
        return generations
