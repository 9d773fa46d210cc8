"""``guiagent data convert/info/sample``: the entry points users run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from guiagent.cli import app
from guiagent.data import samples
from guiagent.data.store import iter_episodes, iter_samples, read_manifest
from guiagent.data.tfrecord import iter_records


def _guiagent(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "guiagent", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_convert_aitw_subprocess_writes_store_and_reports_corrupt_records(tmp_path):
    src = tmp_path / "general" / "general-00000-of-00001"
    ids = samples.write_aitw_sample(src, episodes=3, seed=1)
    split = samples.write_split_file(tmp_path / "split.json", {"train": ids[:2], "test": ids[2:]})
    dst = tmp_path / "store"
    done = _guiagent("data", "convert", "aitw", src.parent, dst, "--split-file", split, "--split", "train")
    assert done.returncode == 0, done.stderr
    manifest = read_manifest(dst)
    assert manifest["dataset"] == "aitw" and manifest["split"] == "train" and manifest["episodes"] == 2
    assert json.loads(done.stdout) == manifest
    episodes = list(iter_episodes(dst))
    assert [t.episode_id for t in episodes] == ids[:2]
    assert manifest["steps"] == sum(len(t) for t in episodes)
    for step in episodes[0].steps:
        assert (dst / step.observation.screenshot_path).is_file()
    assert "ep" in done.stderr  # the tqdm progress bar

    samples.corrupt_tfrecord(src, 0)
    failed = _guiagent("data", "convert", "aitw", src, tmp_path / "strict")
    assert failed.returncode == 1
    assert f"file {src}, record 0" in failed.stderr and "CRC" in failed.stderr
    skipped = _guiagent("data", "convert", "aitw", src, tmp_path / "lenient", "--skip-invalid")
    assert skipped.returncode == 0, skipped.stderr
    lenient = read_manifest(tmp_path / "lenient")
    assert lenient["skipped_invalid"] == 2 and lenient["episodes"] == 2  # the record, then its broken episode
    assert "skipped: file" in skipped.stderr


@pytest.mark.parametrize(("kind", "dataset", "extra", "unit"), [
    ("aitw_seeclick", "aitw_seeclick", ["--split", "test"], "episodes"),
    ("androidcontrol", "androidcontrol", [], "episodes"),
    ("odyssey", "odyssey", [], "episodes"),
    ("uis1", "uis1", ["--images", "{src}/images"], "episodes"),
    ("screenspot_v1", "screenspot_v1", [], "samples"),
    ("screenspot_v2", "screenspot_v2", [], "samples"),
    ("screenspot_pro", "screenspot_pro", [], "samples"),
    ("screenspot_parquet", "screenspot_v2", [], "samples"),
])
def test_sample_then_convert_then_info(tmp_path, kind, dataset, extra, unit):
    runner = CliRunner()
    src = tmp_path / "src"
    result = runner.invoke(app, ["data", "sample", kind, str(src), "--episodes", "2"])
    assert result.exit_code == 0, result.output
    if kind == "aitw_seeclick":
        src = src / "aitw_data_test.json"
    elif kind == "uis1":
        src = src / "android_control_evaluation_std.jsonl"
    args = [a.format(src=src.parent) for a in extra]
    dst = tmp_path / "store"
    result = runner.invoke(app, ["data", "convert", dataset, str(src), str(dst), "--limit", "2", *args])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(dst)
    assert manifest[unit] == 2
    units = list(iter_samples(dst)) if unit == "samples" else list(iter_episodes(dst))
    assert len(units) == 2
    info = runner.invoke(app, ["data", "info", str(dst), "--actions"])
    assert info.exit_code == 0 and f'"{unit}": 2' in info.output


def test_convert_refuses_existing_store_and_wrong_options(tmp_path):
    runner = CliRunner()
    samples.write_odyssey_sample(tmp_path / "src", episodes=1)
    assert runner.invoke(app, ["data", "convert", "odyssey", str(tmp_path / "src"), str(tmp_path / "s")]).exit_code == 0
    again = runner.invoke(app, ["data", "convert", "odyssey", str(tmp_path / "src"), str(tmp_path / "s")])
    assert again.exit_code == 1 and "already holds a store" in again.output
    wrong = runner.invoke(app, ["data", "convert", "uis1", str(tmp_path / "x.jsonl"), str(tmp_path / "t"),
                                "--split-file", str(tmp_path / "y.json"), "--split", "test"])
    assert wrong.exit_code == 1 and "takes no split" in wrong.output
    unfiltered = runner.invoke(app, ["data", "convert", "odyssey", str(tmp_path / "src"), str(tmp_path / "u"),
                                     "--split", "test"])
    assert unfiltered.exit_code == 1 and "--split needs --split-file" in unfiltered.output
    missing = runner.invoke(app, ["data", "info", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "no manifest" in missing.output


def test_convert_overwrite_that_fails_midway_leaves_the_old_store_intact(tmp_path):
    runner = CliRunner()
    src = tmp_path / "general" / "general-00000-of-00001"
    samples.write_aitw_sample(src, episodes=3, seed=1)
    dst = tmp_path / "store"
    assert runner.invoke(app, ["data", "convert", "aitw", str(src), str(dst), "--limit", "1"]).exit_code == 0
    old_manifest = read_manifest(dst)
    old_files = {p.relative_to(dst): p.read_bytes() for p in dst.rglob("*") if p.is_file()}
    records = sum(1 for _ in iter_records(src))
    samples.corrupt_tfrecord(src, records - 1)  # the last step: two episodes convert before it fails

    failed = runner.invoke(app, ["data", "convert", "aitw", str(src), str(dst), "--overwrite"])
    assert failed.exit_code == 1 and f"record {records - 1}" in failed.output and "CRC" in failed.output
    assert read_manifest(dst) == old_manifest
    assert {p.relative_to(dst): p.read_bytes() for p in dst.rglob("*") if p.is_file()} == old_files
    assert sorted(os.listdir(tmp_path)) == ["general", "store"]  # nothing half-written left beside it


def test_convert_refuses_a_destination_that_holds_its_source(tmp_path):
    runner = CliRunner()
    jsonl = samples.write_uis1_sample(tmp_path / "data", episodes=1)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for dst, extra in ((tmp_path / "data", []), (tmp_path, []), (jsonl, []),
                       (tmp_path / "data", ["--images", str(tmp_path / "data" / "images")])):
        result = runner.invoke(app, ["data", "convert", "uis1", str(jsonl), str(dst), "--overwrite", *extra])
        assert result.exit_code == 1 and f"the destination {dst} is or contains the source" in result.output
    # The screenshots the reader needs, inside the destination: refused too, even though the source is not.
    elsewhere = tmp_path / "copy.jsonl"
    elsewhere.write_bytes(jsonl.read_bytes())
    result = runner.invoke(app, ["data", "convert", "uis1", str(elsewhere), str(tmp_path / "data"), "--overwrite",
                                 "--images", str(tmp_path / "data" / "images")])
    assert result.exit_code == 1 and "contains the screenshot directory" in result.output
    elsewhere.unlink()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_failed_first_convert_leaves_no_directory(tmp_path):
    runner = CliRunner()
    src = tmp_path / "general" / "general-00000-of-00001"
    samples.write_aitw_sample(src, episodes=2, seed=1)
    samples.corrupt_tfrecord(src, 0)
    result = runner.invoke(app, ["data", "convert", "aitw", str(src), str(tmp_path / "out" / "aitw")])
    assert result.exit_code == 1 and "CRC" in result.output
    assert sorted(os.listdir(tmp_path)) == ["general"]


def test_convert_refuses_a_repeated_episode_id_or_skips_and_names_it(tmp_path):
    jsonl = samples.write_uis1_sample(tmp_path / "src", episodes=3, seed=1)
    lines = jsonl.read_text().splitlines()
    jsonl.write_text("\n".join([*lines, lines[0]]) + "\n")  # episode 1000 again, as line 4
    images = tmp_path / "src" / "images"
    strict = _guiagent("data", "convert", "uis1", jsonl, tmp_path / "strict", "--images", images)
    assert strict.returncode == 1
    assert "episode id '1000' appears twice" in strict.stderr and not (tmp_path / "strict").exists()
    lenient = _guiagent("data", "convert", "uis1", jsonl, tmp_path / "lenient", "--images", images, "--skip-invalid")
    assert lenient.returncode == 0, lenient.stderr
    manifest = read_manifest(tmp_path / "lenient")
    assert manifest["episodes"] == 3 and manifest["skipped_invalid"] == 1
    assert [t.episode_id for t in iter_episodes(tmp_path / "lenient")] == ["1000", "1001", "1002"]
    assert "skipped: file" in lenient.stderr and "episode id '1000' appears twice" in lenient.stderr


def test_skip_invalid_says_how_many_it_did_not_list(tmp_path):
    from guiagent.data.base import MAX_KEPT_ERRORS

    jsonl = samples.write_uis1_sample(tmp_path / "src", episodes=1, seed=1)
    jsonl.write_text(jsonl.read_text() + "{broken\n" * (MAX_KEPT_ERRORS + 5))
    result = CliRunner().invoke(app, ["data", "convert", "uis1", str(jsonl), str(tmp_path / "store"), "--images",
                                      str(tmp_path / "src" / "images"), "--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert result.output.count("skipped: file") == MAX_KEPT_ERRORS
    assert "skipped: 5 more, not listed" in result.output
