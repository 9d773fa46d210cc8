"""Every reader on sample files in its benchmark's official format."""

from __future__ import annotations

import inspect
import io
import json

import numpy as np
import pytest
from PIL import Image

from guiagent.data import samples
from guiagent.data.aitw import read_aitw, read_aitw_seeclick
from guiagent.data.androidcontrol import read_androidcontrol
from guiagent.data.base import Skips
from guiagent.data.odyssey import read_odyssey
from guiagent.data.screenspot import read_screenspot
from guiagent.data.tfrecord import iter_records, make_example, parse_example, write_records
from guiagent.data.uis1 import read_uis1
from guiagent.errors import DataError
from guiagent.types import ActionType, Direction, SystemButton


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


# --- AITW -----------------------------------------------------------------------------------------------


@pytest.fixture
def aitw_file(tmp_path):
    path = tmp_path / "general" / "general-00000-of-00001"
    ids = samples.write_aitw_sample(path, episodes=4, seed=3, width=32, height=64)
    return path, ids


def test_aitw_groups_steps_into_episodes_with_raw_fields_and_pixels(aitw_file):
    path, ids = aitw_file
    records = [parse_example(d) for _, d in iter_records(path)]
    episodes = list(read_aitw(path.parent, skips=Skips()))
    assert [t.episode_id for t, _ in episodes] == ids
    assert sum(len(t) for t, _ in episodes) == len(records)
    trajectory, images = episodes[0]
    assert trajectory.env_id == "aitw" and trajectory.policy_version == "dataset" and trajectory.seed == 0
    assert trajectory.info == {"aitw": {"subset": "general"}}  # taken from the directory name
    first = records[0]
    step = trajectory.steps[0]
    assert trajectory.instruction == step.observation.instruction == first["goal_info"][0].decode()
    aitw = step.info["aitw"]
    assert aitw["touch_yx"] == first["results/yx_touch"]  # float32 values, exactly as stored
    flat = first["image/ui_annotations_positions"]
    assert aitw["annotations_yxhw"] == [flat[i:i + 4] for i in range(0, len(flat), 4)]
    assert aitw["episode_id"] == ids[0] and aitw["android_api_level"] == 33
    # image/encoded is raw uint8 pixels; the store holds the same pixels as PNG.
    raw = np.frombuffer(first["image/encoded"][0], dtype=np.uint8).reshape(64, 32, 3)
    assert np.array_equal(_pixels(images[step.observation.screenshot_path]), raw)
    assert (step.observation.width, step.observation.height) == (32, 64)


def test_aitw_actions_are_device_pixels(aitw_file):
    path, _ = aitw_file
    steps = [s for t, _ in read_aitw(path, skips=Skips()) for s in t.steps]
    taps = [s for s in steps if s.info["aitw"]["action_type"] == 4 and s.info["aitw"]["touch_yx"] == s.info["aitw"]["lift_yx"]]
    assert taps, "the sample cycles through taps"
    y, x = taps[0].info["aitw"]["touch_yx"]
    assert taps[0].action.type is ActionType.CLICK
    assert taps[0].action.point == pytest.approx((x * 32, y * 64))
    assert any(s.action.type is ActionType.SWIPE for s in steps)
    assert steps[-1].action.type is ActionType.TERMINATE


def test_aitw_official_split_filters_episodes(aitw_file, tmp_path):
    path, ids = aitw_file
    split = samples.write_split_file(tmp_path / "split.json", {"train": ids[:3], "test": ids[3:]})
    got = [t.episode_id for t, _ in read_aitw(path, skips=Skips(), split_file=str(split), split="test")]
    assert got == ids[3:]
    with pytest.raises(DataError, match="no split 'dev'"):
        list(read_aitw(path, skips=Skips(), split_file=str(split), split="dev"))


