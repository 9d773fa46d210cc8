"""AndroidControl reader (google-research/android_control; arXiv 2406.03679).

GZIP TFRecord files, one ``tf.train.Example`` per *episode*:

========================  ======  ==============================================================
key                       type    meaning
========================  ======  ==============================================================
``episode_id``            int64   episode id (the ids ``splits.json`` lists)
``goal``                  bytes   high-level instruction
``screenshots``           bytes*  PNG screenshots, one per observation
``accessibility_trees``   bytes*  serialized ``AndroidAccessibilityForest`` protos, one per observation
``screenshot_widths``     int64*  width of each screenshot
``screenshot_heights``    int64*  height of each screenshot
``actions``               bytes*  JSON action dicts, ``len(screenshots) - 1`` of them
``step_instructions``     bytes*  low-level instruction per action
========================  ======  ==============================================================

``splits.json`` maps ``train``/``validation``/``test`` to episode ids.

Accessibility trees are decoded with android_env's ``AndroidAccessibilityForest`` proto (the
``android`` extra) and stored in ``observation.a11y_tree`` as protobuf's canonical JSON
(``json_format.MessageToDict`` with the proto field names, dumped compactly, e.g. ``{"windows": [{"tree": {"nodes":
[{"unique_id": 1, "bounds_in_screen": {...}, "text": ...}]}}]}``). Without android_env the tree is
left out (``a11y_tree`` None) and a warning says so. The final screenshot, after the last action,
has no step of its own.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from functools import cache
from typing import Any

from guiagent.actions.convert import from_androidcontrol
from guiagent.data.base import Skips, canonical_action, list_files, load_split
from guiagent.data.store import step_image_path
from guiagent.data.tfrecord import iter_records, parse_example
from guiagent.errors import DataError
from guiagent.types import Observation, Step, Trajectory

log = logging.getLogger(__name__)


@cache
def _forest_class() -> Any:
    try:
        from android_env.proto.a11y import android_accessibility_forest_pb2
    except ImportError:
        log.warning("android_env is not installed (pip install 'guiagent[android]'): "
                    "AndroidControl accessibility trees are left out")
        return None
    return android_accessibility_forest_pb2.AndroidAccessibilityForest


def forest_to_json(data: bytes) -> str | None:
    """A serialized AndroidAccessibilityForest as compact canonical JSON; None without android_env.

    Raises:
        ValueError: ``data`` is not a valid forest proto.
    """
    forest_class = _forest_class()
    if forest_class is None or not data:
        return None
    from google.protobuf import json_format

    forest = forest_class()
    try:
        forest.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError
        raise ValueError(f"accessibility tree is not an AndroidAccessibilityForest: {exc}") from None
    return json.dumps(json_format.MessageToDict(forest, preserving_proto_field_name=True), separators=(",", ":"))


def _episode(features: dict[str, Any]) -> tuple[Trajectory, dict[str, bytes]]:
    """One AndroidControl Example → trajectory and images. Raises ValueError when malformed."""
    for key in ("episode_id", "goal", "screenshots", "screenshot_widths", "screenshot_heights", "actions"):
        if not features.get(key):
            raise ValueError(f"missing feature {key!r}")
    episode_id = str(features["episode_id"][0])
    goal = features["goal"][0].decode("utf-8")
    shots, widths, heights = features["screenshots"], features["screenshot_widths"], features["screenshot_heights"]
    actions = [json.loads(a.decode("utf-8")) for a in features["actions"]]
    instructions = [s.decode("utf-8") for s in features.get("step_instructions", [])]
    trees = features.get("accessibility_trees", [])
    if not (len(shots) == len(widths) == len(heights)) or len(actions) != len(shots) - 1:
        raise ValueError(f"{len(shots)} screenshots, {len(widths)}x{len(heights)} sizes and {len(actions)} actions "
                         "(expected one action fewer than screenshots)")
    if instructions and len(instructions) != len(actions):
        raise ValueError(f"{len(instructions)} step instructions for {len(actions)} actions")
    if trees and len(trees) != len(shots):
        raise ValueError(f"{len(trees)} accessibility trees for {len(shots)} screenshots")
    steps, images = [], {}
    for i, action in enumerate(actions):
        width, height = int(widths[i]), int(heights[i])
        instruction = instructions[i] if instructions else ""
        path = step_image_path(episode_id, i)
        observation = Observation(width=width, height=height, screenshot_path=path,
                                  a11y_tree=forest_to_json(trees[i]) if trees else None, instruction=goal,
                                  extras={"step_instruction": instruction} if instructions else {})
        steps.append(Step(index=i, observation=observation,
                          action=canonical_action(from_androidcontrol, action, width, height),
                          info={"androidcontrol": {"action": action, "step_instruction": instruction}}))
        images[path] = shots[i]
    trajectory = Trajectory(episode_id=episode_id, task_id=episode_id, seed=0, env_id="androidcontrol",
                            policy_version="dataset", instruction=goal, steps=tuple(steps))
    return trajectory, images


def read_androidcontrol(src: str | os.PathLike, *, skips: Skips, split_file: str | None = None,
                        split: str | None = None) -> Iterator[tuple[Trajectory, dict[str, bytes]]]:
    """Stream AndroidControl episodes from its TFRecord files.

    Args:
        src: One TFRecord file or a directory of ``android_control-*`` files.
        skips: Corrupt records raise, or are skipped and counted.
        split_file: ``splits.json``; with ``split``, keeps only that split's episodes.
        split: ``train``, ``validation`` or ``test``.

    Yields:
        ``(trajectory, images)`` per episode.
    """
    keep = load_split(split_file, split)
    for path in list_files(src, exclude=(".json", ".md", ".txt")):
        for index, data in iter_records(path, on_error=skips):
            try:
                features = parse_example(data)
                if keep is not None and str(features.get("episode_id", [None])[0]) not in keep:
                    continue
                episode = _episode(features)
            except (ValueError, UnicodeDecodeError, IndexError) as exc:
                skips(DataError(str(exc), file=str(path), record=index))
                continue
            yield episode
