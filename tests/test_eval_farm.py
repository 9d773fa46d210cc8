"""Online evaluation on the real farm: redis-server, ``sim`` workers (MobileSim) and ``web`` workers (MiniWoB++
in Debian's headless Chromium), driven by :func:`guiagent.eval.online.evaluate_on_farm` and by
``guiagent eval mobilesim|miniwob``.

Shown here: the DOM-reading MiniWoB++ expert scores >= 0.9 mean reward over 16 tasks of every kind (click,
type, select, drag, multi-step), with the random agent's score reported beside it; the MobileSim oracle solves
every template and the random agent is reported; a browser killed mid-episode is recovered by its worker and
the episode re-run, not lost; a SIGKILLed web worker leaves no browser behind; the tiny model served by
vLLM's CPU build completes a whole MiniWoB++ run through ``guiagent eval miniwob --policy-url``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guiagent.agent.web import SOLVERS
from guiagent.envs.sim.tasks import TEMPLATES, all_tasks
from guiagent.envs.web import miniwob_tasks
from guiagent.eval.online import evaluate_on_farm
from guiagent.farm.client import FarmClient
from guiagent.farm.config import FarmConfig
from guiagent.farm.local import LocalFarm
from guiagent.farm.specs import AgentSpec, EpisodeSpec

pytestmark = [
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs Debian's redis-server"),
    pytest.mark.skipif(shutil.which("chromium") is None or shutil.which("chromedriver") is None,
                       reason="needs Debian's chromium and chromium-driver"),
    pytest.mark.timeout(300),
]

# The DOM expert's tasks by kind: the issue asks for >= 10 tasks of different kinds.
KINDS = {"click": ["click-test", "click-test-2", "click-button", "click-link", "click-dialog", "click-tab",
                   "focus-text"],
         "select": ["click-option", "click-checkboxes", "choose-list"],
         "type": ["enter-text", "enter-password", "simple-arithmetic"],
         "drag": ["drag-box"], "multi-step": ["login-user", "click-tab-2"]}
TASKS = miniwob_tasks(sorted(SOLVERS), [0])


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    """Two MobileSim and two MiniWoB++ workers (two browsers per two cores)."""
    directory = tmp_path_factory.mktemp("farm")
    config = FarmConfig(store_url=str(directory / "trajectories"), recheck_interval=1.0)
    with LocalFarm(directory, sims=2, webs=2, config=config, width=540, height=1200) as farm:
        yield farm


@pytest.fixture(scope="module")
def client(farm):
    with FarmClient(farm.config) as client:
        yield client


def _rewards(report: dict) -> dict[str, float]:
    return {row["template"]: row["reward"] for row in report["episodes"]}


def test_the_dom_expert_scores_at_least_0_9_on_16_miniwob_tasks_and_random_is_reported(client, tmp_path):
    assert sorted(t for kind in KINDS.values() for t in kind) == sorted(SOLVERS)
    expert = evaluate_on_farm(client, "web", TASKS, AgentSpec("oracle"), protocol="miniwob", out_dir=tmp_path / "dom")
    rand = evaluate_on_farm(client, "web", TASKS, AgentSpec("random", seed=1), protocol="miniwob",
                            out_dir=tmp_path / "random", max_steps=5)
    print("per-task reward (DOM expert | random):")
    for name in sorted(SOLVERS):
        print(f"  {name:<20} {_rewards(expert)[name]:>5.2f} | {_rewards(rand)[name]:>5.2f}")
    print(f"mean: DOM expert {expert['metrics']['score']:.3f} ({expert['metrics']['wall_seconds']} s), "
          f"random {rand['metrics']['score']:.3f} ({rand['metrics']['wall_seconds']} s)")
    assert expert["count"] == len(SOLVERS) >= 10 and expert["metrics"]["score"] >= 0.9
    assert expert["metrics"]["errors"] == 0 and len({row["env_id"] for row in expert["episodes"]}) == 2
    for kind, names in KINDS.items():
        assert max(_rewards(expert)[n] for n in names) == 1.0, kind
    assert rand["count"] == len(SOLVERS) and rand["metrics"]["score"] < expert["metrics"]["score"]
    written = json.loads((tmp_path / "random" / "report.json").read_text())
    assert written["protocol"] == "miniwob" and written["metrics"]["mean_reward"] == rand["metrics"]["score"]
    assert "## Failures" in (tmp_path / "random" / "report.md").read_text()


def test_mobilesim_on_the_farm_the_oracle_solves_every_template_and_random_is_reported(client, tmp_path):
    oracle = evaluate_on_farm(client, "sim", all_tasks(0), AgentSpec("oracle"), protocol="mobilesim",
                              out_dir=tmp_path / "oracle")
    rand = evaluate_on_farm(client, "sim", all_tasks(0), AgentSpec("random"), protocol="mobilesim",
                            out_dir=tmp_path / "random")
    print(f"MobileSim, mean over {len(TEMPLATES)} templates: oracle {oracle['metrics']['score']:.3f}, "
          f"random {rand['metrics']['score']:.3f}")
    assert set(oracle["metrics"]["per_template"]) == set(TEMPLATES)
    assert oracle["metrics"]["score"] == oracle["metrics"]["template_success_rate"] == 1.0
    assert rand["count"] == len(TEMPLATES) and rand["metrics"]["score"] < 1.0
    assert all(row["reason"] for row in rand["episodes"] if not row["success"])  # each failure says why


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                if entry.isdigit() and int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def _browser_of(worker_pid: int) -> int | None:
    """The Chromium browser process under a worker: the child of its pool process's chromedriver."""
    stack = [worker_pid]
    while stack:
        pid = stack.pop()
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            parent_comm = Path(f"/proc/{parent}/comm").read_text().strip()
        except (OSError, ValueError):
            continue
        if comm == "chromium" and parent_comm == "chromedriver":
            return pid
        stack += _children(pid)
    return None


