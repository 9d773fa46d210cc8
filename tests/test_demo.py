"""The main job as a user runs it: ``python -m guiagent.demo --quick --out DIR`` in a subprocess — SFT, then
online RL on MobileSim through a local farm and a vLLM CPU server, the same-time SFT control, the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_quick_main_job_trains_evaluates_and_reports(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "guiagent.demo", "--quick", "--out", str(out)],
                            capture_output=True, text=True, timeout=1450)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    [seed] = report["per_seed"]
    rl, control = out / "seed-0" / "rl", out / "seed-0" / "control"

    # The RL run: SFT warm-up, held-out evaluation before and after, updates on farm rollouts.
    sft = json.loads((rl / "sft.json").read_text())
    assert sft["steps"] == 30 and sft["loss_end"] < sft["loss_start"]
    rows = [json.loads(line) for line in (rl / "metrics.jsonl").read_text().splitlines()]
    assert rows and seed["rl_updates"] == len(rows) == rows[-1]["step"]
    # 2 tasks a step, G = 2 episodes each; a group whose episodes all agree is played again once, then dropped.
    assert all(r["groups"] + r["dropped_groups"] == 2 and r["trajectories"] == 2 * r["groups"] for r in rows)
    assert all(r["policy_version"] == f"v{r['step'] - 1}" for r in rows)
    from guiagent.data.store import TrajectoryStore

    store = TrajectoryStore(rl / "store", create=False)
    played = [t for t in store if not t.episode_id.startswith("eval-")]
    assert len(played) >= sum(r["trajectories"] for r in rows)
    assert {t.policy_version for t in played} == {f"v{r['step'] - 1}" for r in rows}
    assert all(t.info.get("group") for t in played)  # recorded by the farm's workers as GRPO group members

    # Held-out evaluation: the same tasks for all three arms, never trained on.
    train_ids = {f"{t}-{s}" for t in ("SettingsToggleWifi", "SettingsSetTwoToggles") for s in (0, 1)}
    for arm in ("before_rl", "after_rl", "control"):
        evaluation = seed[arm]
        assert evaluation["episodes"] == 2 and evaluation["sop"] is not None
        assert not {i.split("-", 3)[-1] for i in evaluation["store_episode_ids"]} & train_ids
    assert seed["control_updates"] >= 1 and (control / "metrics.jsonl").exists()

    # The report: every arm with its spread and episode counts, a verdict limited to the numbers.
    assert set(report["summary"]) >= {"before_rl", "after_rl", "control", "rl_minus_control_success"}
    assert "One seed" in report["verdict"]
    text = (out / "report.md").read_text()
    assert "same-time SFT control" in text and "SettingsSetTwoToggles" in text
    assert (out / "compare.png").stat().st_size > 1000
    assert (rl / "plots" / "phase_times.png").exists()

    # Everything the run started is gone: the farm's Redis and workers.
    farm = json.loads((rl / "farm" / "farm.json").read_text()) if (rl / "farm" / "farm.json").exists() else None
    pids = [farm["redis"], *farm["workers"].values()] if farm else []
    assert not [pid for pid in pids if _alive(pid)]
