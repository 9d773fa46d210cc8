"""GUI-Odyssey reader (OpenGVLab/GUI-Odyssey; arXiv 2406.08451).

Layout: ``annotations/<episode_id>.json`` (one episode each), ``screenshots/<name>.png`` and
``splits/{random,task,device,app}_split.json`` (``{"train": [...], "test": [...]}`` of annotation
file names). An annotation is ``{"episode_id", "device_info": {"w", "h", "device_name", ...},
"task_info": {"category", "app", "meta_task", "task", "instruction"}, "step_length", "steps": [...]}``;
a step is ``{"step", "screenshot", "action", "info", "ps"}`` plus, in the newer release,
``sam2_bbox`` ([x1, y1, x2, y2] of the clicked element) and a low-level instruction. All coordinates
are normalised to 0–1000. Every step field except ``screenshot`` is kept in ``info["odyssey"]`` (what the
evaluator reads); ``sam2_bbox``, in screenshot pixels, is also the step's ``Step.target_boxes``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from guiagent.actions.convert import ODYSSEY_SCALE, from_odyssey
from guiagent.data.base import (
    RECORD_ERRORS,
    Skips,
    canonical_action,
    image_size,
    load_split,
    read_json,
    record_error,
)
from guiagent.data.store import step_image_path
from guiagent.errors import DataError
from guiagent.types import Observation, PixelBox, Step, Trajectory

_STEP_INSTRUCTION_KEYS = ("low_level_instruction", "step_instruction")


def _sam2_box(raw: dict[str, Any], width: int, height: int) -> tuple[PixelBox, ...]:
    """The step's ``sam2_bbox`` (0–1000 grid) in screenshot pixels, as target boxes; none without one."""
    box = raw.get("sam2_bbox")
    if not box:
        return ()
    if len(box) != 4:
        raise ValueError(f"sam2_bbox must be [x1, y1, x2, y2], got {box!r}")
    x1, y1, x2, y2 = (float(v) for v in box)
    sx, sy = width / ODYSSEY_SCALE, height / ODYSSEY_SCALE
    return ((x1 * sx, y1 * sy, x2 * sx, y2 * sy),)


def _episode(annotation: dict[str, Any], screenshots: Path) -> tuple[Trajectory, dict[str, bytes]]:
    """One annotation → trajectory and images. Raises DataError/ValueError/KeyError/OSError when malformed."""
    episode_id = str(annotation["episode_id"])
    task = annotation["task_info"]
    instruction = task["instruction"]
    raw_steps = annotation["steps"]
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ValueError("steps must be a non-empty list")
    if "step_length" in annotation and annotation["step_length"] != len(raw_steps):
        raise ValueError(f"step_length {annotation['step_length']} but {len(raw_steps)} steps")
    steps, images = [], {}
    for i, raw in enumerate(raw_steps):
        shot = screenshots / raw["screenshot"]
        try:
            png = shot.read_bytes()
        except FileNotFoundError:
            raise DataError(f"missing screenshot {shot}") from None
        width, height = image_size(png)
        step_instruction = next((raw[k] for k in _STEP_INSTRUCTION_KEYS if raw.get(k)), None)
        path = step_image_path(episode_id, i)
        observation = Observation(width=width, height=height, screenshot_path=path, instruction=instruction,
                                  extras={"step_instruction": step_instruction} if step_instruction else {})
        info = {k: v for k, v in raw.items() if k != "screenshot"}
        steps.append(Step(index=i, observation=observation, action=canonical_action(from_odyssey, raw, width, height),
                          target_boxes=_sam2_box(raw, width, height), info={"odyssey": info}))
        images[path] = png
    device = annotation.get("device_info", {})
    meta = {k: task[k] for k in ("category", "app", "meta_task", "task") if k in task}
    if "device_name" in device:
        meta["device_name"] = device["device_name"]
    trajectory = Trajectory(episode_id=episode_id, task_id=episode_id, seed=0, env_id="odyssey",
                            policy_version="dataset", instruction=instruction, steps=tuple(steps),
                            info={"odyssey": meta})
    return trajectory, images


def read_odyssey(src: str | os.PathLike, *, skips: Skips, split_file: str | None = None, split: str | None = None,
                 images: str | None = None) -> Iterator[tuple[Trajectory, dict[str, bytes]]]:
    """Stream GUI-Odyssey episodes, one annotation file at a time.

    Args:
        src: The dataset root (holding ``annotations/`` and ``screenshots/``) or the annotations directory.
        skips: Malformed annotations and missing screenshots raise, or are skipped and counted.
        split_file: A ``splits/*.json`` file; with ``split`` (``train``/``test``) keeps that split (sorted by id).
        split: The split name.
        images: Screenshot directory; defaults to ``screenshots/`` beside ``annotations/``.

    Yields:
        ``(trajectory, images)`` per episode.
    """
    keep = load_split(split_file, split)
    root = Path(src)
    annotations = root / "annotations" if (root / "annotations").is_dir() else root
    if not annotations.is_dir():
        raise DataError("expected the GUI-Odyssey root or its annotations/ directory", file=str(root))
    screenshots = Path(images) if images else annotations.parent / "screenshots"
    if keep is not None:
        files = [annotations / f"{episode_id}.json" for episode_id in sorted(keep)]
    else:
        files = sorted(annotations.glob("*.json"))
    for path in files:
        try:
            yield _episode(read_json(path), screenshots)
        except RECORD_ERRORS as exc:
            skips(record_error(exc, path, path.stem))