def test_a_browser_killed_mid_episode_is_recovered_and_the_episode_run_again(farm, client):
    # The random agent with a long budget keeps the page busy for several seconds: time to kill its browser.
    (task,) = miniwob_tasks(["click-checkboxes"], [3], max_steps=150)
    handle = client.submit(EpisodeSpec("killed-browser", task, AgentSpec("random"), kind="web"))
    deadline = time.monotonic() + 30
    while True:  # until the worker publishes a step of the episode (at most once a second)
        busy = [s for s in client.device_status().values() if s.get("kind") == "web" and s.get("step")]
        if busy:
            break
        assert time.monotonic() < deadline, "the episode never started"
        time.sleep(0.05)
    device = busy[0]["device_id"]
    victim = _browser_of(farm.workers[device].pid)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    (result,) = client.results([handle], timeout=120)
    status = client.device_status()[busy[0]["worker"]]
    print(f"killed Chromium {victim} on {device}: episode {result.status} after {result.retries} re-run(s); "
          f"device restarts {status['restarts']}, last error {status['last_error']!r}")
    assert result.episode_id == "killed-browser" and result.retries >= 1 and result.status != "error", result
    assert status["restarts"] >= 1 and status["failures"] >= 1 and status["state"] == "ok"
    (after,) = client.run([EpisodeSpec("after-restart", miniwob_tasks(["enter-text"], [1])[0], AgentSpec("oracle"),
                                       kind="web")], timeout=60)
    assert after.success


def _descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        children = _children(stack.pop())
        found += children
        stack += children
    return found


def test_a_sigkilled_web_worker_leaves_no_browser_behind(farm):
    from guiagent.farm.local import _alive

    worker = farm.add_worker("web", "web-doomed")
    farm.wait_ready(farm.sims + farm.webs + 1, timeout=60)
    browser = _browser_of(worker)
    processes = _descendants(worker)  # the pool process, chromedriver, Chromium and its helpers, the reaper
    assert browser in processes and len(processes) >= 5
    os.kill(worker, signal.SIGKILL)
    farm.workers["web-doomed"].wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in processes if _alive(p)], "processes outlived the SIGKILLed worker"


def test_the_eval_cli_runs_miniwob_on_an_existing_farm(farm, tmp_path):
    out = tmp_path / "cli"
    done = subprocess.run([sys.executable, "-m", "guiagent", "eval", "miniwob", "--farm-dir", str(farm.directory),
                           "--agent", "oracle", "--tasks", "click-test,miniwob/enter-text-v1", "--seeds", "0,1",
                           "--out", str(out)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["count"] == 4 and report["metrics"]["score"] == 1.0
    assert "score 1.0000" in done.stdout
    refused = subprocess.run([sys.executable, "-m", "guiagent", "eval", "miniwob", "--farm-dir", str(farm.directory),
                              "--agent", "oracle", "--policy-url", "http://x", "--out", str(out)],
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2 and "--agent" in refused.stderr


@pytest.mark.timeout(900)
def test_the_tiny_served_model_completes_a_miniwob_run(farm, tmp_path, vllm_server):
    """``guiagent eval miniwob --policy-url``: the driver computes the model geometry of the web devices' screen
    (qwen-vl-utils) and every worker streams its screenshots to vLLM's CPU server; the random-weight model
    scores near nothing, and the run completes without an error."""
    out = tmp_path / "tiny"
    done = subprocess.run([sys.executable, "-m", "guiagent", "eval", "miniwob", "--farm-dir", str(farm.directory),
                           "--policy-url", vllm_server.url, "--model", "tiny", "--max-tokens", "12",
                           "--max-pixels", str(64 * 28 * 28), "--max-steps", "2", "--timeout", "600",
                           "--out", str(out)], capture_output=True, text=True, timeout=700, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    print(f"tiny model over {report['count']} MiniWoB++ tasks: mean reward {report['metrics']['score']:.3f}, "
          f"{report['metrics']['parse_failures']} parse failures, {report['metrics']['wall_seconds']} s; "
          f"per task {_rewards(report)}")
    assert report["count"] == len(TASKS) and report["metrics"]["errors"] == 0, report["episodes"]
    assert all(row["steps"] >= 1 for row in report["episodes"])
    assert report["agent"]["model"] == "tiny" and report["predictions"].startswith("agent policy (tiny")
