"""Small sample files in each benchmark's *official* on-disk format, for tests, demos and benchmarks.

Every writer produces the real format — GZIP TFRecord files of real ``tf.train.Example`` protos, the
benchmarks' JSON/JSONL layouts, Hugging Face style parquet with ``{bytes, path}`` image structs — filled
with synthetic, deterministic content (no third-party data). Screens are flat colours with a few
drawn "elements" whose boxes are the annotations, so a tap can land inside or outside a box on purpose.

Command line: ``guiagent data sample DATASET DST`` (see :mod:`guiagent.data.cli`).
"""

from __future__ import annotations

import gzip
import json
import os
import random
import struct
from pathlib import Path
from typing import Any

import numpy as np

from guiagent.actions.convert import AITW_NO_POINT, AitwActionType
from guiagent.data.tfrecord import make_example, write_records
from guiagent.images import encode_png


def _screen(width: int, height: int, seed: int, boxes_xyxy: list[tuple[int, int, int, int]]) -> np.ndarray:
    """An RGB screen (height, width, 3) uint8: a seeded background colour with darker element boxes."""
    rng = np.random.default_rng(seed)
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = rng.integers(96, 256, size=3, dtype=np.uint8)
    for x1, y1, x2, y2 in boxes_xyxy:
        img[y1:y2, x1:x2] = rng.integers(0, 96, size=3, dtype=np.uint8)
    return img


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    return encode_png(Image.fromarray(array))


def _boxes(rng: random.Random, n: int = 3) -> list[tuple[float, float, float, float]]:
    """``n`` normalised (y, x, h, w) element boxes in distinct horizontal bands."""
    out = []
    for i in range(n):
        h, w = rng.uniform(0.05, 0.1), rng.uniform(0.2, 0.6)
        y = (i + 0.2) / (n + 1) + rng.uniform(0, 0.05)
        x = rng.uniform(0.0, 1.0 - w)
        out.append((round(y, 4), round(x, 4), round(h, 4), round(w, 4)))
    return out


def _to_pixels(box_yxhw: tuple[float, ...], width: int, height: int) -> tuple[int, int, int, int]:
    y, x, h, w = box_yxhw
    return int(x * width), int(y * height), max(int((x + w) * width), int(x * width) + 1), max(int((y + h) * height), int(y * height) + 1)


_AITW_KIND_TYPES = {
    "tap": AitwActionType.DUAL_POINT, "swipe": AitwActionType.DUAL_POINT, "type": AitwActionType.TYPE,
    "back": AitwActionType.PRESS_BACK, "home": AitwActionType.PRESS_HOME, "enter": AitwActionType.PRESS_ENTER,
    "complete": AitwActionType.STATUS_TASK_COMPLETE,
}


def aitw_step_examples(episode_id: str, goal: str, n_steps: int, seed: int, width: int = 64,
                       height: int = 128) -> list[bytes]:
    """Serialized AITW ``tf.train.Example`` protos for one synthetic episode.

    The step kinds cycle through tap (inside an element), swipe up, type, back, home and enter; the last
    step is STATUS_TASK_COMPLETE.
    """
    rng = random.Random(seed)
    kinds = ["tap", "swipe", "type", "back", "home", "enter"]
    records = []
    for step in range(n_steps):
        boxes = _boxes(rng)
        kind = "complete" if step == n_steps - 1 else kinds[(seed + step) % len(kinds)]
        touch = lift = AITW_NO_POINT
        typed = ""
        action_type = _AITW_KIND_TYPES[kind]
        if kind == "tap":
            y, x, h, w = boxes[rng.randrange(len(boxes))]
            touch = lift = (y + h / 2, x + w / 2)
        elif kind == "swipe":
            touch, lift = (0.8, 0.5), (0.2, 0.5)  # finger moves up: the content scrolls down
        elif kind == "type":
            typed = f"query {seed}"
        pixels = _screen(width, height, seed * 1000 + step, [_to_pixels(b, width, height) for b in boxes])
        records.append(make_example({
            "episode_id": episode_id, "step_id": step, "episode_length": n_steps, "goal_info": goal,
            "image/encoded": pixels.tobytes(), "image/height": height, "image/width": width, "image/channels": 3,
            "image/ui_annotations_positions": ("float", [v for b in boxes for v in b]),
            "image/ui_annotations_text": [f"item {i}" for i in range(len(boxes))],
            "image/ui_annotations_ui_types": ["TEXT", "ICON_SEARCH", "TEXT"][: len(boxes)],
            "results/action_type": int(action_type), "results/yx_touch": ("float", list(touch)),
            "results/yx_lift": ("float", list(lift)), "results/type_action": typed,
            "current_activity": "com.example/.MainActivity", "device_type": "Pixel 6", "android_api_level": 33,
        }))
    return records


