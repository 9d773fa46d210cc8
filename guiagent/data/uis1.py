"""UI-S1's trajectory JSONL reader (arXiv 2509.11543; mPLUG/UI-S1 datasets).

One JSON object per line and per episode: ``{"goal", "is_successful", "episode_id" (evaluation
files only), "steps": [...]}``. A step is ``{"action_content": {...}, "screenshot": path,
"step_instruction" (evaluation), "check_options" (evaluation)}``; ``action_content`` holds Qwen2.5-VL
``mobile_use`` arguments in *screenshot pixels* (``action`` click/long_press/swipe/type/open/
system_button/wait/terminate, ``coordinate``, ``coordinate2``, ``text``, ``button``, ``time``,
``status``; the training files spell absent fields as null). ``check_options`` carries what UI-S1's
evaluation matcher needs, notably ``candidate_bbox`` ([x1, y1, x2, y2] pixels).

Screenshot paths in the released files are absolute paths of the authors' machines
(``/datasets/AndroidControl/images/8193_1.png``); pass ``images`` to resolve them by file name.
Every step keeps ``action_content``, ``check_options`` and ``step_instruction`` in ``info["uis1"]`` (what
the AndroidControl/SOP evaluator reads), and carries ``check_options.candidate_bbox`` as
``Step.target_boxes`` (what the training matcher reads).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from guiagent.data.base import RECORD_ERRORS, Skips, image_size, record_error
from guiagent.data.store import iter_json_lines, step_image_path
from guiagent.errors import DataError
from guiagent.types import Action, Observation, PixelBox, Step, Trajectory


def uis1_action(content: dict[str, Any], width: int, height: int) -> Action | None:
    """``action_content`` (screenshot pixels) → canonical action, via UI-S1's own model-output parser.

    The content is exactly the JSON a UI-S1 model writes inside ``<action>``; parsing it with a geometry
    whose model image *is* the screenshot reuses one parser for data and predictions. Null fields of
    the training files are dropped first. Returns None when the action does not parse.
    """
    from guiagent.actions import ParseFailure, parse_action
    from guiagent.actions.coords import ModelGeometry

    args = {k: v for k, v in content.items() if v is not None}
    parsed = parse_action(f"<action>{json.dumps(args)}</action>", "uis1", ModelGeometry(width, height, width, height))
    return None if isinstance(parsed, ParseFailure) else parsed


def _candidate_boxes(check_options: Any) -> tuple[PixelBox, ...]:
    """``check_options.candidate_bbox`` (``[[x1, y1, x2, y2], ...]``, screenshot pixels) as target boxes;
    none when the step has no check options (training files).

    Raises:
        ValueError: a candidate box is not four numbers.
    """
    if not isinstance(check_options, dict):
        return ()
    boxes = check_options.get("candidate_bbox") or ()
    for box in boxes:
        if not isinstance(box, (list, tuple)) or len(box) != 4:
            raise ValueError(f"candidate_bbox entries must be [x1, y1, x2, y2], got {box!r}")
    return tuple(tuple(box) for box in boxes)


def _resolve(screenshot: str, images: Path | None, base: Path) -> Path:
    path = Path(screenshot)
    for candidate in ((images / path.name) if images else None, path if path.is_absolute() else base / path):
        if candidate is not None and candidate.exists():
            return candidate
    raise DataError(f"missing screenshot {screenshot}" + ("" if images else " (pass the image directory)"))


def _episode(line: dict[str, Any], lineno: int, images: Path | None, base: Path) -> tuple[Trajectory, dict[str, bytes]]:
    episode_id = str(line.get("episode_id", f"line{lineno}"))
    goal = line["goal"]
    raw_steps = line["steps"]
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ValueError("steps must be a non-empty list")
    steps, files = [], {}
    for i, raw in enumerate(raw_steps):
        png = _resolve(raw["screenshot"], images, base).read_bytes()
        width, height = image_size(png)
        content = raw["action_content"]
        if not isinstance(content, dict) or "action" not in content:
            raise ValueError(f"step {i}: action_content must be an object with an 'action'")
        instruction = raw.get("step_instruction")
        path = step_image_path(episode_id, i)
        check_options = raw.get("check_options")
        info = {"action_content": content, "check_options": check_options, "step_instruction": instruction}
        observation = Observation(width=width, height=height, screenshot_path=path, instruction=goal,
                                  extras={"step_instruction": instruction} if instruction else {})
        steps.append(Step(index=i, observation=observation, action=uis1_action(content, width, height),
                          target_boxes=_candidate_boxes(check_options), info={"uis1": info}))
        files[path] = png
    trajectory = Trajectory(episode_id=episode_id, task_id=episode_id, seed=0, env_id="uis1",
                            policy_version="dataset", instruction=goal, steps=tuple(steps),
                            info={"uis1": {"is_successful": line.get("is_successful")}})
    return trajectory, files


def read_uis1(src: str | os.PathLike, *, skips: Skips,
              images: str | None = None) -> Iterator[tuple[Trajectory, dict[str, bytes]]]:
    """Stream UI-S1 trajectories, one JSONL line at a time.

    Args:
        src: The ``.jsonl`` file.
        skips: Malformed lines and missing screenshots raise, or are skipped and counted.
        images: Directory holding the screenshots by file name (the released paths are absolute paths of
            the authors' machines); relative paths otherwise resolve against the JSONL's directory.

    Yields:
        ``(trajectory, images)`` per line.
    """
    base = Path(src).parent
    image_dir = Path(images) if images else None
    for lineno, line in iter_json_lines(src, on_error=skips):
        try:
            if not isinstance(line, dict):
                raise ValueError("a line must be a JSON object")
            yield _episode(line, lineno, image_dir, base)
        except RECORD_ERRORS as exc:
            skips(record_error(exc, src, lineno))
