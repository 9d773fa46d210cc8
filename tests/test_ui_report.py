"""The training report of a run directory laid out as the trainer leaves it (metrics.jsonl, eval/*.json,
plots/*.png, store/), opened in headless Chromium from the file system: every plot loads, the evaluation
before/after RL is there with its change per template, and its links lead into the static viewer.

The page's screenshot is saved as ``tests/artifacts/ui/report.png`` (see ``ui_browser``).
"""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image
from ui_browser import chromium, console_errors, needs_chromium, save_screenshot

from guiagent.agent import OracleAgent, RandomAgent, run_episode
from guiagent.data.store import TrajectoryStore
from guiagent.envs.sim.env import MobileSimEnv
from guiagent.envs.sim.tasks import make_task
from guiagent.errors import DataError
from guiagent.ui.report import numeric_series, write_report

PHASES = ("rollout", "reward", "advantage", "update", "sync_weights", "evaluate", "checkpoint")


def _metrics(steps: int) -> list[dict]:
    rows = []
    for step in range(1, steps + 1):
        rows.append({"step": step, "time": 1_700_000_000 + 30 * step, "policy_version": f"step-{step}",
                     "reward_mean": 0.1 * step, "success_rate": min(1.0, 0.15 * step), "loss": 1 / step,
                     "kl": 0.01 * step, "entropy": 2 - 0.1 * step, "grad_norm": 1.5, "lr": 1e-5,
                     "custom/clip_fraction": 0.05, **{f"time/{p}": 0.5 + i for i, p in enumerate(PHASES)}})
    return rows


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    lines = [json.dumps(r) for r in _metrics(6)]
    lines.insert(3, '{"step": 3.5, "loss": ')  # a line cut off by a crash: reported, not fatal
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    store = TrajectoryStore(run / "store")
    env = MobileSimEnv(width=540, height=1200)
    ids = {"before_rl": [], "after_rl": []}
    for name, agent in (("before_rl", RandomAgent(1)), ("after_rl", OracleAgent())):
        for template in ("SettingsToggleWifi", "SettingsToggleBluetooth"):
            episode_id = f"{name}-{template}"
            store.put(run_episode(env, make_task(template, 7), agent, episode_id=episode_id, max_steps=3,
                                  policy_version=name))
            ids[name].append(episode_id)
    (run / "eval").mkdir()
    # The trainer's evaluation during the run sits between before_rl and after_rl, whatever the file names' order.
    for name, success in (("before_rl", 0.0), ("after_rl", 1.0), ("step-000003", 0.5)):
        (run / "eval" / f"{name}.json").write_text(json.dumps({
            "name": name, "protocol": "mobilesim-online", "success": success, "sop": None,
            "per_template": {"SettingsToggleWifi": success, "SettingsToggleBluetooth": success / 2},
            "episodes": 2, "store_episode_ids": ids.get(name, []) + ["not-in-the-store"], "mean_steps": 2.5}))
    # The trainer's plots: one of a series (it stands for that curve) and one of something else.
    (run / "plots").mkdir()
    Image.new("RGB", (300, 200), "white").save(run / "plots" / "loss.png")
    Image.new("RGB", (300, 200), "white").save(run / "plots" / "rewards.png")
    return run


def test_numeric_series_put_the_known_ones_first_then_the_phases_in_loop_order():
    rows = [{"step": 2, "zeta": 1, "time/update": 1.0, "time/rollout": 2.0, "loss": 0.5, "ok": True, "name": "x"},
            {"loss": float("nan")}]
    series = numeric_series(rows)
    # Booleans and strings are not series; a row without a step counts by its position (1 here).
    assert list(series) == ["loss", "time/rollout", "time/update", "zeta"]
    assert series["loss"][0] == (2.0, 0.5) and series["loss"][1][0] == 1.0 and math.isnan(series["loss"][1][1])


def test_a_missing_run_directory_is_named_and_an_empty_one_still_gets_a_report(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        write_report(tmp_path / "nope")
    html = write_report(tmp_path).read_text()
    assert "metrics.jsonl: missing" in html and "No evaluation" in html and "No metrics logged" in html


@needs_chromium
def test_the_report_opens_its_plots_load_and_it_links_into_the_viewer(run_dir):
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    with chromium() as driver:
        driver.get(path.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map((i) => [i.className, i.getAttribute('src'), i.naturalWidth])")
        curves = [src for kind, src, _ in images if kind == "curve"]
        # Seven known series, one plot for all seven phases, and the unknown series: every one loaded. The loss
        # is the trainer's plot, not drawn again.
        assert curves[:3] == ["report/reward_mean.png", "report/success_rate.png", "plots/loss.png"]
        assert len(curves) == 9 and not (run_dir / "report" / "loss.png").exists()
        assert "report/phase_times.png" in curves and "report/custom_clip_fraction.png" in curves
        assert [src for kind, src, _ in images if kind == "trainer-plot"] == ["plots/rewards.png"]
        assert all(width > 0 for _, _, width in images), images

        warnings = driver.find_element("id", "warnings").text
        assert "metrics.jsonl" in warnings and "record 4" in warnings
        rows = driver.find_elements("css selector", "table.evals tbody tr")
        assert [r.get_attribute("data-eval") for r in rows] == ["before_rl", "step-000003", "after_rl"]
        assert [r.find_element("css selector", ".success").text for r in rows] == ["0", "0.5", "1"]
        assert [r.find_element("css selector", ".more").text for r in rows] == ["mean_steps 2.5"] * 3
        deltas = [td.text for td in driver.find_elements("css selector", "table.templates td.delta")]
        assert deltas == ["0.5", "1"]  # after_rl − before_rl: Bluetooth 0 → 0.5, Wifi 0 → 1 (templates by name)
        save_screenshot(driver, "report")

        driver.find_element("css selector", 'tr[data-eval="after_rl"] summary').click()
        links = driver.find_elements("css selector", 'tr[data-eval="after_rl"] a.episode-link')
        assert [a.text for a in links] == ["after_rl-SettingsToggleWifi", "after_rl-SettingsToggleBluetooth"]
        links[0].click()
        assert driver.find_element("css selector", "dd.episode-id").text == "after_rl-SettingsToggleWifi"
        assert driver.execute_script("return Array.from(document.images).every((i) => i.naturalWidth === 540)")

        driver.get(path.as_uri())
        driver.find_element("link text", "after_rl").click()  # trajectories of one policy version
        shown = [r for r in driver.find_elements("css selector", "table.episodes tbody tr") if r.is_displayed()]
        assert len(shown) == 2 and all("after_rl" in r.text for r in shown)
        assert not console_errors(driver)