def write_aitw_sample(path: str | os.PathLike, episodes: int = 3, seed: int = 0, width: int = 64, height: int = 128,
                      steps: tuple[int, int] = (2, 6)) -> list[str]:
    """Write an AITW-format GZIP TFRecord file of synthetic episodes.

    Args:
        path: Output file (e.g. ``general/general-0000-of-0001``; a subset name in the path is picked up
            by the reader).
        episodes: Number of episodes.
        seed: Seed for everything generated.
        width: Screenshot width in pixels.
        height: Screenshot height in pixels.
        steps: Inclusive range of steps per episode.

    Returns:
        The episode ids written, in order.
    """
    rng = random.Random(seed)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ids = [str(10_000_000 + seed * 100_000 + i) for i in range(episodes)]
    lengths = [rng.randint(*steps) for _ in ids]

    def records():
        for i, (episode_id, n) in enumerate(zip(ids, lengths)):
            yield from aitw_step_examples(episode_id, f"open the settings and do thing {i}", n, seed * 7919 + i,
                                          width, height)

    write_records(path, records())
    return ids


def write_split_file(path: str | os.PathLike, splits: dict[str, list[Any]]) -> Path:
    """Write a split JSON ``{split: [episode ids]}`` (AITW official splits, AndroidControl, GUI-Odyssey)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(splits, indent=1), encoding="utf-8")
    return path


def corrupt_tfrecord(path: str | os.PathLike, record: int) -> None:
    """Flip one byte inside record ``record``'s data so its data CRC fails (the framing stays readable)."""
    raw = Path(path).read_bytes()
    compressed = raw[:2] == b"\x1f\x8b"
    data = bytearray(gzip.decompress(raw) if compressed else raw)
    offset = 0
    for _ in range(record):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        offset += 16 + length
    (length,) = struct.unpack("<Q", data[offset:offset + 8])
    data[offset + 12 + length // 2] ^= 0xFF
    Path(path).write_bytes(gzip.compress(bytes(data)) if compressed else bytes(data))


def write_aitw_seeclick_sample(root: str | os.PathLike, episodes_per_subset: int = 1, seed: int = 0,
                               width: int = 64, height: int = 128, split: str = "test") -> Path:
    """Write SeeClick's AITW split layout: ``aitw_data_<split>.json`` plus ``aitw_images/<subset>/*.png``.

    Returns:
        The JSON file's path.
    """
    root = Path(root)
    rng = random.Random(seed)
    data: dict[str, list] = {}
    actions = [(4, "click"), (4, "scroll down"), (3, "type"), (5, "press back"), (10, "status task complete")]
    for s, subset in enumerate(("general", "single", "webshopping", "install", "googleapps")):
        data[subset] = []
        for e in range(episodes_per_subset):
            ep_id = str(20_000_000 + seed * 1000 + s * 100 + e)
            goal = f"{subset} goal {e}"
            episode = []
            for step in range(rng.randint(2, 5)):
                boxes = _boxes(rng)
                action_id, text = actions[step % len(actions)]
                touch = lift = [-1.0, -1.0]
                if text == "click":
                    y, x, h, w = boxes[0]
                    touch = lift = [x + w / 2, y + h / 2]  # SeeClick stores (x, y)
                elif text == "scroll down":
                    touch, lift = [0.5, 0.8], [0.5, 0.2]
                img_filename = f"{subset}/{ep_id}_{step}"
                png_path = root / "aitw_images" / (img_filename + ".png")
                png_path.parent.mkdir(parents=True, exist_ok=True)
                png_path.write_bytes(_png(_screen(width, height, s * 1000 + e * 10 + step,
                                                  [_to_pixels(b, width, height) for b in boxes])))
                episode.append({
                    "img_filename": img_filename, "ep_id": ep_id, "goal": goal, "step": step,
                    "action_type_id": action_id, "action_type_text": text,
                    "annot_position": [v for b in boxes for v in b], "touch": touch, "lift": lift,
                    "type_text": "hello" if action_id == 3 else "",
                })
            data[subset].append(episode)
    path = root / f"aitw_data_{split}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _forest_bytes(width: int, height: int, labels: list[tuple[str, tuple[int, int, int, int]]]) -> bytes:
    """A serialized AndroidAccessibilityForest (android_env's proto) with one window of labelled nodes."""
    from android_env.proto.a11y import android_accessibility_forest_pb2 as forest_pb2

    forest = forest_pb2.AndroidAccessibilityForest()
    window = forest.windows.add(id=1, layer=0, window_type=1, is_active=True, is_focused=True)
    window.bounds_in_screen.right, window.bounds_in_screen.bottom = width, height
    root = window.tree.nodes.add(unique_id=0, class_name="android.widget.FrameLayout", package_name="com.example")
    root.bounds_in_screen.right, root.bounds_in_screen.bottom = width, height
    for i, (text, (x1, y1, x2, y2)) in enumerate(labels, start=1):
        node = window.tree.nodes.add(unique_id=i, class_name="android.widget.Button", text=text,
                                     package_name="com.example", is_clickable=True, is_enabled=True)
        node.bounds_in_screen.left, node.bounds_in_screen.top = x1, y1
        node.bounds_in_screen.right, node.bounds_in_screen.bottom = x2, y2
        root.child_ids.append(i)
    return forest.SerializeToString()


def androidcontrol_example(episode_id: int, n_actions: int, seed: int, width: int = 108, height: int = 240,
                           with_a11y: bool = True) -> bytes:
    """One AndroidControl ``tf.train.Example`` (one episode): ``n_actions + 1`` screenshots."""
    rng = random.Random(seed)
    cycle = ["open_app", "click", "input_text", "scroll", "long_press", "navigate_back", "wait", "navigate_home"]
    screenshots, trees, actions, instructions = [], [], [], []
    for step in range(n_actions + 1):
        boxes = [_to_pixels(b, width, height) for b in _boxes(rng)]
        screenshots.append(_png(_screen(width, height, seed * 100 + step, boxes)))
        if with_a11y:
            trees.append(_forest_bytes(width, height, [(f"button {i}", b) for i, b in enumerate(boxes)]))
        if step == n_actions:
            break
        kind = cycle[(seed + step) % len(cycle)]
        x1, y1, x2, y2 = boxes[0]
        action: dict[str, Any] = {"action_type": kind}
        if kind in ("click", "long_press"):
            action.update(x=(x1 + x2) // 2, y=(y1 + y2) // 2)
        elif kind == "input_text":
            action["text"] = f"note {seed}"
        elif kind == "scroll":
            action["direction"] = "down"
        elif kind == "open_app":
            action["app_name"] = "Settings"
        actions.append(json.dumps(action))
        instructions.append(f"do step {step} ({kind})")
    features: dict[str, Any] = {
        "episode_id": episode_id, "goal": f"complete task {episode_id}", "screenshots": screenshots,
        "screenshot_widths": [width] * len(screenshots), "screenshot_heights": [height] * len(screenshots),
        "actions": actions, "step_instructions": instructions,
    }
    features["accessibility_trees"] = ("bytes", trees)
    return make_example(features)


def write_androidcontrol_sample(root: str | os.PathLike, episodes: int = 3, seed: int = 0, width: int = 108,
                                height: int = 240, with_a11y: bool = True) -> list[int]:
    """Write AndroidControl's layout: ``android_control-00000-of-00001`` (GZIP TFRecord) and ``splits.json``.

    ``splits.json`` puts the last episode in ``test``, the others in ``train``, and none in ``validation``.

    Returns:
        The episode ids written.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    ids = [seed * 1000 + i for i in range(episodes)]
    write_records(root / "android_control-00000-of-00001",
                  (androidcontrol_example(i, rng.randint(2, 5), seed + n, width, height, with_a11y)
                   for n, i in enumerate(ids)))
    write_split_file(root / "splits.json", {"train": ids[:-1], "validation": [], "test": ids[-1:]})
    return ids


_SCREENSPOT_PLATFORMS = {"mobile": ("ios", "android"), "desktop": ("macos", "windows"), "web": ("shop", "forum")}


def write_screenspot_sample(root: str | os.PathLike, version: str = "v2", per_platform: int = 2, seed: int = 0,
                            width: int = 200, height: int = 120) -> list[Path]:
    """Write ScreenSpot v1/v2's layout: ``screenspot_<platform>[_v2].json`` and the screenshot directory.

    Samples have ``bbox`` = [x, y, w, h] in pixels; v1's images go to ``screenspot_imgs/``, v2's to
    ``screenspotv2_image/``.

    Returns:
        The JSON files written.
    """
    if version not in ("v1", "v2"):
        raise ValueError(f"version must be v1 or v2, got {version!r}")
    root = Path(root)
    image_dir = root / ("screenspot_imgs" if version == "v1" else "screenspotv2_image")
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    files = []
    for p, (platform, sources) in enumerate(_SCREENSPOT_PLATFORMS.items()):
        items = []
        for i in range(per_platform):
            x, y = rng.randint(0, width - 40), rng.randint(0, height - 20)
            w, h = rng.randint(8, 40), rng.randint(6, 20)
            name = f"{platform}_{seed}_{i}.png"
            (image_dir / name).write_bytes(_png(_screen(width, height, p * 100 + i, [(x, y, x + w, y + h)])))
            items.append({"img_filename": name, "bbox": [x, y, w, h], "instruction": f"open item {i} on {platform}",
                          "data_type": "text" if i % 2 == 0 else "icon", "data_source": sources[i % len(sources)]})
        path = root / (f"screenspot_{platform}.json" if version == "v1" else f"screenspot_{platform}_v2.json")
        path.write_text(json.dumps(items, indent=1), encoding="utf-8")
        files.append(path)
    return files


def write_screenspot_pro_sample(root: str | os.PathLike, per_app: int = 2, seed: int = 0, width: int = 320,
                                height: int = 200) -> list[Path]:
    """Write ScreenSpot-Pro's layout: ``annotations/<app>_<platform>.json`` and ``images/<app>_<platform>/``.

    Samples have ``bbox`` = [x1, y1, x2, y2] in pixels and ``img_size`` = [width, height].
    """
    root = Path(root)
    rng = random.Random(seed)
    apps = [("vscode", "macos", "Dev"), ("photoshop", "windows", "Creative"), ("excel", "windows", "Office")]
    files = []
    for a, (app, platform, group) in enumerate(apps):
        folder = f"{app}_{platform[:3]}"
        (root / "images" / folder).mkdir(parents=True, exist_ok=True)
        items = []
        for i in range(per_app):
            x1, y1 = rng.randint(0, width - 30), rng.randint(0, height - 20)
            x2, y2 = x1 + rng.randint(4, 30), y1 + rng.randint(4, 20)
            name = f"{folder}/{app}_{i}.png"
            (root / "images" / name).write_bytes(_png(_screen(width, height, a * 100 + i, [(x1, y1, x2, y2)])))
            items.append({"img_filename": name, "bbox": [x1, y1, x2, y2], "instruction": f"click tool {i} in {app}",
                          "instruction_cn": f"点击 {i}", "id": f"{app}_{i}", "application": app,
                          "platform": platform, "img_size": [width, height], "ui_type": "icon" if i % 2 else "text",
                          "group": group})
        path = root / "annotations" / f"{app}_{platform}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(items, indent=1), encoding="utf-8")
        files.append(path)
    return files


def write_screenspot_parquet_sample(path: str | os.PathLike, rows: int = 6, seed: int = 0, width: int = 200,
                                    height: int = 120) -> Path:
    """Write the Hugging Face parquet form of ScreenSpot (``rootsautomation/ScreenSpot``).

    Columns: ``file_name``, ``bbox`` ([x1, y1, x2, y2] normalised to [0, 1]), ``instruction``,
    ``data_type``, ``data_source``, ``image`` (struct ``{bytes, path}``, PNG).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    sources = ["ios", "android", "macos", "windows", "shop", "gitlab"]
    records = []
    for i in range(rows):
        x1, y1 = rng.randint(0, width - 40), rng.randint(0, height - 20)
        x2, y2 = x1 + rng.randint(5, 40), y1 + rng.randint(5, 20)
        name = f"sample_{i}.png"
        png = _png(_screen(width, height, i, [(x1, y1, x2, y2)]))
        records.append({"file_name": name, "bbox": [x1 / width, y1 / height, x2 / width, y2 / height],
                        "instruction": f"select item {i}", "data_type": "text" if i % 2 == 0 else "icon",
                        "data_source": sources[i % len(sources)], "image": {"bytes": png, "path": name}})
    schema = pa.schema([("file_name", pa.string()), ("bbox", pa.list_(pa.float64())), ("instruction", pa.string()),
                        ("data_type", pa.string()), ("data_source", pa.string()),
                        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())]))])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records, schema=schema), path)
    return path