def test_aitw_reader_streams(aitw_file):
    # The last record is corrupt: a reader that loaded the file first would fail before yielding anything.
    path, ids = aitw_file
    n = sum(1 for _ in iter_records(path))
    samples.corrupt_tfrecord(path, n - 1)
    reader = read_aitw(path, skips=Skips())
    assert inspect.isgenerator(reader)
    assert next(reader)[0].episode_id == ids[0]
    with pytest.raises(DataError):
        list(reader)


def test_aitw_corrupt_record_names_file_and_record_or_is_skipped_and_counted(aitw_file):
    path, ids = aitw_file
    samples.corrupt_tfrecord(path, 1)  # a step of the first episode
    with pytest.raises(DataError) as err:
        list(read_aitw(path, skips=Skips()))
    assert err.value.file == str(path) and err.value.record == 1
    skips = Skips(skip_invalid=True)
    got = [t.episode_id for t, _ in read_aitw(path, skips=skips)]
    assert got == ids[1:]  # the episode that lost a step is dropped too
    assert skips.count == 2 and "incomplete episode" in skips.errors[1]


def test_aitw_bad_pixels_are_a_data_error(tmp_path):
    records = samples.aitw_step_examples("7", "goal", 2, seed=0, width=8, height=8)
    # Re-encode step 0 with a wrong image/height so the raw pixel count no longer matches.
    features = parse_example(records[0])
    features["image/height"] = [9]
    write_records(tmp_path / "f", [make_example(features), records[1]])
    with pytest.raises(DataError, match="raw uint8") as err:
        list(read_aitw(tmp_path / "f", skips=Skips()))
    assert err.value.record == 0


def test_aitw_missing_feature_is_skipped_and_counted(tmp_path):
    records = samples.aitw_step_examples("7", "goal", 2, seed=0, width=8, height=8)
    records += samples.aitw_step_examples("8", "goal", 2, seed=1, width=8, height=8)
    features = parse_example(records[0])
    del features["goal_info"]
    write_records(tmp_path / "f", [make_example(features), *records[1:]])
    with pytest.raises(DataError, match="missing feature.*goal_info"):
        list(read_aitw(tmp_path / "f", skips=Skips()))
    skips = Skips(skip_invalid=True)
    assert [t.episode_id for t, _ in read_aitw(tmp_path / "f", skips=skips)] == ["8"]
    assert skips.count == 2  # the record, then episode 7 without its step 0


def test_aitw_seeclick_split(tmp_path):
    path = samples.write_aitw_seeclick_sample(tmp_path, episodes_per_subset=1)
    data = json.loads(path.read_text())
    episodes = list(read_aitw_seeclick(path, skips=Skips()))
    assert len(episodes) == 5
    assert {t.info["aitw"]["subset"] for t, _ in episodes} == {"general", "single", "web_shopping", "install",
                                                               "google_apps"}
    first = data["general"][0][0]
    step = episodes[0][0].steps[0]
    assert step.info["aitw"]["touch_yx"] == [first["touch"][1], first["touch"][0]]  # SeeClick stores (x, y)
    assert step.action.point == pytest.approx((first["touch"][0] * 64, first["touch"][1] * 128))
    scroll = episodes[0][0].steps[1]
    assert scroll.info["aitw"]["action_type_text"] == "scroll down"
    assert scroll.action.type is ActionType.SWIPE and scroll.action.swipe_direction() is Direction.UP
    (tmp_path / "aitw_images" / (data["install"][0][1]["img_filename"] + ".png")).unlink()
    with pytest.raises(DataError, match="missing screenshot") as err:
        list(read_aitw_seeclick(path, skips=Skips()))
    assert err.value.file == str(path) and err.value.record == "install[0]"
    skips = Skips(skip_invalid=True)
    assert len(list(read_aitw_seeclick(path, skips=skips))) == 4 and skips.count == 1


# --- AndroidControl -------------------------------------------------------------------------------------


