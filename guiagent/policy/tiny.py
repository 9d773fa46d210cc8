"""A tiny, random-initialised Qwen2.5-VL for tests, the CPU demo and benchmarks.

Nothing is downloaded: the tokenizer is a byte-level BPE trained here with ``tokenizers`` on a small
corpus of GUI-agent prompt text, carrying Qwen's special tokens at the ids Qwen2.5-VL's config points
to; the model is ``Qwen2_5_VLForConditionalGeneration`` with Qwen2.5-VL's real vision geometry (patch
14, spatial merge 2, temporal patch 2, window attention with window 112 and one full-attention block)
but small widths and two layers (~5 M parameters). Everything is written with ``save_pretrained`` so
``AutoProcessor``, ``AutoModelForImageTextToText`` and vLLM load it from the directory.
"""

from __future__ import annotations

import json
from pathlib import Path

# Qwen2.5-VL's special tokens. Their order fixes their ids (0..n-1 in this tokenizer); the model config
# records the ids of the vision tokens, so nothing depends on Qwen's own (151643+) numbering.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Added but not "special": like Qwen's, these survive skip_special_tokens so tool calls stay parseable.
TEXT_TOKENS = ("<tool_call>", "</tool_call>", "<think>", "</think>", "<action>", "</action>")

# Qwen2.5-VL's chat format (ChatML with vision placeholders). Written for this project; it renders the
# same text as the released model's template: a default system turn, images as
# <|vision_start|><|image_pad|><|vision_end|>, and "<|im_start|>assistant\n" as the generation prompt.
# Content may be a string or a list of {"type": "text"|"image"|"image_url"|"video", ...} parts, the form
# vLLM passes for OpenAI-style requests. No whitespace control ("{%-"): it would eat the newlines that are
# part of the format.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% if messages[0]['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}"
    "{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or part['type'] == 'image_url' or 'image' in part %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id is defined and add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' or 'video' in part %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in part %}"
    "{{ part['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_WORDS = (
    "open the settings app and turn on wifi bluetooth airplane mode search for a contact named alice bob "
    "add milk eggs bread to the shopping list scroll down up left right until you find the button tap on "
    "the icon at the top bottom of the screen type hello world into the search box press back home enter "
    "go to the next page wait for the page to load the task is complete answer the question what is the "
    "weather today send a message to mom call dad set an alarm for seven am take a photo record audio "
    "delete the file rename the folder create a new note with title meeting notes share the document "
    "with the team copy paste select all undo redo zoom in zoom out open chrome gmail maps youtube camera "
    "calendar clock contacts files photos messages phone play store calculator notes recorder"
)


def _corpus() -> list[str]:
    """Deterministic training text: chat markup, tool-call JSON, action words, numbers and coordinates."""
    from guiagent.policy.prompts import system_prompt

    lines = [system_prompt(fmt, 1092, 2408) for fmt in ("qwen25vl_mobile", "qwen25vl_computer", "uis1")]
    words = _WORDS.split()
    actions = ("click", "long_press", "swipe", "type", "system_button", "open", "wait", "terminate", "key",
               "scroll", "left_click", "double_click", "right_click", "mouse_move", "answer")
    for i in range(400):
        action = actions[i % len(actions)]
        x, y = (i * 37) % 1092, (i * 91) % 2408
        text = " ".join(words[(i * 7 + k) % len(words)] for k in range(1 + i % 6))
        args = {"action": action, "coordinate": [x, y], "text": text}
        lines.append(f'<tool_call>\n{{"name": "mobile_use", "arguments": {json.dumps(args)}}}\n</tool_call>')
        lines.append(f"<think>I should {text}.</think><action>{json.dumps(args)}</action>")
        lines.append(f"Step {i}: {action} at ({x}, {y}); {text}. The screen's resolution is {x}x{y}.")
    return lines


def _train_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    return tokenizer


def build_tiny_qwen25vl(path: str | Path, seed: int = 0, vocab_size: int = 4096) -> Path:
    """Build and save a tiny random Qwen2.5-VL (model, tokenizer, processor, chat template) in ``path``.

    Deterministic for a seed: the same seed writes the same tokenizer and the same weights.

    Args:
        path: Output directory (created; existing files are overwritten).
        seed: Seed of the weight initialisation.
        vocab_size: Target BPE vocabulary size (the trained vocabulary may be smaller on this corpus).

    Returns:
        ``path`` as a :class:`Path`.
    """
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2TokenizerFast,
        Qwen2VLImageProcessor,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)

    raw = _train_tokenizer(vocab_size)
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=raw,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        model_max_length=8192,
    )
    tokenizer.add_tokens(list(TEXT_TOKENS), special_tokens=False)
    tokenizer.chat_template = CHAT_TEMPLATE
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    # Pad the embedding to a multiple of 64, as Qwen does, so every added token has a row.
    model_vocab = (len(tokenizer) + 63) // 64 * 64

    hidden = 256
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=model_vocab,
            hidden_size=hidden,
            intermediate_size=512,
            num_hidden_layers=2,
            num_attention_heads=4,  # head_dim 64: a size vLLM's CPU attention supports
            num_key_value_heads=2,
            max_position_embeddings=8192,
            max_window_layers=2,
            rms_norm_eps=1e-6,
            # mrope sections (temporal, height, width) sum to head_dim / 2, as in Qwen2.5-VL.
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [8, 12, 12]},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
            # Larger than Qwen's 0.02 so random logits are well separated: greedy decoding then agrees
            # between implementations (HF vs vLLM) instead of flipping on near-ties.
            initializer_range=0.1,
        ),
        vision_config=dict(
            depth=2,
            hidden_size=128,
            intermediate_size=256,
            num_heads=4,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[1],
            out_hidden_size=hidden,
            initializer_range=0.1,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    model.save_pretrained(path)

    # Qwen2.5-VL's own preprocessing constants (CLIP mean/std, 56*56 .. 28*28*1280 pixels).
    image_processor = Qwen2VLImageProcessor(
        patch_size=14, merge_size=2, temporal_patch_size=2, min_pixels=56 * 56, max_pixels=28 * 28 * 1280
    )
    video_processor = Qwen2VLVideoProcessor(patch_size=14, merge_size=2, temporal_patch_size=2)
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(path)
    return path


def load_tiny_policy(path: str | Path, seed: int = 0):
    """The tiny model at ``path`` as a :class:`~guiagent.policy.local.LocalPolicy`, built there first unless
    a complete build is already there (a ``BUILT`` marker, written last: a half-written directory is rebuilt).

    Returns:
        ``(policy, built)``: ``built`` is False when a cached build was reused.
    """
    from guiagent.policy.local import LocalPolicy

    path = Path(path)
    marker = path / "BUILT"
    built = not marker.exists()
    if built:
        build_tiny_qwen25vl(path, seed=seed)
        marker.write_text(f"tiny Qwen2.5-VL, seed {seed}\n", encoding="utf-8")
    return LocalPolicy.from_pretrained(path), built
