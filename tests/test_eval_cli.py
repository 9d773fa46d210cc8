"""`guiagent eval ...` as a subprocess, on stores converted from sample files in each official format.

Predictions are built from the store's own expert actions so that the expected numbers are known by
construction: per step, cycling through (wrong type, missing, expert as model text, expert as action
JSON), with one unparseable response.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from guiagent.actions import ActionSpaceConfig, format_action, model_geometry
from guiagent.data import samples
from guiagent.data.convert import convert
from guiagent.data.store import iter_episodes, iter_samples
from guiagent.types import Action, ActionType

SPACE = ActionSpaceConfig()  # qwen25vl_mobile, factor 28: the CLI's defaults


def run_eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "guiagent", "eval", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def wrong_for(action: Action) -> Action:
    """An action of another type than ``action`` (wrong under every protocol)."""
    return Action.system_button("home") if action.type is ActionType.TYPE else Action.type_text("zzz")


def expert_predictions(root, path, level=None):
    """Write predictions for every episode step; return {"ok", "total", per-episode bookkeeping}."""
    lines, ok, total, per_group = [], 0, 0, {}
    for trajectory in iter_episodes(root):
        for step in trajectory.steps:
            total += 1
            obs, expert = step.observation, step.action
            key = {
                "episode_id": trajectory.episode_id,
                "step": step.index,
                **({"level": level} if level else {}),
            }
            slot = total % 4
            group = per_group.setdefault(trajectory.info.get("aitw", {}).get("subset", "all"), [0, 0])
            group[1] += 1
            if expert is None or slot == 1:
                continue  # missing
            if slot == 0:
                lines.append({**key, "action": wrong_for(expert).to_json()})
            elif slot == 2:
                geo = model_geometry(
                    obs.width,
                    obs.height,
                    factor=SPACE.factor,
                    min_pixels=SPACE.min_pixels,
                    max_pixels=SPACE.max_pixels,
                )
                lines.append({**key, "response": format_action(expert, SPACE.format, geo)})
                ok += 1
                group[0] += 1
            else:
                lines.append({**key, "action": expert.to_json()})
                ok += 1
                group[0] += 1
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return ok, total, per_group


def check_markdown(out, protocol, split, count):
    md = (out / "report.md").read_text(encoding="utf-8")
    assert f"Protocol: **{protocol}**" in md
    assert f"Split: {split}" in md
    assert f"Scored steps: {count}" in md or f"Scored samples: {count}" in md
    return md


def test_eval_aitw_on_converted_tfrecord(tmp_path):
    src = tmp_path / "aitw"
    ids = samples.write_aitw_sample(src / "general" / "general-0000-of-0001", episodes=3, seed=1)
    ids += samples.write_aitw_sample(src / "install" / "install-0000-of-0001", episodes=2, seed=2)
    split_file = samples.write_split_file(tmp_path / "splits.json", {"train": [], "test": ids})
    store = tmp_path / "store"
    convert("aitw", src, store, split="test", split_file=split_file)
    preds = tmp_path / "preds.jsonl"
    ok, total, per_subset = expert_predictions(store, preds)
    out = tmp_path / "out"
    result = run_eval("aitw", store, "--predictions", preds, "--out", out)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"] == "aitw-seeclick" and report["count"] == total
    expected = {s: c / n for s, (c, n) in per_subset.items()}
    for subset, acc in expected.items():
        assert report["metrics"]["subsets"][subset]["action_acc"] == pytest.approx(acc)
    assert report["metrics"]["overall"] == pytest.approx(sum(expected.values()) / len(expected))
    assert report["missing_predictions"] == total - len(preds.read_text().splitlines())
    check_markdown(out, "aitw-seeclick", "test", total)


def test_eval_androidcontrol_high_and_low_with_sop(tmp_path):
    src = tmp_path / "ac"
    samples.write_androidcontrol_sample(src, episodes=4, seed=3)
    store = tmp_path / "store"
    convert("androidcontrol", src, store)
    high = tmp_path / "high.jsonl"
    ok, total, _ = expert_predictions(store, high)
    # Low level: every step correct, as action JSON.
    low_lines = [
        {"episode_id": t.episode_id, "step": s.index, "level": "low", "action": s.action.to_json()}
        for t in iter_episodes(store)
        for s in t.steps
    ]
    both = tmp_path / "both.jsonl"
    both.write_text(high.read_text() + "".join(json.dumps(x) + "\n" for x in low_lines))
    out = tmp_path / "out"
    result = run_eval("androidcontrol", store, "--predictions", both, "--out", out)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["levels"] == ["high", "low"]
    assert report["metrics"]["high"]["step_sr"] == pytest.approx(ok / total)
    assert report["metrics"]["low"]["step_sr"] == 1.0
    assert report["metrics"]["low"]["sop"] == {"episodes": 4, "pg": 1.0, "tsr": 1.0, "score": 1.0}
    # High: the first step of each episode is never "expert" unless the cycle says so; SOP stops early.
    assert report["metrics"]["high"]["sop"]["tsr"] < 1.0
    md = check_markdown(out, "androidcontrol-uis1", "none (whole source)", total)
    assert "SOP score" in md and "| High |" in md and "| Low |" in md


def test_eval_screenspot_v2_and_pro(tmp_path):
    for kind, writer in (
        ("screenspot_v2", lambda d: samples.write_screenspot_sample(d, "v2", per_platform=3)),
        ("screenspot_pro", lambda d: samples.write_screenspot_pro_sample(d, per_app=3)),
    ):
        src, store, out = tmp_path / kind, tmp_path / f"{kind}-store", tmp_path / f"{kind}-out"
        writer(src)
        convert(kind, src, store)
        lines, correct, total = [], 0, 0
        for sample in iter_samples(store):
            total += 1
            x1, y1, x2, y2 = sample["bbox_xyxy"]
            if total % 3 == 0:
                continue  # missing
            if total % 3 == 1:  # the box's corner: edges included
                lines.append({"sample_id": sample["sample_id"], "action": Action.click(x1, y1).to_json()})
                correct += 1
            else:  # just outside the box
                lines.append(
                    {"sample_id": sample["sample_id"], "action": Action.click(x2 + 1, y2 + 1).to_json()}
                )
        preds = tmp_path / f"{kind}.jsonl"
        preds.write_text("".join(json.dumps(x) + "\n" for x in lines))
        result = run_eval("screenspot", store, "--predictions", preds, "--out", out)
        assert result.returncode == 0, result.stderr
        report = json.loads((out / "report.json").read_text())
        assert report["metrics"]["overall"]["acc"] == pytest.approx(correct / total)
        assert report["missing_predictions"] == total // 3
        protocol = "screenspot-pro" if kind == "screenspot_pro" else "screenspot-v2"
        md = check_markdown(out, protocol, "none (whole source)", total)
        assert ("By group" in md) == (kind == "screenspot_pro")


def test_eval_odyssey(tmp_path):
    src, store, out = tmp_path / "ody", tmp_path / "store", tmp_path / "out"
    samples.write_odyssey_sample(src, episodes=4, seed=5)
    convert("odyssey", src, store, split="test", split_file=src / "splits" / "random_split.json")
    preds = tmp_path / "preds.jsonl"
    ok, total, _ = expert_predictions(store, preds)
    result = run_eval("odyssey", store, "--predictions", preds, "--out", out)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["pooled"]["ams"] == pytest.approx(ok / total)
    check_markdown(out, "gui-odyssey", "test", total)


def test_invalid_prediction_lines_fail_or_are_skipped_and_counted(tmp_path):
    src, store = tmp_path / "ody", tmp_path / "store"
    samples.write_odyssey_sample(src, episodes=2, seed=6)
    convert("odyssey", src, store)
    first = next(iter_episodes(store))
    preds = tmp_path / "preds.jsonl"
    preds.write_text(
        json.dumps({"episode_id": first.episode_id, "step": 0, "action": first.steps[0].action.to_json()})
        + "\n{not json\n"
        + json.dumps({"episode_id": first.episode_id, "step": 1, "response": "no tool call here"})
        + "\n"
    )
    failed = run_eval("odyssey", store, "--predictions", preds, "--out", tmp_path / "a")
    assert failed.returncode == 1
    assert "preds.jsonl" in failed.stderr and "record 2" in failed.stderr
    assert not (tmp_path / "a" / "report.json").exists()
    result = run_eval("odyssey", store, "--predictions", preds, "--out", tmp_path / "b", "--skip-invalid")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["invalid_prediction_lines"] == 1
    assert report["parse_failures"] == 1
    assert report["missing_predictions"] == report["count"] - 2


def test_split_option_picks_a_sub_store(tmp_path):
    src = tmp_path / "ody"
    samples.write_odyssey_sample(src, episodes=2, seed=7)
    convert("odyssey", src, tmp_path / "stores" / "test", split="test", split_file=src / "splits" / "random_split.json")
    preds = tmp_path / "p.jsonl"
    preds.write_text("")
    ok = run_eval(
        "odyssey", tmp_path / "stores", "--split", "test", "--predictions", preds, "--out", tmp_path / "o"
    )
    assert ok.returncode == 0, ok.stderr
    bad = run_eval(
        "odyssey",
        tmp_path / "stores" / "test",
        "--split",
        "train",
        "--predictions",
        preds,
        "--out",
        tmp_path / "o2",
    )
    assert bad.returncode == 1 and "train" in bad.stderr


def test_skipped_and_unmatched_prediction_lines_are_named_in_both_reports(tmp_path):
    src, store = tmp_path / "ody", tmp_path / "store"
    samples.write_odyssey_sample(src, episodes=2, seed=6)
    convert("odyssey", src, store)
    first = next(iter_episodes(store))
    scored = {"episode_id": first.episode_id, "step": 0, "action": first.steps[0].action.to_json()}
    lines = [
        json.dumps(scored),
        "{not json",  # line 2: skipped
        json.dumps({**scored, "episode_id": "no-such-episode"}),  # line 3: unmatched
        json.dumps({**scored, "step": 999}),  # line 4: unmatched (no such step)
        json.dumps({**scored, "level": "low"}),  # line 5: unmatched (GUI-Odyssey scores no Low level)
        json.dumps({"sample_id": "mobile_1", "action": scored["action"]}),  # line 6: unmatched (a grounding id)
    ]
    preds = tmp_path / "preds.jsonl"
    preds.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    result = run_eval("odyssey", store, "--predictions", preds, "--out", out, "--skip-invalid")
    assert result.returncode == 0, result.stderr
    assert f"skipped: {preds} line 2: not JSON" in result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["invalid_prediction_lines"] == 1
    assert report["skipped_prediction_lines"] == [{"line": 2, "error": report["skipped_prediction_lines"][0]["error"]}]
    assert report["skipped_prediction_lines"][0]["error"].startswith("not JSON")
    # Before, these four were dropped without a trace; the one scored line counted as the only prediction.
    assert report["unmatched_predictions"] == 4
    assert report["unmatched_prediction_lines"] == [
        {"line": 3, "episode_id": "no-such-episode", "step": 0, "level": "high"},
        {"line": 4, "episode_id": first.episode_id, "step": 999, "level": "high"},
        {"line": 5, "episode_id": first.episode_id, "step": 0, "level": "low"},
        {"line": 6, "sample_id": "mobile_1"},
    ]
    assert report["missing_predictions"] == report["count"] - 1
    md = (out / "report.md").read_text()
    assert "predictions matching nothing in the store (not scored): 4" in md
    assert "- line 2: not JSON" in md
    assert "- line 3: episode no-such-episode step 0 (high)" in md and "- line 6: sample mobile_1" in md


def test_a_store_of_another_benchmark_is_an_error_not_an_empty_report(tmp_path):
    aitw_src, aitw_store = tmp_path / "aitw", tmp_path / "aitw-store"
    json_file = samples.write_aitw_seeclick_sample(aitw_src, episodes_per_subset=1, seed=1)
    convert("aitw_seeclick", json_file, aitw_store, images=str(aitw_src / "aitw_images"))
    ss_src, ss_store = tmp_path / "ss", tmp_path / "ss-store"
    samples.write_screenspot_sample(ss_src, "v2", per_platform=1)
    convert("screenspot_v2", ss_src, ss_store)
    preds = tmp_path / "p.jsonl"
    preds.write_text("")
    for benchmark, store, dataset in (("screenspot", aitw_store, "aitw"), ("aitw", ss_store, "screenspot"),
                                      ("odyssey", aitw_store, "aitw")):
        result = run_eval(benchmark, store, "--predictions", preds, "--out", tmp_path / f"out-{benchmark}")
        assert result.returncode == 1, result.stdout
        assert f"a store of '{dataset}' data; the {benchmark} evaluation reads" in result.stderr
        assert not (tmp_path / f"out-{benchmark}" / "report.json").exists()
    # A store of the right benchmark with nothing in it is no result either.
    from guiagent.data.store import EpisodeWriter
    from guiagent.errors import DataError
    from guiagent.eval import evaluate
    from guiagent.eval.predictions import load_predictions

    with EpisodeWriter(tmp_path / "empty", "odyssey", source="x"):
        pass
    with pytest.raises(DataError, match="holds no steps to score"):
        evaluate("odyssey", tmp_path / "empty", load_predictions(preds), SPACE)


def test_a_store_with_a_repeated_episode_id_is_an_error_not_a_double_count(tmp_path):
    src, store = tmp_path / "ody", tmp_path / "store"
    samples.write_odyssey_sample(src, episodes=2, seed=6)
    convert("odyssey", src, store)
    episodes_file = store / "episodes.jsonl"
    first_line = episodes_file.read_text().splitlines()[0]
    episodes_file.write_text(episodes_file.read_text() + first_line + "\n")  # a store written before the check
    preds = tmp_path / "p.jsonl"
    preds.write_text("")
    result = run_eval("odyssey", store, "--predictions", preds, "--out", tmp_path / "out")
    assert result.returncode == 1
    assert f"file {episodes_file}, record 3: episode id" in result.stderr and "repeats line 1" in result.stderr