def test_androidcontrol_episodes_actions_and_a11y(tmp_path):
    ids = samples.write_androidcontrol_sample(tmp_path, episodes=3)
    episodes = list(read_androidcontrol(tmp_path, skips=Skips()))
    assert [t.episode_id for t, _ in episodes] == [str(i) for i in ids]
    record = parse_example(next(iter_records(tmp_path / "android_control-00000-of-00001"))[1])
    trajectory, images = episodes[0]
    assert len(trajectory) == len(record["screenshots"]) - 1  # one action between consecutive screenshots
    step = trajectory.steps[1]
    original = json.loads(record["actions"][1])
    assert step.info["androidcontrol"] == {"action": original, "step_instruction": record["step_instructions"][1].decode()}
    assert step.observation.extras["step_instruction"] == record["step_instructions"][1].decode()
    assert images[step.observation.screenshot_path] == record["screenshots"][1]
    assert original["action_type"] == "click" and step.action.point == (original["x"], original["y"])
    forest = json.loads(step.observation.a11y_tree)
    texts = [n.get("text") for n in forest["windows"][0]["tree"]["nodes"]]
    assert "button 0" in texts
    test_only = read_androidcontrol(tmp_path, skips=Skips(), split_file=str(tmp_path / "splits.json"), split="test")
    assert [t.episode_id for t, _ in test_only] == [str(ids[-1])]


def test_androidcontrol_action_count_mismatch_is_a_data_error(tmp_path):
    features = parse_example(samples.androidcontrol_example(5, 2, seed=0))
    features["actions"] = features["actions"][:1]
    write_records(tmp_path / "f", [make_example(features)])
    with pytest.raises(DataError, match="one action fewer") as err:
        list(read_androidcontrol(tmp_path / "f", skips=Skips()))
    assert err.value.file == str(tmp_path / "f") and err.value.record == 0


# --- GUI-Odyssey, UI-S1 ---------------------------------------------------------------------------------


def test_odyssey_keeps_sam2_bbox_and_converts_0_1000_coordinates(tmp_path):
    ids = samples.write_odyssey_sample(tmp_path, episodes=3)
    episodes = list(read_odyssey(tmp_path, skips=Skips()))
    assert sorted(t.episode_id for t, _ in episodes) == sorted(ids)
    clicks = [s for t, _ in episodes for s in t.steps if s.info["odyssey"]["action"] == "CLICK"
              and isinstance(s.info["odyssey"]["info"], list)]
    assert clicks and "sam2_bbox" in clicks[0].info["odyssey"]
    x, y = clicks[0].info["odyssey"]["info"][0]
    assert clicks[0].action.point == pytest.approx((x * 108 / 1000, y * 240 / 1000))
    # The clicked element's box is the step's target, in device pixels like the action.
    x1, y1, x2, y2 = clicks[0].info["odyssey"]["sam2_bbox"]
    (box,) = clicks[0].target_boxes
    assert box == pytest.approx((x1 * 0.108, y1 * 0.24, x2 * 0.108, y2 * 0.24))
    steps = [s for t, _ in episodes for s in t.steps]
    assert all(bool(s.target_boxes) == ("sam2_bbox" in s.info["odyssey"]) for s in steps)
    keys = [s for t, _ in episodes for s in t.steps if s.info["odyssey"]["info"] in ("KEY_HOME", "KEY_BACK")]
    assert keys and keys[0].action.button in (SystemButton.HOME, SystemButton.BACK)
    split = tmp_path / "splits" / "random_split.json"
    assert [t.episode_id for t, _ in read_odyssey(tmp_path, skips=Skips(), split_file=str(split), split="test")] == ids[-1:]
    (tmp_path / "annotations" / f"{ids[0]}.json").write_text("{not json")
    with pytest.raises(DataError) as err:
        list(read_odyssey(tmp_path, skips=Skips()))
    assert err.value.file.endswith(f"{ids[0]}.json")


