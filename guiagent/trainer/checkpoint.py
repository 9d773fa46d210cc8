"""Checkpoints a killed run resumes from exactly.

``RUN/checkpoints/step-000012/`` holds:

- ``model/``: the policy as a Hugging Face directory (safetensors + config + processor files), loadable by
  ``from_pretrained`` and by vLLM; with LoRA, the PEFT adapter directory (vLLM loads it with
  ``--lora-modules`` or ``/v1/load_lora_adapter``) and the base model is the run's ``trainer.model``.
- ``engine.pt``: optimizer and schedule state, read back with ``torch.load(weights_only=True)`` (tensors and
  plain containers only: loading it cannot run code).
- ``trainer_state.json``: the update step, the policy version, the RNG states of Python, NumPy and torch,
  and the ARPO replay buffer as JSON with screenshots referred to by their store paths, not embedded.

A checkpoint is written into ``step-N.tmp`` and renamed when complete, then ``RUN/checkpoints/latest`` is
replaced atomically, so a run killed while saving resumes from the previous complete checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from guiagent.errors import DataError
from guiagent.types import Trajectory

STATE_VERSION = 1


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU) RNG states as JSON values."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "torch": torch.get_rng_state().tolist()}


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def without_screenshots(trajectory: Trajectory) -> Trajectory:
    """``trajectory`` with each screenshot referred to by its store path only.

    Raises:
        DataError: a step has screenshot bytes but no path (it would be lost).
    """
    steps = []
    for step in trajectory.steps:
        obs = step.observation
        if obs.screenshot is not None:
            if obs.screenshot_path is None:
                raise DataError("a replayed screenshot has no store path; it cannot be checkpointed by reference",
                                record=f"{trajectory.episode_id} step {step.index}")
            step = dataclasses.replace(step, observation=dataclasses.replace(obs, screenshot=None))
        steps.append(step)
    return dataclasses.replace(trajectory, steps=tuple(steps))


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def save_checkpoint(run_dir: Path, step: int, model: Any, processor: Any, engine: Any,
                    state: dict[str, Any], keep: int = 2) -> Path:
    """Write the checkpoint of update ``step``; keep the newest ``keep``. Returns its directory.

    Args:
        run_dir: The run directory.
        step: Updates done.
        model: The trained model (a PEFT model saves its adapter).
        processor: Saved beside the weights so the directory is a complete Hugging Face model.
        engine: :class:`~guiagent.trainer.engine.TorchEngine` (its ``state_dict``).
        state: More trainer state as JSON values (policy version, replay buffer, ...).
        keep: Checkpoints kept besides step 0, which always stays.
    """
    root = run_dir / "checkpoints"
    final = root / f"step-{step:06d}"
    tmp = root / f"step-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "model").mkdir(parents=True)
    model.save_pretrained(tmp / "model", safe_serialization=True)
    if processor is not None:
        processor.save_pretrained(tmp / "model")
    torch.save(engine.state_dict(), tmp / "engine.pt")
    _write_json(tmp / "trainer_state.json", {"version": STATE_VERSION, "step": step, "rng": rng_state(), **state})
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _write_json(root / "latest.json", {"step": step, "path": final.name})
    # Step 0 (the weights the updates started from: the KL reference, a control's starting point) is kept.
    rotating = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp")
                      and p.name != "step-000000")
    for old in rotating[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of ``run_dir``, or None."""
    pointer = run_dir / "checkpoints" / "latest.json"
    if not pointer.exists():
        return None
    try:
        name = json.loads(pointer.read_text(encoding="utf-8"))["path"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{pointer}: unreadable checkpoint pointer: {exc}") from None
    path = pointer.parent / name
    if not (path / "trainer_state.json").exists():
        raise DataError(f"{pointer} names {path}, which is not a complete checkpoint")
    return path


def load_checkpoint(path: Path, model: Any, engine: Any) -> dict[str, Any]:
    """Load weights, optimizer and RNG states from ``path`` into ``model``/``engine``; return the trainer state.

    Raises:
        DataError: the checkpoint is incomplete or from another format version.
    """
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path / 'trainer_state.json'}: {exc}") from None
    if state.get("version") != STATE_VERSION:
        raise DataError(f"{path}: checkpoint format {state.get('version')!r}, this trainer reads {STATE_VERSION}")
    load_weights(model, path / "model")
    engine.load_state_dict(torch.load(path / "engine.pt", weights_only=True))
    set_rng_state(state["rng"])
    return state


def load_weights(model: Any, directory: Path) -> None:
    """Load the weights saved in ``directory`` into ``model`` in place.

    A PEFT model takes its adapter file. A full model is read back with ``from_pretrained``, which applies
    transformers' own mapping between checkpoint and module names (they differ for Qwen2.5-VL), and its
    tensors are copied in unchanged (same dtype: the resumed weights are bitwise the saved ones).

    Raises:
        DataError: the directory holds no weights, or they do not fit the model.
    """
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        adapter = directory / "adapter_model.safetensors"
        if not adapter.exists():
            raise DataError(f"{directory}: no adapter_model.safetensors for this LoRA model")
        set_peft_model_state_dict(model, load_file(adapter))
        return
    from transformers import AutoModelForImageTextToText

    try:
        saved = AutoModelForImageTextToText.from_pretrained(directory, dtype=next(model.parameters()).dtype)
        model.load_state_dict(saved.state_dict())
    except (OSError, ValueError, RuntimeError) as exc:
        raise DataError(f"{directory}: cannot load the checkpoint's weights into the model: {exc}") from None


__all__ = ["latest_checkpoint", "load_checkpoint", "rng_state", "save_checkpoint", "set_rng_state",
           "without_screenshots"]
