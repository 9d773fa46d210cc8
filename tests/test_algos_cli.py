"""``guiagent algos`` run as a subprocess on a real episode store."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from guiagent.data.store import EpisodeWriter, step_image_path
from guiagent.types import Observation, Step, Trajectory

R2 = 1 / math.sqrt(2)


def guiagent(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "guiagent", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    # Task "wifi" (seed 0), two rollouts that both start on screen "home":
    #   ep-ok:   home → settings, rewards [0, 1] (success)
    #   ep-fail: home → home (no progress), rewards [0, 0]
    root = tmp_path_factory.mktemp("store")
    screens = {"home": "<hierarchy><node text='Home'/></hierarchy>",
               "settings": "<hierarchy><node text='Settings'/></hierarchy>"}
    colours = {"home": (250, 250, 250), "settings": (20, 20, 120)}
    with EpisodeWriter(root, dataset="rollouts", source="test") as writer:
        for episode_id, visited, rewards in (("ep-ok", ["home", "settings"], [0.0, 1.0]),
                                             ("ep-fail", ["home", "home"], [0.0, 0.0])):
            steps, images = [], {}
            for i, (screen, reward) in enumerate(zip(visited, rewards)):
                path = step_image_path(episode_id, i)
                img = Image.new("RGB", (90, 160), colours[screen])
                img.paste((0, 0, 0), (10, 20 + 40 * (screen == "settings"), 80, 40 + 40 * (screen == "settings")))
                images[path] = img
                obs = Observation(width=90, height=160, screenshot_path=path, a11y_tree=screens[screen])
                steps.append(Step(index=i, observation=obs, action=None, reward=reward))
            writer.add(Trajectory(episode_id=episode_id, task_id="wifi", seed=0, env_id="sim", policy_version="base",
                                  steps=tuple(steps)), images)
    return root


def test_advantages_grpo_and_gigpo(store, tmp_path):
    out = tmp_path / "grpo.json"
    result = guiagent("algos", "advantages", str(store), "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "ep-ok" in result.stdout
    # Totals 1 and 0 → ±1/√2 on every step of each trajectory.
    assert [r["advantage"] for r in json.loads(out.read_text())["rows"]] == pytest.approx([R2, R2, -R2, -R2], abs=1e-4)

    for anchors in ("a11y", "phash", "auto"):
        out = tmp_path / f"gigpo-{anchors}.json"
        result = guiagent("algos", "advantages", str(store), "-e", "gigpo", "-o", "gamma=0.5",
                          "--anchors", anchors, "--json", str(out))
        assert result.returncode == 0, result.stderr
        # Returns (γ 0.5): ep-ok [0.5, 1], ep-fail [0, 0]. Episode level ±0.70711.
        # Anchor "home" = {ok0 0.5, fail0 0, fail1 0}: mean 1/6, std = sqrt((1/9 + 2/36)/2) = 0.28868
        #   → 1.1547, -0.57735, -0.57735.  "settings" = {ok1} alone → 0.
        expected = [R2 + 1.1547, R2, -R2 - 0.57735, -R2 - 0.57735]
        assert [r["advantage"] for r in json.loads(out.read_text())["rows"]] == pytest.approx(expected, abs=1e-4), anchors


def test_errors_are_reported_not_raised(store):
    result = guiagent("algos", "advantages", str(store), "-e", "gigpo", "-o", "gama=0.5")
    assert result.returncode == 1
    assert "unknown option(s) gama" in result.stderr and "Traceback" not in result.stderr
    result = guiagent("algos", "advantages", str(store), "-e", "gigpo")
    assert result.returncode == 1 and "anchor_ids" in result.stderr


def test_list_shows_every_algorithm_with_its_options():
    result = guiagent("algos", "list")
    assert result.returncode == 0, result.stderr
    for name in ("gigpo", "grpo", "hi_agent", "rloo", "uis1", "ppo_clip"):
        assert name in result.stdout
    assert "gamma=0.5" in result.stdout and "dual_clip=3.0" in result.stdout