def write_odyssey_sample(root: str | os.PathLike, episodes: int = 3, seed: int = 0, width: int = 108,
                         height: int = 240) -> list[str]:
    """Write GUI-Odyssey's layout: ``annotations/<episode_id>.json``, ``screenshots/*.png``, ``splits/*.json``.

    Coordinates in ``info`` are normalised to 0–1000; click steps carry ``sam2_bbox`` ([x1, y1, x2, y2]
    in the same 0–1000 frame) as in the dataset's newer release.

    Returns:
        The episode ids written.
    """
    root = Path(root)
    rng = random.Random(seed)
    for sub in ("annotations", "screenshots", "splits"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = []
    cycle = ["CLICK", "SCROLL", "TEXT", "LONG_PRESS", "CLICK_HOME", "CLICK_BACK"]
    for e in range(episodes):
        episode_id = f"{seed}{e:03d}{rng.randrange(16 ** 6):06x}"
        ids.append(episode_id)
        steps = []
        n = rng.randint(2, 6)
        for step in range(n):
            boxes = _boxes(rng)
            shot = f"{episode_id}_{step}.png"
            (root / "screenshots" / shot).write_bytes(
                _png(_screen(width, height, e * 100 + step, [_to_pixels(b, width, height) for b in boxes])))
            kind = "COMPLETE" if step == n - 1 else cycle[(e + step) % len(cycle)]
            y, x, h, w = boxes[0]
            item: dict[str, Any] = {"step": step, "screenshot": shot, "ps": ""}
            if kind in ("CLICK", "LONG_PRESS"):
                item.update(action=kind, info=[[round((x + w / 2) * 1000), round((y + h / 2) * 1000)]],
                            sam2_bbox=[round(x * 1000), round(y * 1000), round((x + w) * 1000), round((y + h) * 1000)])
            elif kind == "SCROLL":
                item.update(action="SCROLL", info=[[500, 800], [500, 200]], ps="[[500, 800], [500, 500], [500, 200]]")
            elif kind == "TEXT":
                item.update(action="TEXT", info=f"search term {e}")
            elif kind in ("CLICK_HOME", "CLICK_BACK"):
                item.update(action="CLICK", info="KEY_HOME" if kind == "CLICK_HOME" else "KEY_BACK")
            else:
                item.update(action="COMPLETE", info="")
            item["low_level_instruction"] = f"step {step}: {kind.lower()}"
            steps.append(item)
        annotation = {
            "episode_id": episode_id,
            "device_info": {"product": "sdk_gphone64", "release_version": "14", "sdk_version": "34",
                            "h": height, "w": width, "device_name": "Small Phone"},
            "task_info": {"category": "Multi_Apps", "app": ["Chrome", "Tasks"], "meta_task": "Search {} and note it.",
                          "task": f"Search item {e} and note it.",
                          "instruction": f"Use Chrome to search item {e}, then note it in Tasks."},
            "step_length": n, "steps": steps,
        }
        (root / "annotations" / f"{episode_id}.json").write_text(json.dumps(annotation, indent=1), encoding="utf-8")
    write_split_file(root / "splits" / "random_split.json",
                     {"train": [f"{i}.json" for i in ids[:-1]], "test": [f"{i}.json" for i in ids[-1:]]})
    return ids


def write_uis1_sample(root: str | os.PathLike, episodes: int = 3, seed: int = 0, width: int = 108,
                      height: int = 240) -> Path:
    """Write UI-S1's AndroidControl trajectory JSONL (``android_control_evaluation_std.jsonl`` layout).

    One line per episode ``{"goal", "is_successful", "episode_id", "steps": [{"action_content",
    "screenshot", "step_instruction", "check_options"}]}``; coordinates are pixels of the screenshot;
    ``check_options.candidate_bbox`` lists [x1, y1, x2, y2] boxes. Screenshots go to ``images/``.

    Returns:
        The JSONL file's path.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    cycle = ["click", "swipe", "type", "open", "system_button", "wait", "long_press"]
    path = root / "android_control_evaluation_std.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for e in range(episodes):
            episode_id = seed * 1000 + e
            steps = []
            for step in range(rng.randint(2, 5)):
                boxes = [_to_pixels(b, width, height) for b in _boxes(rng)]
                shot = f"{episode_id}_{step}.png"
                (root / "images" / shot).write_bytes(_png(_screen(width, height, e * 100 + step, boxes)))
                kind = cycle[(e + step) % len(cycle)]
                x1, y1, x2, y2 = boxes[0]
                content: dict[str, Any] = {"action": kind}
                if kind in ("click", "long_press"):
                    content["coordinate"] = [(x1 + x2) // 2, (y1 + y2) // 2]
                elif kind == "swipe":
                    content.update(coordinate=[width // 2, height * 4 // 5], coordinate2=[width // 2, height // 5])
                elif kind in ("type", "open"):
                    content["text"] = "hello" if kind == "type" else "Settings"
                elif kind == "system_button":
                    content["button"] = "Back"
                elif kind == "wait":
                    content["time"] = 2
                check = dict(content, candidate_bbox=[list(boxes[0])] if kind in ("click", "long_press") else [])
                steps.append({"action_content": content, "screenshot": f"/datasets/AndroidControl/images/{shot}",
                              "step_instruction": f"{kind} now", "check_options": check})
            f.write(json.dumps({"goal": f"finish task {episode_id}", "is_successful": True,
                                "episode_id": episode_id, "steps": steps}) + "\n")
    return path