def test_uis1_jsonl_resolves_screenshots_and_keeps_check_options(tmp_path):
    path = samples.write_uis1_sample(tmp_path, episodes=3)
    with pytest.raises(DataError, match="missing screenshot") as err:
        list(read_uis1(path, skips=Skips()))  # the released paths are absolute paths of another machine
    assert err.value.record == 1
    episodes = list(read_uis1(path, skips=Skips(), images=str(tmp_path / "images")))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [t.episode_id for t, _ in episodes] == [str(line["episode_id"]) for line in lines]
    raw = lines[0]["steps"][0]
    step = episodes[0][0].steps[0]
    assert step.info["uis1"]["check_options"] == raw["check_options"]
    assert step.target_boxes == tuple(tuple(b) for b in raw["check_options"]["candidate_bbox"]) != ()
    assert raw["action_content"]["action"] == "click"
    assert step.action.type is ActionType.CLICK and step.action.point == tuple(raw["action_content"]["coordinate"])
    swipe = episodes[0][0].steps[1]
    assert swipe.action.type is ActionType.SWIPE and swipe.action.swipe_direction() is Direction.UP
    path.write_text(path.read_text() + "{broken\n")
    skips = Skips(skip_invalid=True)
    assert len(list(read_uis1(path, skips=skips, images=str(tmp_path / "images")))) == 3 and skips.count == 1


# --- ScreenSpot -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_screenspot_xywh_becomes_xyxy_pixels(tmp_path, version):
    files = samples.write_screenspot_sample(tmp_path, version=version, per_platform=2)
    got = list(read_screenspot(tmp_path, skips=Skips(), benchmark=f"screenspot_{version}"))
    assert len(got) == 6
    raw = json.loads(files[0].read_text())[1]  # screenspot_mobile*.json
    sample, images = next((s, i) for s, i in got if s["sample_id"] == f"{files[0].stem}:1")
    x, y, w, h = raw["bbox"]
    assert sample["bbox_xyxy"] == [x, y, x + w, y + h]
    assert sample["platform"] == "mobile" and sample["data_type"] == raw["data_type"]
    assert sample["benchmark"] == f"screenspot_{version}" and (sample["width"], sample["height"]) == (200, 120)
    assert list(images) == [sample["image"]]


def test_screenspot_pro_and_img_size_check(tmp_path):
    files = samples.write_screenspot_pro_sample(tmp_path, per_app=2)
    got = {s["sample_id"]: s for s, _ in read_screenspot(tmp_path, skips=Skips(), benchmark="screenspot_pro")}
    assert len(got) == 6
    raw = json.loads(files[0].read_text())[0]
    sample = got[raw["id"]]
    assert sample["bbox_xyxy"] == raw["bbox"] and sample["group"] == raw["group"]
    assert sample["application"] == raw["application"] and sample["data_type"] == raw["ui_type"]
    items = json.loads(files[1].read_text())
    items[0]["img_size"] = [1, 1]
    files[1].write_text(json.dumps(items))
    with pytest.raises(DataError, match="img_size") as err:
        list(read_screenspot(tmp_path, skips=Skips(), benchmark="screenspot_pro"))
    assert err.value.file == str(files[1]) and err.value.record == 0
    skips = Skips(skip_invalid=True)
    assert len(list(read_screenspot(tmp_path, skips=skips, benchmark="screenspot_pro"))) == 5 and skips.count == 1


def test_screenspot_parquet_normalised_boxes_become_pixels(tmp_path):
    path = samples.write_screenspot_parquet_sample(tmp_path / "test.parquet", rows=4)
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    got = list(read_screenspot(path, skips=Skips(), benchmark="screenspot_v1"))
    sample, images = got[0]
    x1, y1, x2, y2 = rows[0]["bbox"]
    assert sample["bbox_xyxy"] == pytest.approx([x1 * 200, y1 * 120, x2 * 200, y2 * 120])
    assert sample["platform"] == "mobile" and images[sample["image"]] == rows[0]["image"]["bytes"]
    assert [s["platform"] for s, _ in got] == ["mobile", "mobile", "desktop", "desktop"]
