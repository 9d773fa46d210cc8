"""The training loop end to end: ``guiagent train`` as a subprocess, checkpoints and exact resume after
SIGKILL, DeepSpeed ZeRO-2 against plain torch, and one update of every recipe's CPU variant."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "configs" / "recipes"


def recipe(name: str, model: Path, **sections) -> dict:
    """A recipe's CPU variant with the session's tiny model and ``sections`` merged in (one level deep)."""
    config = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
    config["trainer"]["model"] = str(model)
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


def write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def train(config_path: Path, out: Path, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "guiagent", "train", str(config_path), "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def weights(checkpoint: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(checkpoint / "model" / "model.safetensors")


# A short semi-online run: SFT warm-up, 4 updates, a checkpoint after every update, held-out evaluation.
def semi_online(model: Path, **trainer) -> dict:
    return recipe("uis1_semi_online_cpu", model, trainer={"steps": 4, "checkpoint_every": 1, **trainer},
                  sft={"steps": 30})


def test_train_writes_a_complete_run_directory(tiny_qwen25vl, tmp_path):
    run = tmp_path / "run"
    done = train(write(tmp_path / "c.yaml", semi_online(tiny_qwen25vl)), run)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for row in rows:
        assert row["policy_version"] == f"v{row['step'] - 1}"
        assert {"time/rollout", "time/reward", "time/advantage", "time/sync_weights", "time/checkpoint"} <= set(row)
    assert any("loss" in r for r in rows), "no update ran: every advantage was zero"
    assert (run / "eval" / "before_rl.json").exists() and (run / "eval" / "step-000004.json").exists()
    before = json.loads((run / "eval" / "before_rl.json").read_text())
    assert before["episodes"] == 1 and before["sop"] is not None
    # Step 0 and the newest two checkpoints are kept, each a loadable Hugging Face directory.
    kept = sorted(p.name for p in (run / "checkpoints").glob("step-*"))
    assert kept == ["step-000000", "step-000003", "step-000004"]
    from transformers import AutoModelForImageTextToText

    AutoModelForImageTextToText.from_pretrained(run / "checkpoints" / "step-000004" / "model")
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "plots" / "phase_times.png").exists() and (run / "plots" / "sft_loss.png").exists()
    # Every sampled rollout is in the run's store with its advantages, beside the evaluation episodes.
    from guiagent.data.store import TrajectoryStore

    rollouts = [t for t in TrajectoryStore(run / "store", create=False) if t.info.get("rollout") == "semi_online"]
    assert len(rollouts) == sum(r["trajectories"] for r in rows)
    assert all(s.advantage is not None for t in rollouts for s in t.steps)
    assert "held-out success" in done.stdout


def test_a_killed_run_resumes_to_bitwise_identical_weights(tiny_qwen25vl, tmp_path):
    config = write(tmp_path / "c.yaml", semi_online(tiny_qwen25vl))
    straight = tmp_path / "straight"
    done = train(config, straight)
    assert done.returncode == 0, done.stderr[-3000:]

    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "guiagent", "train", str(config), "--out", str(killed)],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (killed / "checkpoints" / "step-000002").exists():
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    resumed = train(config, killed, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout
    a, b = weights(straight / "checkpoints" / "step-000004"), weights(killed / "checkpoints" / "step-000004")
    assert a.keys() == b.keys()
    assert all(a[k].equal(b[k]) for k in a), "resumed weights differ from the uninterrupted run's"
    assert [r["step"] for r in metrics(killed)] == [1, 2, 3, 4]
    assert [r.get("loss") for r in metrics(killed)] == [r.get("loss") for r in metrics(straight)]


def test_resume_refuses_a_changed_config(tiny_qwen25vl, tmp_path):
    config = semi_online(tiny_qwen25vl, steps=1)
    config["evaluation"] = None
    done = train(write(tmp_path / "c.yaml", config), tmp_path / "run")
    assert done.returncode == 0, done.stderr[-3000:]
    config["optimizer"] = {"lr": 0.5}
    again = train(write(tmp_path / "c.yaml", config), tmp_path / "run", "--resume")
    assert again.returncode == 1 and "optimizer" in again.stderr and "Traceback" not in again.stderr


def test_deepspeed_zero2_gives_the_same_losses_as_torch(tiny_qwen25vl, tmp_path):
    losses = {}
    for engine in ("torch", "deepspeed"):
        config = semi_online(tiny_qwen25vl, steps=2, checkpoint_every=0, engine=engine,
                             deepspeed_config=str(REPO / "configs" / "deepspeed" / "zero2.json"))
        config["evaluation"] = None
        run = tmp_path / engine
        done = train(write(tmp_path / f"{engine}.yaml", config), run)
        assert done.returncode == 0, done.stderr[-3000:]
        sft = json.loads((run / "sft.json").read_text())["losses"]
        losses[engine] = sft + [r["loss"] for r in metrics(run) if "loss" in r]
    assert len(losses["torch"]) > 30
    # ZeRO-2 keeps flat fp32 gradient partitions and sums the clip norm in its own order: equal to ~1e-5.
    assert losses["deepspeed"] == pytest.approx(losses["torch"], rel=1e-4, abs=1e-6)


OFFLINE = ("uis1_semi_online_cpu", "har_cpu", "hiagent_cpu", "grounding_grpo_cpu")
ONLINE = ("gigpo_mobilesim_cpu", "arpo_cpu")


@pytest.mark.parametrize("name", [*OFFLINE, pytest.param(ONLINE[0], marks=pytest.mark.slow),
                                  pytest.param(ONLINE[1], marks=pytest.mark.slow)])
def test_one_update_of_each_recipe_changes_every_trainable_parameter(name, tiny_qwen25vl, tmp_path):
    config = recipe(name, tiny_qwen25vl, trainer={"steps": 1, "checkpoint_every": 1})
    config["evaluation"] = None
    run = tmp_path / "run"
    done = train(write(tmp_path / "c.yaml", config), run, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    [row] = metrics(run)
    assert "loss" in row and abs(row["loss"]) < 1e6, row
    before, after = weights(run / "checkpoints" / "step-000000"), weights(run / "checkpoints" / "step-000001")
    unchanged = [k for k in before if before[k].equal(after[k])]
    assert not unchanged, f"{len(unchanged)} of {len(before)} tensors did not change, e.g. {unchanged[:3]}"
