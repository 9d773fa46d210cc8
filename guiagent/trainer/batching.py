"""Step samples → model inputs → per-token log-probs: plain batches, micro-batch plans, prefix sharing.

A training sample is one step (DESIGN.md "Training"): the prompt messages exactly as the policy saw them
(:func:`guiagent.policy.prompts.build_messages`, 1..k screenshots) and the response token ids. Two ways score
a micro-batch of samples, with the same numbers (``tests/test_trainer_prefix.py``):

* **Plain batch** (:func:`collate` + :func:`response_logprobs`): the model's own forward, laid out the way the
  rollout's left-padded generation laid it out, responses right-padded::

      [pad pad | prompt of row 0 ......... | response 0 ... pad]
      [ prompt of row 1 .................. | response 1 ......]
       <-------------- P columns ---------> <----- T ------->

* **Prefix sharing** (:func:`shared_prefix_logprobs`, the trainer's default): rows whose prompts begin with the
  same tokens and screenshots — the G responses of a GRPO group, or semi-online rollouts at one expert step up
  to their first differing history turn — form a :class:`PrefixGroup`. Its prefix runs once; the rows'
  continuations (the rest of each prompt, then the response) run as one batch on the prefix's keys/values,
  repeated G times, so the gradient of every row flows back through the one prefix. Each distinct screenshot
  of a micro-batch goes through the vision tower once. Qwen2.5-VL's 3-D (M-RoPE) position ids come from the
  model's ``get_rope_index`` over each row's whole sequence and are split at the prefix, so prefix and
  continuation get the positions the full sequence would.

Either way the LM head runs only on the positions that predict response tokens, in chunks whose logits are
recomputed in backward (:func:`token_logprobs`): the (tokens, vocabulary) logits of the batch never exist at
once. :func:`plan_micro_batches` orders rows into micro-batches (length buckets, prefix groups).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from guiagent.errors import DataError

IGNORE_INDEX = -100  # the label of tokens that carry no loss (transformers' convention)
# Positions per LM-head chunk: at most (LOGIT_CHUNK, vocabulary) logits exist at a time, forward or backward.
LOGIT_CHUNK = 1024


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
        image_spans: ``(start, end)`` token columns of each image's placeholders in the prompt, prompt order.
        image_keys: A content hash of each image's pixel rows and grid: equal keys, equal vision features.
    """

    prompt: dict[str, torch.Tensor]
    response_ids: tuple[int, ...]
    record: str = ""
    image_spans: tuple[tuple[int, int], ...] = ()
    image_keys: tuple[str, ...] = ()

    @property
    def prompt_length(self) -> int:
        return self.prompt["input_ids"].shape[1]

    def image_pixels(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image ``k``'s ``pixel_values`` rows (t*h*w, C*T*14*14) and its grid (3,)."""
        grids = self.prompt["image_grid_thw"]
        sizes = grids.prod(dim=1).tolist()
        start = sum(sizes[:k])
        return self.prompt["pixel_values"][start : start + sizes[k]], grids[k]


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
    inputs = dict(encode_prompt(processor, sample.messages).inputs)
    spans: list[tuple[int, int]] = []
    keys: list[str] = []
    if "image_grid_thw" in inputs:
        # Image k owns the k-th block of t*h*w / merge**2 placeholder tokens (and of t*h*w pixel rows).
        positions = (inputs["input_ids"][0] == processor.image_token_id).nonzero().flatten().tolist()
        merge = processor.image_processor.merge_size
        token, row = 0, 0
        for grid in inputs["image_grid_thw"]:
            n = int(grid.prod())
            spans.append((positions[token], positions[token + n // merge**2 - 1] + 1))
            pixels = inputs["pixel_values"][row : row + n]
            keys.append(hashlib.sha1(grid.numpy().tobytes() + pixels.numpy().tobytes()).hexdigest())
            token, row = token + n // merge**2, row + n
    return EncodedSample(prompt=inputs, response_ids=tuple(sample.response_ids), record=sample.record,
                         image_spans=tuple(spans), image_keys=tuple(keys))


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


def unwrap_model(model: Any) -> Any:
    """The ``*ForConditionalGeneration`` model under a PEFT wrapper (LoRA layers sit inside its submodules, so
    calling those runs the adapters), or ``model`` itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _chunk_scores(lm_head: Any, hidden: torch.Tensor, targets: torch.Tensor, with_entropy: bool) -> torch.Tensor:
    """(1 or 2, n): the targets' log-probs, then (``with_entropy``) the distributions' entropies."""
    logprobs = torch.log_softmax(lm_head(hidden).float(), dim=-1)
    picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if not with_entropy:
        return picked.unsqueeze(0)
    return torch.stack([picked, -(logprobs.exp() * logprobs).sum(dim=-1)])


def token_logprobs(
    lm_head: Any, hidden: torch.Tensor, targets: torch.Tensor, *, with_entropy: bool = False,
    chunk_size: int = LOGIT_CHUNK,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of ``targets`` (``log_softmax`` of the raw logits, no temperature: what the rollout records) and
    optionally the entropy of each position's distribution, from the final hidden states.

    The LM head runs on ``chunk_size`` positions at a time; with grad enabled each chunk is checkpointed, so its
    (chunk, vocabulary) logits are recomputed in backward instead of kept for every chunk at once.

    Args:
        lm_head: The output projection (hidden size → vocabulary).
        hidden: (N, H) final hidden states at the positions that predict ``targets``.
        targets: (N,) int64 token ids.
        with_entropy: Also return the entropies (with grad, for an entropy bonus).
        chunk_size: Positions per chunk.

    Returns:
        ``(logprobs, entropy)``: (N,) float32 each; ``entropy`` is None unless ``with_entropy``.
    """
    pieces = []
    for start in range(0, len(targets), chunk_size):
        args = (lm_head, hidden[start : start + chunk_size], targets[start : start + chunk_size], with_entropy)
        pieces.append(checkpoint(_chunk_scores, *args, use_reentrant=False) if torch.is_grad_enabled()
                      else _chunk_scores(*args))
    scores = torch.cat(pieces, dim=1)
    return scores[0], (scores[1] if with_entropy else None)


def _padded(values: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor | None:
    """(N,) values of the True entries of a (B, T) mask → (B, T), zeros elsewhere (differentiable)."""
    if values is None:
        return None
    return torch.zeros(mask.shape, dtype=values.dtype, device=values.device).masked_scatter(mask, values)


def response_logprobs(
    model: Any, batch: ModelBatch, *, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs of a plain batch's responses under ``model`` (with grad when grad is enabled).

    The model's own forward (its vision tower per row, its 3-D rope index) up to the final hidden states; the LM
    head then runs only where a response token is predicted (:func:`token_logprobs`).

    Args:
        model: A Qwen2.5-VL-style ``*ForConditionalGeneration`` model (or a PEFT wrapper of one).
        batch: From :func:`collate`.
        with_entropy: Also return per-token entropies.

    Returns:
        ``(logprobs, entropy)``: (B, T) float32, 0 where ``batch.response_mask`` is False; ``entropy`` None unless
        ``with_entropy``.
    """
    core = unwrap_model(model)
    device = core.get_input_embeddings().weight.device
    inputs = {k: v.to(device) for k, v in batch.inputs.items()}
    hidden = core.model(**inputs, use_cache=False).last_hidden_state
    span, mask = batch.response_ids.shape[1], batch.response_mask.to(device)
    # The hidden state at column P - 1 + j predicts response token j.
    predicting = hidden[:, batch.prompt_width - 1 : batch.prompt_width - 1 + span][mask]
    logprobs, entropy = token_logprobs(core.get_output_embeddings(), predicting,
                                       batch.response_ids.to(device)[mask], with_entropy=with_entropy)
    return _padded(logprobs, mask), _padded(entropy, mask)


# --- Micro-batch plans and prefix sharing ---------------------------------------------------------------------


@dataclass(frozen=True)
class PrefixGroup:
    """Rows whose prompts share their first ``shared`` tokens, images there included.

    Attributes:
        rows: Indices into the samples the plan was made for.
        shared: Columns run once for the whole group; 0 runs every row whole (no sharing).
    """

    rows: tuple[int, ...]
    shared: int


@dataclass(frozen=True)
class MicroBatch:
    """One forward/backward's rows: prefix groups (a plain batch is one group with ``shared`` 0).

    Attributes:
        groups: The groups; the micro-batch's rows are theirs in order (:attr:`rows`).
    """

    groups: tuple[PrefixGroup, ...]

    @property
    def rows(self) -> list[int]:
        return [row for group in self.groups for row in group.rows]


def common_prefix(a: EncodedSample, b: EncodedSample) -> int:
    """How many leading prompt tokens two samples share, images compared by content.

    At most each prompt's length - 1: the last prompt token predicts the first response token, so it stays with
    its row's continuation. Equal tokens only mean equal image placeholders, so the prefix stops before the
    first image whose pixels differ or that it would cut in two.
    """
    ids_a, ids_b = a.prompt["input_ids"][0], b.prompt["input_ids"][0]
    limit = min(len(ids_a), len(ids_b)) - 1
    if a is b:
        return limit
    differ = (ids_a[:limit] != ids_b[:limit]).nonzero()
    shared = int(differ[0, 0]) if len(differ) else limit
    for (start, end), key_a, key_b in zip(a.image_spans, a.image_keys, b.image_keys):
        if start >= shared:
            break
        if end > shared or key_a != key_b:
            return start
    return shared


def _prefix_runs(samples: Sequence[EncodedSample], order: list[int]) -> list[PrefixGroup]:
    """Cut rows sorted by prompt into runs maximising the prefix tokens not recomputed, Σ (rows - 1)·shared.

    A run's common prefix is the minimum of its neighbours' (equal tokens are transitive), so an O(n²) dynamic
    programme over cut points finds the best runs of this order.
    """
    n = len(order)
    adjacent = [common_prefix(samples[order[i]], samples[order[i + 1]]) for i in range(n - 1)]
    best = [0] * (n + 1)  # best[j]: the largest saving for the first j rows
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        shared, best[j], cut[j] = None, best[j - 1], j - 1
        for i in range(j - 2, -1, -1):  # run order[i:j]
            shared = adjacent[i] if shared is None else min(shared, adjacent[i])
            if best[i] + (j - 1 - i) * shared > best[j]:
                best[j], cut[j] = best[i] + (j - 1 - i) * shared, i
    runs, j = [], n
    while j > 0:
        i = cut[j]
        rows = tuple(order[i:j])
        runs.append(PrefixGroup(rows, min(adjacent[i : j - 1]) if len(rows) > 1 else 0))
        j = i
    return runs[::-1]


def plan_micro_batches(
    samples: Sequence[EncodedSample], micro_batch_size: int, *, share_prefix: bool = True
) -> list[MicroBatch]:
    """Order rows into micro-batches of at most ``micro_batch_size`` rows.

    With ``share_prefix``, rows are sorted by prompt so that rows with long common prefixes are neighbours and
    cut into :class:`PrefixGroup` runs (:func:`_prefix_runs`); without it every row stands alone. Groups are
    then ordered by their longest row, and their rows by length (length bucketing: rows of similar length are
    padded together), and packed in that order. A group that does not fit is split; each piece runs its prefix again, and the gradient
    accumulation sums the pieces. Single rows of a micro-batch are merged into one plain group.

    Args:
        samples: The rows.
        micro_batch_size: Rows per micro-batch (>= 1).
        share_prefix: Group rows by common prompt prefix.

    Returns:
        Micro-batches covering every row once.

    Raises:
        ValueError: ``micro_batch_size`` < 1.
    """
    if micro_batch_size < 1:
        raise ValueError(f"micro_batch_size must be >= 1, got {micro_batch_size}")

    def length(row: int) -> int:
        return samples[row].prompt_length + len(samples[row].response_ids)

    if share_prefix:
        order = sorted(range(len(samples)), key=lambda r: (samples[r].prompt["input_ids"][0].tolist(),
                                                           samples[r].image_keys, r))
        groups = _prefix_runs(samples, order)
    else:
        groups = [PrefixGroup((row,), 0) for row in range(len(samples))]
    groups.sort(key=lambda g: max(length(r) for r in g.rows))
    batches: list[MicroBatch] = []
    current: list[PrefixGroup] = []
    room = micro_batch_size

    def close() -> None:
        singles = tuple(r for g in current if len(g.rows) == 1 for r in g.rows)
        shared = [g for g in current if len(g.rows) > 1]
        batches.append(MicroBatch(tuple(shared + ([PrefixGroup(singles, 0)] if singles else []))))

    for group in groups:
        rows = tuple(sorted(group.rows, key=length))
        while rows:
            piece, rows = rows[:room], rows[room:]
            current.append(PrefixGroup(piece, group.shared if len(piece) > 1 else 0))
            room -= len(piece)
            if room == 0:
                close()
                current, room = [], micro_batch_size
    if current:
        close()
    return batches


def _image_features(core: Any, samples: Sequence[EncodedSample], device: torch.device) -> dict[str, torch.Tensor]:
    """Vision features of every distinct image of ``samples`` (one vision-tower call), by image key."""
    distinct: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for sample in samples:
        for k, key in enumerate(sample.image_keys):
            if key not in distinct:
                distinct[key] = sample.image_pixels(k)
    if not distinct:
        return {}
    pixels = torch.cat([p for p, _ in distinct.values()]).to(device)
    grids = torch.stack([g for _, g in distinct.values()]).to(device)
    features = core.get_image_features(pixels, grids, return_dict=True).pooler_output
    return dict(zip(distinct, features))


def _embed(core: Any, sample: EncodedSample, ids: torch.Tensor, start: int, end: int,
           features: dict[str, torch.Tensor]) -> torch.Tensor:
    """(end - start, H) input embeddings of columns [start, end) of a row (its prompt then its response), with
    the vision features of the images that lie there in place of their placeholders."""
    embeds = core.get_input_embeddings()(ids[start:end])
    inside = [(s, e, key) for (s, e), key in zip(sample.image_spans, sample.image_keys) if start <= s and e <= end]
    if not inside:
        return embeds
    # The spans, not the token ids, say where images go: a sampled response may contain a placeholder id.
    where = torch.zeros(end - start, dtype=torch.bool, device=embeds.device)
    for s, e, _ in inside:
        where[s - start : e - start] = True
    values = torch.cat([features[key] for _, _, key in inside]).to(embeds.dtype)
    return embeds.masked_scatter(where.unsqueeze(-1), values)


def _rope_positions(core: Any, sample: EncodedSample, ids: torch.Tensor) -> torch.Tensor:
    """(3, L) M-RoPE position ids of a whole row (prompt + response), from the model's own ``get_rope_index``."""
    prompt = sample.prompt
    mm = prompt.get("mm_token_type_ids")
    mm = mm[0] if mm is not None else torch.zeros(sample.prompt_length, dtype=torch.long)
    # The processor's mm_token_type_ids covers the prompt only: the response is text (0).
    mm = torch.cat([mm.long(), torch.zeros(len(sample.response_ids), dtype=torch.long)]).to(ids.device)
    grids = prompt.get("image_grid_thw")
    positions, _ = core.model.get_rope_index(ids.unsqueeze(0), mm.unsqueeze(0),
                                             image_grid_thw=None if grids is None else grids.to(ids.device))
    return positions[:, 0]


def shared_prefix_logprobs(
    model: Any, samples: Sequence[EncodedSample], groups: Sequence[PrefixGroup], *, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token response log-probs of the rows of ``groups``, each group's prefix run once.

    A group with ``shared`` = p runs its first p columns as a batch of one, repeats that prefix's keys/values
    once per row (the gradient of every row flows back through them), and runs the rows' continuations (prompt
    columns p.., then the response) right-padded as one batch on that cache; a group with p = 0 runs its rows
    whole. Right padding needs no attention mask: causal attention never lets a real token see the padding
    after it. The M-RoPE positions of each row come from its whole sequence (:func:`_rope_positions`), so the
    split changes no position.

    Args:
        model: A Qwen2.5-VL-style ``*ForConditionalGeneration`` model (or a PEFT wrapper of one).
        samples: Encoded samples the groups index.
        groups: One micro-batch's groups (:attr:`MicroBatch.groups`).
        with_entropy: Also return per-token entropies.

    Returns:
        ``(logprobs, entropy)``: (B, T) float32 with B the groups' rows in order and T their longest response,
        0 past each response; ``entropy`` None unless ``with_entropy``.
    """
    core = unwrap_model(model)
    backbone, embed = core.model, core.get_input_embeddings()
    device = embed.weight.device
    rows = [row for group in groups for row in group.rows]
    features = _image_features(core, [samples[r] for r in rows], device)
    # transformers' gradient checkpointing drops the cache a layer is given (its replay would write it twice):
    # the rows then run whole, images still encoded once.
    cache_dropped = getattr(core, "is_activation_checkpointing", False) and core.training and torch.is_grad_enabled()
    predicting, targets = [], []
    for group in groups:
        members = [samples[r] for r in group.rows]
        p = 0 if cache_dropped else group.shared
        ids = [torch.cat([m.prompt["input_ids"][0], torch.tensor(m.response_ids)]).to(device) for m in members]
        positions = [_rope_positions(core, m, i) for m, i in zip(members, ids)]
        cache = None
        if p:
            prefix = _embed(core, members[0], ids[0], 0, p, features).unsqueeze(0)
            cache = backbone(inputs_embeds=prefix, position_ids=positions[0][:, None, :p], use_cache=True).cache
            cache.batch_repeat_interleave(len(members))
        width = max(len(i) for i in ids) - p
        embeds = torch.stack([torch.nn.functional.pad(_embed(core, m, i, p, len(i), features),
                                                      (0, 0, 0, width - (len(i) - p))) for m, i in zip(members, ids)])
        position_ids = torch.zeros((3, len(members), width), dtype=torch.long, device=device)
        for k, pos in enumerate(positions):
            position_ids[:, k, : pos.shape[1] - p] = pos[:, p:]
        hidden = backbone(inputs_embeds=embeds, position_ids=position_ids, cache=cache,
                          use_cache=cache is not None).last_hidden_state
        for k, m in enumerate(members):
            # Column P - 1 + j of the row (P - 1 - p + j of its continuation) predicts response token j.
            start = m.prompt_length - 1 - p
            predicting.append(hidden[k, start : start + len(m.response_ids)])
            targets.append(torch.tensor(m.response_ids))
    span = max(len(t) for t in targets)
    mask = torch.stack([torch.arange(span) < len(t) for t in targets]).to(device)
    logprobs, entropy = token_logprobs(core.get_output_embeddings(), torch.cat(predicting),
                                       torch.cat(targets).to(device), with_entropy=with_entropy)
    return _padded(logprobs, mask), _padded(entropy, mask)


def micro_batch_logprobs(
    model: Any, processor: Any, samples: Sequence[EncodedSample], batch: MicroBatch, *, share_prefix: bool = True,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Score one micro-batch: :func:`shared_prefix_logprobs`, or with ``share_prefix`` False the plain batch
    (:func:`collate` + :func:`response_logprobs`, the model's own forward).

    Returns:
        ``(logprobs, entropy, mask)``, each (B, T) with B = ``batch.rows`` in order; ``entropy`` None unless
        ``with_entropy``; ``mask`` bool on real response tokens.
    """
    rows = [samples[r] for r in batch.rows]
    span = max(len(s.response_ids) for s in rows)
    mask = torch.stack([torch.arange(span) < len(s.response_ids) for s in rows])
    if share_prefix:
        logprobs, entropy = shared_prefix_logprobs(model, samples, batch.groups, with_entropy=with_entropy)
    else:
        logprobs, entropy = response_logprobs(model, collate(processor, rows), with_entropy=with_entropy)
    return logprobs, entropy, mask.to(logprobs.device)


__all__ = [
    "IGNORE_INDEX",
    "LOGIT_CHUNK",
    "EncodedSample",
    "MicroBatch",
    "ModelBatch",
    "PrefixGroup",
    "TrainingSample",
    "collate",
    "common_prefix",
    "encode_sample",
    "micro_batch_logprobs",
    "plan_micro_batches",
    "response_logprobs",
    "shared_prefix_logprobs",
    "token_logprobs",
    "unwrap_model",
]
