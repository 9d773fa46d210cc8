"""The farm dashboard in headless Chromium, on a real local farm (redis-server + MobileSim device workers):
``guiagent farm dashboard`` shows every device, and follows the farm without reloading the page — a healthy
device takes episodes (its card shows the running task, then the episode count and the episode's last
screen) while a device that crashes on every call is quarantined (its card's state changes, the error is
listed).

The page's screenshot is saved as ``tests/artifacts/ui/dashboard.png`` (see ``ui_browser``).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from guiagent.envs.sim.tasks import make_task
from guiagent.farm.client import FarmClient
from guiagent.farm.config import FarmConfig
from guiagent.farm.local import LocalFarm
from guiagent.farm.specs import AgentSpec, EpisodeSpec
from guiagent.net import free_port
from guiagent.ui.dashboard import FarmMonitor
from ui_browser import chromium, console_errors, has_redis, needs_chromium, save_screenshot, server, wait_for

pytestmark = pytest.mark.timeout(240)
# 0.3 s per input: an oracle episode lasts seconds, several updates of a 0.3 s dashboard.
DEVICE = {"width": 540, "height": 1200, "step_latency": 0.3}

# Records, in the page itself, every task and state a device card showed: what happened between two looks of
# the test is not lost.
WATCH = """
window.sameDocument = true;
window.seen = [];
new MutationObserver(() => {
  for (const card of document.querySelectorAll(".device")) {
    window.seen.push(card.dataset.deviceId + " " + card.dataset.state + " " + card.dataset.task);
  }
}).observe(document.getElementById("devices"), {subtree: true, attributes: true, childList: true});
"""


def _cards(driver) -> dict[str, dict]:
    """The device cards by device id: what each shows."""
    return driver.execute_script("""
        return Object.fromEntries(Array.from(document.querySelectorAll(".device")).map((c) => [c.dataset.deviceId, {
          state: c.dataset.state, task: c.dataset.task, episodes: Number(c.dataset.episodes),
          screen: c.querySelector("img").getAttribute("src"),
          loaded: c.querySelector("img").complete ? c.querySelector("img").naturalWidth : 0}]));""")


def test_without_a_farm_the_command_names_the_directory(tmp_path):
    done = subprocess.run([sys.executable, "-m", "guiagent", "farm", "dashboard", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and f"no local farm runs from {tmp_path}" in done.stderr


def test_a_broker_that_is_away_is_reported_on_the_page_not_raised(tmp_path):
    config = FarmConfig(broker_url=f"redis://127.0.0.1:{free_port()}/0", store_url=str(tmp_path / "store"))
    monitor = FarmMonitor(config)
    try:
        snapshot = monitor.snapshot()
    finally:
        monitor.close()
    assert snapshot["devices"] == [] and "cannot read the farm's broker" in snapshot["problem"]


@needs_chromium
@pytest.mark.skipif(not has_redis(), reason="needs Debian's redis-server")
def test_dashboard_follows_the_devices_of_a_local_farm_without_reloading(tmp_path):
    farm_dir = tmp_path / "farm"
    port = free_port()
    with LocalFarm(farm_dir, sims=1, config=FarmConfig(store_url=str(farm_dir / "trajectories")),
                   **DEVICE) as farm, FarmClient(farm.config) as client:
        # A second device that crashes on every call: the first episode it takes quarantines it.
        farm.add_worker("sim", "sim-sick", faults={"crash_rate": 1.0}, **DEVICE)
        farm.wait_ready(2, timeout=60)
        with server(["farm", "dashboard", "--dir", str(farm_dir), "--port", str(port), "--interval", "0.3"],
                    port, tmp_path / "dashboard.log") as url, chromium() as driver:
            driver.get(url + "/")
            cards = wait_for(driver, lambda d: len(_cards(d)) == 2 and _cards(d), 20, "two device cards")
            assert set(cards) == {"sim-0", "sim-sick"}
            assert all(c["state"] == "ok" and c["episodes"] == 0 and not c["task"] for c in cards.values())
            driver.execute_script(WATCH)

            # Two episodes at once: each idle device takes one; the sick one hands its episode back.
            tasks = [make_task("ContactsAddContact", 4), make_task("SettingsToggleWifi", 5)]
            specs = [EpisodeSpec(f"dashboard-{i}", t, AgentSpec("oracle")) for i, t in enumerate(tasks)]
            results = client.run(specs, timeout=120)
            assert [r.status for r in results] == ["success", "success"], results
            assert {r.env_id for r in results} == {"sim-0"}

            done = wait_for(driver, lambda d: (c := _cards(d)["sim-0"])["episodes"] == 2 and c["loaded"] and c,
                            20, "sim-0's card shows 2 episodes and the last episode's screen")
            assert not done["task"] and done["loaded"] == 540 and "dashboard-" in done["screen"]
            wait_for(driver, lambda d: _cards(d)["sim-sick"]["state"] == "quarantined", 20, "sim-sick quarantined")
            seen = driver.execute_script("return window.seen")
            assert {f"sim-0 ok {t.task_id}" for t in tasks} <= set(seen), "a running task was never shown"
            assert "sim-sick ok " in seen, "the sick device was never shown healthy before"
            assert driver.execute_script("return window.sameDocument") is True, "the page was reloaded"
            errors = driver.find_element("id", "errors").text
            assert "sim-sick" in errors and "crash" in errors.lower(), errors
            assert "2 devices" in driver.find_element("id", "status").text
            assert not console_errors(driver)
            save_screenshot(driver, "dashboard")
