"""Step samples → model inputs: multi-image prompts, response labels, per-token log-probs.

A training sample is one step (DESIGN.md "Training"): the prompt messages exactly as the policy saw them
(:func:`guiagent.policy.prompts.build_messages`, 1..k screenshots) and the response token ids. A batch is
laid out the way the rollout's left-padded generation laid it out, with the responses right-padded::

    [pad pad | prompt of row 0 ......... | response 0 ... pad]
    [ prompt of row 1 .................. | response 1 ......]
     <-------------- P columns ---------> <----- T ------->

so every response starts at column P and the log-probs of all rows come from the last T + 1 logits
(``logits_to_keep``): the (L, vocab) logits of the prompt are never materialised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from guiagent.errors import DataError

IGNORE_INDEX = -100  # the label of tokens that carry no loss (transformers' convention)


@dataclass(frozen=True)
class TrainingSample:
    """One training sample: a step's prompt and the response tokens the loss scores (what a reward sees of
    a step is :class:`guiagent.rewards.RewardInput`).

    Attributes:
        messages: Chat messages of the prompt (images already decoded and resized), as
            :func:`~guiagent.policy.prompts.build_messages` returns them.
        response_ids: Token ids of the response, including the stop token when the response ended with one.
        record: Where the sample came from (an episode id and step), named in errors.
    """

    messages: Sequence[dict[str, Any]]
    response_ids: tuple[int, ...]
    record: str = ""


@dataclass(frozen=True)
class ModelBatch:
    """B samples collated for one forward pass (L = P + T columns).

    Attributes:
        inputs: Keyword arguments of the model's forward: ``input_ids`` (B, L), ``attention_mask`` (B, L),
            ``mm_token_type_ids`` (B, L) (0 text, 1 image; zeros over padding and responses),
            ``pixel_values`` (sum of patches, C*T*14*14) and ``image_grid_thw`` (n_images, 3), images
            concatenated in sample order then prompt order (the order the model assigns them to tokens).
        labels: (B, L) int64, the token id on response tokens, ``IGNORE_INDEX`` elsewhere.
        response_ids: (B, T) int64, responses right-padded with 0.
        response_mask: (B, T) bool, True on real response tokens.
        prompt_width: P, the column where every response starts.
    """

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    prompt_width: int

    def __len__(self) -> int:
        return self.response_ids.shape[0]


@dataclass(frozen=True)
class EncodedSample:
    """A :class:`TrainingSample` whose prompt is tokenised with its images (encode once, collate many times).

    Attributes:
        prompt: The processor's output for the prompt alone: ``input_ids`` (1, P_i), ``attention_mask``
            (1, P_i), ``mm_token_type_ids`` (1, P_i), ``pixel_values``, ``image_grid_thw`` (k, 3).
        response_ids: As in the sample.
        record: As in the sample.
    """

    prompt: dict[str, torch.Tensor]
    response_ids: tuple[int, ...]
    record: str = ""


def encode_sample(processor: Any, sample: TrainingSample) -> EncodedSample:
    """Tokenise a sample's prompt with :func:`~guiagent.policy.prompts.encode_prompt` (the rollout's chat
    template and image-token check).

    Raises:
        DataError: the sample has an empty response (``record`` names it).
        PolicyError: the prompt's image tokens do not match its images.
    """
    from guiagent.policy.prompts import encode_prompt

    if not sample.response_ids:
        raise DataError("sample has an empty response", record=sample.record or None)
    inputs = encode_prompt(processor, sample.messages).inputs
    return EncodedSample(prompt=dict(inputs), response_ids=tuple(sample.response_ids), record=sample.record)


def collate(processor: Any, samples: Sequence[TrainingSample | EncodedSample]) -> ModelBatch:
    """Collate samples: left-padded prompts, right-padded responses, labels on responses only.

    transformers' processor returns ``mm_token_type_ids`` for the prompt only; it is extended here with
    zeros (text) over padding and responses, since Qwen2.5-VL's 3-D rope index reads it token by token
    and a short one misplaces every position after the prompt.

    Args:
        processor: The model's processor (its tokenizer's pad id pads).
        samples: B >= 1 samples, raw (encoded here) or from :func:`encode_sample`.

    Returns:
        The :class:`ModelBatch`.

    Raises:
        DataError: no samples, or a sample has an empty response.
        PolicyError: a prompt's image tokens do not match its images.
    """
    if not samples:
        raise DataError("collate needs at least one sample")
    encoded = [s if isinstance(s, EncodedSample) else encode_sample(processor, s) for s in samples]
    pad_id = processor.tokenizer.pad_token_id
    width = max(e.prompt["input_ids"].shape[1] for e in encoded)
    span = max(len(e.response_ids) for e in encoded)
    rows: dict[str, list[torch.Tensor]] = {"input_ids": [], "attention_mask": [], "mm_token_type_ids": []}
    labels, response_ids, response_mask = [], [], []
    for e in encoded:
        prompt_ids = e.prompt["input_ids"][0]
        left = width - len(prompt_ids)
        n = len(e.response_ids)
        right = span - n
        response = torch.tensor(e.response_ids, dtype=torch.long)
        mm = e.prompt.get("mm_token_type_ids")
        mm = mm[0] if mm is not None else torch.zeros_like(prompt_ids)
        rows["input_ids"].append(
            torch.cat([torch.full((left,), pad_id), prompt_ids, response, torch.full((right,), pad_id)])
        )
        rows["attention_mask"].append(
            torch.cat([torch.zeros(left), e.prompt["attention_mask"][0], torch.ones(n), torch.zeros(right)])
        )
        rows["mm_token_type_ids"].append(torch.cat([torch.zeros(left), mm, torch.zeros(span)]))
        labels.append(
            torch.cat([torch.full((width,), IGNORE_INDEX), response, torch.full((right,), IGNORE_INDEX)])
        )
        response_ids.append(torch.cat([response, torch.zeros(right, dtype=torch.long)]))
        response_mask.append(torch.arange(span) < n)
    inputs = {name: torch.stack(values).long() for name, values in rows.items()}
    with_images = [e.prompt for e in encoded if "pixel_values" in e.prompt]
    if with_images:
        inputs["pixel_values"] = torch.cat([p["pixel_values"] for p in with_images])
        inputs["image_grid_thw"] = torch.cat([p["image_grid_thw"] for p in with_images])
    return ModelBatch(
        inputs=inputs,
        labels=torch.stack(labels).long(),
        response_ids=torch.stack(response_ids),
        response_mask=torch.stack(response_mask),
        prompt_width=width,
    )


def response_logprobs(model: Any, batch: ModelBatch) -> torch.Tensor:
    """Per-token log-probs of the responses under ``model`` (with grad when grad is enabled).

    ``log_softmax`` of the raw logits (no temperature), the quantity the rollout records
    (:meth:`guiagent.policy.local.LocalPolicy.generate`) and PPO-style losses compare against.

    Args:
        model: A Qwen2.5-VL-style ``*ForConditionalGeneration`` model.
        batch: From :func:`collate`.

    Returns:
        (B, T) float32; entries where ``batch.response_mask`` is False are 0.
    """
    span = batch.response_ids.shape[1]
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in batch.inputs.items()}
    # The logit at column P - 1 + j predicts response token j: keep the last T + 1 columns.
    logits = model(**inputs, logits_to_keep=span + 1, use_cache=False).logits[:, :span].float()
    targets = batch.response_ids.to(device)
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return logprobs * batch.response_mask.to(device)


__all__ = [
    "IGNORE_INDEX",
    "EncodedSample",
    "ModelBatch",
    "TrainingSample",
    "collate",
    "encode_sample",
    "response_logprobs",
]
