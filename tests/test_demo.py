"""The CPU demo as a user runs it: ``python -m guiagent.demo --quick --out DIR`` in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    shutil.which("adb") is None, reason="needs the Debian adb binary (scripts/run.sh installs it)"
)


def _adb_server_running(port: int) -> bool:
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return any(line.startswith("adb") and f"tcp:{port} " in line for line in ps.splitlines())


@pytest.mark.timeout(300)
def test_quick_demo_runs_every_phase_and_reports_honest_numbers(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "guiagent.demo", "--quick", "--out", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())

    assert [p["name"] for p in report["phases"]] == [
        "model",
        "data",
        "sft",
        "online",
        "offline_eval",
        "semi_online",
        "update",
    ]
    assert all(p["status"] == "ok" and p["seconds"] > 0 for p in report["phases"])
    assert "not part of the demo" in report["not_included"]

    # Expert data: one trajectory-store episode per task, screenshots as files, labelled like UI-S1 data.
    from guiagent.data.store import TrajectoryStore

    assert report["data"]["episodes"] == 2
    experts = list(TrajectoryStore(out / "data", create=False))
    assert len(experts) == 2 and sum(map(len, experts)) == report["data"]["steps"]
    assert len(list((out / "data" / "images").rglob("*.png"))) == report["data"]["steps"]
    assert all(s.target_boxes for e in experts for s in e.steps if s.action.type.value == "click")

    # SFT warm-up on the expert store: 30 steps take the cross-entropy from random-init level to near zero.
    sft = report["sft"]
    assert sft["steps"] == len(sft["losses"]) == 30 and sft["samples"] == report["data"]["steps"]
    assert sft["loss_end"] < 0.1 * sft["loss_start"], sft
    assert (out / "sft_loss.png").stat().st_size > 1000

    # Online over adb: the oracle succeeds on every task (the simulator's verdict); the warmed-up model's
    # answers now parse into actions.
    oracle = [e for e in report["online"]["episodes"] if e["agent"] == "oracle"]
    model = [e for e in report["online"]["episodes"] if e["agent"] != "oracle"]
    assert len(oracle) == 2 and all(e["success"] for e in oracle)
    assert report["online"]["metrics"]["oracle"]["template_success_rate"] == 1.0
    assert model and all(e["agent"] == sft["policy_version"] and e["parsed_actions"] >= 1 for e in model)
    online = TrajectoryStore(out / "online", create=False)
    assert len(online) == len(report["online"]["episodes"])
    assert all(t.info["end"] in ("terminate", "budget") for t in online)  # written by the one agent loop

    # Offline SOP: the oracle's own actions as model text are the upper bound.
    assert report["offline_eval"]["oracle_text"]["sop"] == {
        "episodes": 2,
        "pg": 1.0,
        "tsr": 1.0,
        "score": 1.0,
    }
    tiny = report["offline_eval"]["tiny_policy"]["sop"]
    assert tiny["episodes"] == 2 and 0.0 < tiny["score"] <= 1.0
    assert (out / "eval" / "oracle" / "report.json").exists()

    # Semi-online: N = 4 rollouts per expert trajectory, a reward and both advantages per sample.
    semi = report["semi_online"]
    assert semi["summary"]["n_rollouts"] == 4
    assert semi["summary"]["samples"] == len(semi["rows"]) >= 8
    assert {r["rollout"] for r in semi["rows"]} == {0, 1, 2, 3}
    assert all(r["reward"] in (0.0, 0.1, 0.5, 1.0) for r in semi["rows"])
    assert semi["summary"]["mean_reward"] > 0 and semi["summary"]["max_abs_adv_uis1"] > 0
    lines = (out / "semi_online" / "trajectories.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 4

    assert (out / "semi_online.png").stat().st_size > 1000

    # One ppo_clip step on every semi-online sample: finite loss, weights moved, the trainer's log-probs are
    # the ones the rollout recorded (same weights, fp32).
    update = report["update"]
    assert update["samples"] + update["context_rows"] == semi["summary"]["samples"]
    assert update["loss"] == update["loss"] and abs(update["loss"]) < 1e3 and update["grad_norm"] > 0
    assert update["parameter_tensors_changed"] > 0 and update["weight_change_l2"] > 0
    assert update["max_abs_logprob_diff"] < 1e-3
    assert "One policy-gradient step" in (out / "report.md").read_text()
    assert "Offline SOP" in (out / "report.md").read_text()
    assert "oracle_text" in result.stdout
    # The adb server the demo started on its private port is gone.
    assert not _adb_server_running(report["online"]["adb_server_port"])
