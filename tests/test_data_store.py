"""The episode store: round trip, manifest, streaming, corrupt lines."""

from __future__ import annotations

import inspect
import json

import pytest
from PIL import Image

from guiagent.data.store import EpisodeWriter, iter_episodes, iter_samples, read_manifest, step_image_path
from guiagent.errors import DataError
from guiagent.types import Action, Observation, Step, Trajectory


def _trajectory(eid: str, n: int) -> Trajectory:
    steps = tuple(
        Step(index=i, observation=Observation(width=8, height=4, screenshot_path=step_image_path(eid, i),
                                               instruction="goal"),
             action=Action.click(1.0, 2.0) if i % 2 == 0 else None, info={"aitw": {"action_type": 4}})
        for i in range(n))
    return Trajectory(episode_id=eid, task_id=eid, seed=0, env_id="aitw", policy_version="dataset", steps=steps,
                      instruction="goal")


def test_round_trip_writes_manifest_images_and_episodes(tmp_path):
    with EpisodeWriter(tmp_path / "s", "aitw", source="src", split="test") as w:
        for eid, n in (("e/1", 2), ("e2", 3)):
            t = _trajectory(eid, n)
            w.add(t, {s.observation.screenshot_path: Image.new("RGB", (8, 4), "red") for s in t.steps})
        w.skipped_invalid += 2
    manifest = read_manifest(tmp_path / "s")
    assert manifest == {"format": "guiagent-episodes", "version": 1, "dataset": "aitw", "source": "src",
                        "split": "test", "episodes": 2, "steps": 5, "samples": 0, "skipped_invalid": 2}
    episodes = list(iter_episodes(tmp_path / "s"))
    assert [e.episode_id for e in episodes] == ["e/1", "e2"]
    assert episodes[0] == _trajectory("e/1", 2)
    img = episodes[0].steps[1].observation.image(root=str(tmp_path / "s"))
    assert img.size == (8, 4) and img.getpixel((0, 0)) == (255, 0, 0)
    assert episodes[0].steps[0].observation.screenshot_path == "images/e_1/0.png"


def test_iter_episodes_is_a_generator_and_corrupt_line_names_file_and_line(tmp_path):
    with EpisodeWriter(tmp_path, "aitw", source="x") as w:
        w.add(_trajectory("a", 1))
        w.add(_trajectory("b", 1))
    path = tmp_path / "episodes.jsonl"
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + lines[1][:-5] + "\n")
    it = iter_episodes(tmp_path)
    assert inspect.isgenerator(it)
    assert next(it).episode_id == "a"
    with pytest.raises(DataError) as err:
        next(it)
    assert err.value.record == 2 and err.value.file.endswith("episodes.jsonl")


def test_failed_conversion_leaves_the_destination_as_it_was(tmp_path):
    # A failed first conversion creates nothing: no store, no empty directory, not the parents it made.
    with pytest.raises(RuntimeError):
        with EpisodeWriter(tmp_path / "new" / "s", "aitw", source="x") as w:
            w.add(_trajectory("a", 1), {step_image_path("a", 0): b"png"})
            raise RuntimeError("reader crashed")
    assert list(tmp_path.iterdir()) == []

    with EpisodeWriter(tmp_path / "s", "aitw", source="old") as w:
        w.add(_trajectory("old", 1), {step_image_path("old", 0): b"old"})
    with pytest.raises(FileExistsError, match="already holds a store"):
        EpisodeWriter(tmp_path / "s", "aitw", source="x")
    # A failed overwrite leaves the old store whole, screenshots included.
    with pytest.raises(RuntimeError):
        with EpisodeWriter(tmp_path / "s", "aitw", source="new", overwrite=True) as w:
            w.add(_trajectory("new", 1), {step_image_path("new", 0): b"new"})
            raise RuntimeError("reader crashed")
    assert read_manifest(tmp_path / "s")["source"] == "old"
    assert [t.episode_id for t in iter_episodes(tmp_path / "s")] == ["old"]
    assert (tmp_path / "s" / "images" / "old" / "0.png").read_bytes() == b"old"
    # A successful one replaces all of it: the old screenshots do not linger beside the new store.
    with EpisodeWriter(tmp_path / "s", "aitw", source="new", overwrite=True):
        pass
    assert not (tmp_path / "s" / "images").exists()
    assert read_manifest(tmp_path / "s")["episodes"] == 0
    assert list(iter_episodes(tmp_path / "s")) == []
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no hidden .partial or .old directory left


