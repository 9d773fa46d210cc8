"""Android in the Wild (AITW) readers: the official TFRecord release and SeeClick's JSON split.

Official release (google-research/android_in_the_wild): GZIP TFRecord files, one ``tf.train.Example``
per *step*, steps of an episode consecutive. Feature keys and types:

=================================  ===========  =====================================================
key                                type         meaning
=================================  ===========  =====================================================
``episode_id``                     bytes        episode id (a decimal string)
``step_id``                        int64        0-based step index
``episode_length``                 int64        number of steps in the episode
``goal_info``                      bytes        the instruction
``image/encoded``                  bytes        **raw uint8 pixels** (not PNG), height × width × channels
``image/height|width|channels``    int64        screenshot shape
``image/ui_annotations_positions`` float        flattened (y, x, h, w) boxes, normalised to [0, 1]
``image/ui_annotations_text``      bytes        OCR text per box
``image/ui_annotations_ui_types``  bytes        element type per box (icon type or TEXT)
``results/action_type``            int64        action_type.ActionType (3 type, 4 dual point, 5 back, 6 home,
                                                7 enter, 10 complete, 11 impossible)
``results/yx_touch|yx_lift``       float        (y, x) normalised touch and lift points
``results/type_action``            bytes        typed text
``current_activity``               bytes        Android activity name
``device_type``                    bytes        emulator device type
``android_api_level``              int64        API level
=================================  ===========  =====================================================

Official splits are JSON files ``{"train": [...], "validation": [...], "test": [...]}`` of episode ids.

SeeClick's instruction-wise split (arXiv 2401.10935; ``aitw_data_{train,val,test}.json``) is one JSON
``{"general"|"single"|"webshopping"|"install"|"googleapps": [episode: [step, ...], ...]}`` with steps
``{"img_filename", "ep_id", "goal", "step", "action_type_id", "action_type_text", "annot_position"
(flat y, x, h, w), "touch", "lift" ((x, y) normalised — note the order), "type_text"}`` and PNG
screenshots ``<images>/<img_filename>.png``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from guiagent.actions.convert import from_aitw
from guiagent.data.base import (
    RECORD_ERRORS,
    Skips,
    canonical_action,
    image_size,
    list_files,
    load_split,
    read_json,
    record_error,
)
from guiagent.data.store import step_image_path
from guiagent.data.tfrecord import iter_records, parse_example
from guiagent.errors import DataError
from guiagent.images import encode_png
from guiagent.types import Observation, Step, Trajectory

SUBSETS = ("general", "google_apps", "install", "single", "web_shopping")
_SEECLICK_SUBSETS = {"general": "general", "single": "single", "webshopping": "web_shopping",
                     "install": "install", "googleapps": "google_apps"}
_REQUIRED = ("episode_id", "step_id", "goal_info", "image/encoded", "image/height", "image/width",
             "image/channels", "results/action_type", "results/yx_touch", "results/yx_lift", "results/type_action")
_PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def _text(value: list[bytes]) -> str:
    return value[0].decode("utf-8") if value else ""


def _boxes(flat: list[float]) -> list[list[float]]:
    if len(flat) % 4:
        raise ValueError(f"{len(flat)} annotation coordinates is not a multiple of 4")
    return [list(flat[i:i + 4]) for i in range(0, len(flat), 4)]


def _decode_step(features: dict[str, Any]) -> dict[str, Any]:
    """One AITW Example → the step's fields, with the screenshot as PNG bytes.

    Raises:
        ValueError: a required feature is missing or malformed.
    """
    missing = [k for k in _REQUIRED if not features.get(k)]  # results/type_action is [b""] when nothing was typed
    if missing:
        raise ValueError(f"missing feature(s) {missing}")
    height, width, channels = features["image/height"][0], features["image/width"][0], features["image/channels"][0]
    raw = features["image/encoded"][0]
    if channels not in _PIL_MODES or len(raw) != height * width * channels or height <= 0 or width <= 0:
        raise ValueError(f"image/encoded has {len(raw)} bytes, not {height}x{width}x{channels} raw uint8 pixels")
    from PIL import Image

    touch, lift = features["results/yx_touch"], features["results/yx_lift"]
    if len(touch) != 2 or len(lift) != 2:
        raise ValueError("results/yx_touch and results/yx_lift must be (y, x) pairs")
    step = {
        "episode_id": _text(features["episode_id"]),
        "step_id": int(features["step_id"][0]),
        "goal": _text(features["goal_info"]),
        "width": int(width),
        "height": int(height),
        "png": encode_png(Image.frombytes(_PIL_MODES[channels], (width, height), raw)),
        "aitw": {
            "action_type": int(features["results/action_type"][0]),
            "touch_yx": list(touch),
            "lift_yx": list(lift),
            "typed_text": _text(features["results/type_action"]),
            "annotations_yxhw": _boxes(features.get("image/ui_annotations_positions", [])),
            "annotations_text": [t.decode("utf-8") for t in features.get("image/ui_annotations_text", [])],
            "annotations_ui_types": [t.decode("utf-8") for t in features.get("image/ui_annotations_ui_types", [])],
            "step_id": int(features["step_id"][0]),
            "episode_id": _text(features["episode_id"]),
        },
    }
    for key in ("episode_length", "android_api_level"):
        if features.get(key):
            step["aitw"][key] = int(features[key][0])
    for key in ("current_activity", "device_type"):
        if features.get(key):
            step["aitw"][key] = _text(features[key])
    return step


def _make_step(index: int, episode_id: str, goal: str, width: int, height: int, aitw: dict[str, Any]) -> Step:
    action = canonical_action(from_aitw, aitw["action_type"], aitw["touch_yx"], aitw["lift_yx"],
                              aitw["typed_text"], width, height)
    observation = Observation(width=width, height=height, screenshot_path=step_image_path(episode_id, index),
                              instruction=goal)
    return Step(index=index, observation=observation, action=action, info={"aitw": aitw})


def _subset_of(path: Path) -> str | None:
    for part in reversed(path.parts):
        if part in SUBSETS:
            return part
    return None


def _finish(steps: list[dict[str, Any]], file: str, subset: str | None) -> tuple[Trajectory, dict[str, bytes]]:
    """Validate one grouped episode and build its trajectory.

    Raises:
        DataError: step ids are not 0..n-1, or disagree with ``episode_length`` (a step was lost).
    """
    steps.sort(key=lambda s: s["step_id"])
    episode_id = steps[0]["episode_id"]
    ids = [s["step_id"] for s in steps]
    expected = steps[0]["aitw"].get("episode_length", len(steps))
    if ids != list(range(len(steps))) or expected != len(steps):
        raise DataError(f"incomplete episode: step ids {ids}, episode_length {expected}",
                        file=file, record=f"episode {episode_id}")
    images = {step_image_path(episode_id, i): s["png"] for i, s in enumerate(steps)}
    trajectory = Trajectory(
        episode_id=episode_id, task_id=episode_id, seed=0, env_id="aitw", policy_version="dataset",
        instruction=steps[0]["goal"], info={"aitw": {"subset": subset}} if subset else {},
        steps=tuple(_make_step(i, episode_id, s["goal"], s["width"], s["height"], s["aitw"]) for i, s in enumerate(steps)),
    )
    return trajectory, images


def read_aitw(src: str | os.PathLike, *, skips: Skips, split_file: str | None = None, split: str | None = None,
              subset: str | None = None) -> Iterator[tuple[Trajectory, dict[str, bytes]]]:
    """Stream AITW episodes from the official TFRecord files.

    Args:
        src: One TFRecord file or a directory of them (e.g. ``general/``), read in sorted order.
        skips: Corrupt records (bad CRC, undecodable Example, missing feature) and incomplete episodes
            raise, or are skipped and counted.
        split_file: An official split JSON; with ``split``, keeps only that split's episodes.
        split: The split name in ``split_file`` (``train``, ``validation``, ``test``).
        subset: AITW subset name recorded in ``trajectory.info["aitw"]["subset"]``; by default taken
            from the first path component that names one (``general``, ``google_apps``, ...).

    Yields:
        ``(trajectory, images)`` per episode, steps grouped from consecutive records.
    """
    keep = load_split(split_file, split)
    files = list_files(src, exclude=(".json", ".md", ".txt"))
    current: list[dict[str, Any]] = []
    current_file = ""
    current_subset = subset
    for path in files:
        name = str(path)
        file_subset = subset or _subset_of(path.resolve())
        for index, data in iter_records(path, on_error=skips):
            try:
                features = parse_example(data)
                episode_id = _text(features.get("episode_id", []))
                if keep is not None and episode_id not in keep:
                    continue  # filtered before the expensive image decode
                step = _decode_step(features)
            except (ValueError, UnicodeDecodeError, IndexError) as exc:
                skips(DataError(str(exc), file=name, record=index))
                continue
            if current and step["episode_id"] != current[0]["episode_id"]:
                try:
                    yield _finish(current, current_file, current_subset)
                except DataError as exc:
                    skips(exc)
                current = []
            if not current:
                current_file, current_subset = name, file_subset
            current.append(step)
    if current:
        try:
            yield _finish(current, current_file, current_subset)
        except DataError as exc:
            skips(exc)


def read_aitw_seeclick(src: str | os.PathLike, *, skips: Skips, images: str | None = None,
                       subsets: tuple[str, ...] | None = None) -> Iterator[tuple[Trajectory, dict[str, bytes]]]:
    """Stream AITW episodes from SeeClick's instruction-wise split JSON.

    The JSON itself is loaded at once (it is the split's index, tens of MB); screenshots are read one
    episode at a time.

    Args:
        src: ``aitw_data_test.json`` (or train/val).
        skips: Malformed steps and missing screenshots raise, or are skipped (with their episode) and counted.
        images: Screenshot directory; defaults to ``aitw_images`` beside the JSON file.
        subsets: SeeClick subset keys to keep (``general``, ``single``, ``webshopping``, ``install``,
            ``googleapps``); all by default.

    Yields:
        ``(trajectory, images)`` per episode; ``trajectory.info["aitw"]["subset"]`` uses the official subset name.
    """
    name = str(src)
    data = read_json(src)
    if not isinstance(data, dict):
        raise DataError("SeeClick AITW JSON must map subset names to lists of episodes", file=name)
    image_dir = Path(images) if images else Path(src).parent / "aitw_images"
    for key, episodes in data.items():
        if subsets and key not in subsets:
            continue
        if not isinstance(episodes, list):
            skips(DataError("subset is not a list of episodes", file=name, record=key))
            continue
        for number, episode in enumerate(episodes):
            record = f"{key}[{number}]"
            try:
                yield _seeclick_episode(episode, image_dir, _SEECLICK_SUBSETS.get(key, key))
            except RECORD_ERRORS as exc:
                skips(record_error(exc, name, record))


def _seeclick_episode(episode: list[dict[str, Any]], image_dir: Path,
                      subset: str) -> tuple[Trajectory, dict[str, bytes]]:
    if not isinstance(episode, list) or not episode:
        raise ValueError("an episode must be a non-empty list of steps")
    episode_id = str(episode[0]["ep_id"])
    steps, images = [], {}
    for index, raw in enumerate(episode):
        png_path = image_dir / (raw["img_filename"] + ".png")
        try:
            png = png_path.read_bytes()
        except FileNotFoundError:
            raise DataError(f"missing screenshot {png_path}") from None
        width, height = image_size(png)
        touch_xy, lift_xy = raw["touch"], raw["lift"]
        aitw = {
            "action_type": int(raw["action_type_id"]),
            "touch_yx": [float(touch_xy[1]), float(touch_xy[0])],
            "lift_yx": [float(lift_xy[1]), float(lift_xy[0])],
            "typed_text": raw.get("type_text", "") or "",
            "annotations_yxhw": _boxes(raw.get("annot_position", [])),
            "action_type_text": raw.get("action_type_text", ""),
            "step_id": int(raw.get("step", index)),
            "episode_id": episode_id,
        }
        steps.append(_make_step(index, episode_id, raw["goal"], width, height, aitw))
        images[step_image_path(episode_id, index)] = png
    trajectory = Trajectory(
        episode_id=episode_id, task_id=episode_id, seed=0, env_id="aitw", policy_version="dataset",
        instruction=episode[0]["goal"], info={"aitw": {"subset": subset, "split_source": "seeclick"}},
        steps=tuple(steps),
    )
    return trajectory, images