def test_a_directory_that_is_not_a_store_is_never_replaced(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not part of a store .notes.txt"):
        EpisodeWriter(tmp_path / "s", "aitw", source="x", overwrite=True)
    assert (tmp_path / "s" / "notes.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    with EpisodeWriter(tmp_path / "empty", "aitw", source="x") as w:  # an empty directory is fine
        w.add(_trajectory("a", 1))
    assert read_manifest(tmp_path / "empty")["episodes"] == 1


def test_samples_round_trip_and_validation(tmp_path):
    with EpisodeWriter(tmp_path, "screenspot", source="x") as w:
        w.add_sample({"sample_id": "0", "image": "images/a.png", "instruction": "ok", "bbox_xyxy": [1, 2, 3, 4],
                      "width": 10, "height": 10, "benchmark": "screenspot_v2", "data_type": "icon"},
                     {"images/a.png": Image.new("RGB", (10, 10))})
        with pytest.raises(ValueError, match="unknown"):
            w.add_sample({"sample_id": "1", "bogus": 1})
        with pytest.raises(ValueError, match="do not mix"):
            w.add(_trajectory("a", 1))
    (sample,) = iter_samples(tmp_path)
    assert sample["bbox_xyxy"] == [1, 2, 3, 4] and sample["group"] is None and sample["data_type"] == "icon"
    assert read_manifest(tmp_path)["samples"] == 1
    (tmp_path / "samples.jsonl").write_text(json.dumps({**sample, "bbox_xyxy": [1, 2]}) + "\n")
    with pytest.raises(DataError) as err:
        list(iter_samples(tmp_path))
    assert err.value.record == 1


@pytest.mark.parametrize("bad", ["../escape.png", "/abs.png", "images/../../x.png"])
def test_image_paths_cannot_leave_the_store(tmp_path, bad):
    with EpisodeWriter(tmp_path / "s", "aitw", source="x") as w:
        with pytest.raises(ValueError, match="inside the store"):
            w.add(_trajectory("a", 1), {bad: b"png"})
    assert not (tmp_path / "escape.png").exists()


def test_a_repeated_id_is_refused_before_anything_of_it_is_written(tmp_path):
    # Evaluation keys predictions by id: a second episode "a" would have scored a's predictions twice.
    red, blue = Image.new("RGB", (8, 4), "red"), Image.new("RGB", (8, 4), "blue")
    with EpisodeWriter(tmp_path / "s", "aitw", source="raw") as w:
        w.add(_trajectory("a", 1), {step_image_path("a", 0): red})
        with pytest.raises(DataError, match="episode id 'a' appears twice") as err:
            w.add(_trajectory("a", 2), {step_image_path("a", 0): blue, step_image_path("a", 1): blue})
        assert err.value.file == "raw" and err.value.record == "episode a"
        # "a/b" and "a_b" are two ids but one image folder: the second would overwrite the first's screenshots.
        w.add(_trajectory("a/b", 1), {step_image_path("a/b", 0): red})
        with pytest.raises(DataError, match="images/a_b/0.png was written for an earlier episode"):
            w.add(_trajectory("a_b", 1), {step_image_path("a_b", 0): blue})
    assert [t.episode_id for t in iter_episodes(tmp_path / "s")] == ["a", "a/b"]
    assert read_manifest(tmp_path / "s")["episodes"] == 2
    assert Image.open(tmp_path / "s" / step_image_path("a", 0)).getpixel((0, 0)) == (255, 0, 0)
    assert not (tmp_path / "s" / step_image_path("a", 1)).exists()
    sample = {"sample_id": "0", "image": "images/x.png", "instruction": "ok", "bbox_xyxy": [1, 2, 3, 4],
              "width": 10, "height": 10, "benchmark": "screenspot_v2"}
    with EpisodeWriter(tmp_path / "samples", "screenspot", source="raw") as w:
        w.add_sample(sample)
        with pytest.raises(DataError, match="sample id '0' appears twice"):
            w.add_sample(sample)


def test_readers_refuse_a_store_that_repeats_an_id(tmp_path):
    # Stores written before the writer refused repeats (or by hand) are read with the same rule.
    with EpisodeWriter(tmp_path / "s", "aitw", source="x") as w:
        w.add(_trajectory("a", 1))
        w.add(_trajectory("b", 1))
    path = tmp_path / "s" / "episodes.jsonl"
    path.write_text(path.read_text() + path.read_text().splitlines()[0] + "\n")
    with pytest.raises(DataError, match="episode id 'a' repeats line 1") as err:
        list(iter_episodes(tmp_path / "s"))
    assert err.value.record == 3 and err.value.file == str(path)
    with EpisodeWriter(tmp_path / "ss", "screenspot", source="x") as w:
        w.add_sample({"sample_id": "7", "image": "images/x.png", "instruction": "ok", "bbox_xyxy": [1, 2, 3, 4],
                      "width": 10, "height": 10, "benchmark": "screenspot_v2"})
    path = tmp_path / "ss" / "samples.jsonl"
    path.write_text(path.read_text() * 2)
    with pytest.raises(DataError, match="sample id '7' repeats line 1") as err:
        list(iter_samples(tmp_path / "ss"))
    assert err.value.record == 2


def test_bytes_that_are_not_utf8_are_a_data_error_naming_the_line(tmp_path):
    from guiagent.data.store import iter_json_lines

    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"a": 1}\n\xff\xfe\x00binary\n{"a": 3}\n')
    with pytest.raises(DataError, match="not UTF-8 text") as err:
        list(iter_json_lines(path))
    assert err.value.file == str(path) and err.value.record == 2
    skipped = []
    assert list(iter_json_lines(path, on_error=skipped.append)) == [(1, {"a": 1}), (3, {"a": 3})]
    assert [e.record for e in skipped] == [2]
