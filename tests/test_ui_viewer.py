"""The trajectory viewer on recorded MobileSim episodes, in headless Chromium: served by ``guiagent view RUN``
and written by ``guiagent view RUN --static OUT``.

Shown here: each mark lands on the screenshot pixel its action names (a click's marker centre, a swipe's and a
scroll's arrow, measured from the page's element geometry against the recorded action and the one scroll
rule); the expert action, parse failures, patched steps, rewards and advantages are on the page; the filters
and the keyboard work; a group's trajectories stand side by side; model text holding HTML and ``<script>`` is
shown as text and never runs, with and without the server's Content-Security-Policy.

Page screenshots: ``tests/artifacts/ui/viewer-*.png`` (see ``ui_browser``).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from ui_browser import chromium, console_errors, needs_chromium, save_screenshot, server, wait_for

from guiagent.actions.gestures import scroll_stroke
from guiagent.agent import Decision, OracleAgent, RandomAgent, run_episode
from guiagent.data.store import TrajectoryStore
from guiagent.envs.sim.env import MobileSimEnv
from guiagent.envs.sim.tasks import make_task
from guiagent.errors import DataError
from guiagent.net import free_port
from guiagent.types import Action, Direction
from guiagent.ui.viewer import action_marks, create_app, describe_action, open_store, step_views, thought_of

WIDTH, HEIGHT = 540, 1200
HOSTILE = '<script>window.pwned = "script"</script><img src=x onerror="window.pwned = \'img\'"><b>bold</b>'
GROUP = "grpo-group-<1>"


class ScriptedModel:
    """Plays fixed decisions the way a policy-backed agent reports them: raw text, parsed action or failure."""

    def __init__(self, decisions: list[Decision]):
        self.decisions = decisions
        self.next = 0

    def reset(self, task) -> None:
        self.next = 0

    def act(self, observation, history) -> Decision:
        self.next += 1
        return self.decisions[self.next - 1]


def _call(action: str, **arguments) -> str:
    """A Qwen2.5-VL ``mobile_use`` tool call, as the model writes it."""
    return f"<tool_call>{json.dumps({'name': 'mobile_use', 'arguments': {'action': action, **arguments}})}</tool_call>"


DECISIONS = [
    Decision(Action.click(200, 300),
             response=f"<think>Tap it. {HOSTILE}</think>{_call('click', coordinate=[200, 300])}"),
    Decision(None, response=HOSTILE, parse_error=f"no_tool_call: {HOSTILE}"),
    Decision(Action.swipe((270, 900), (270, 300)), response=_call("swipe")),
    Decision(Action.scroll(Direction.DOWN), response=_call("scroll")),
    Decision(Action.type_text("hello <i>world</i>"), response=_call("type", text="hello <i>world</i>")),
    Decision(Action(type="drag", point=(100, 100), end=(400, 500)), response=_call("drag")),
    Decision(Action.terminate("failure"), response=_call("terminate", status="failure")),
]


def _annotated(trajectory, *, rewards, patched=(), expert=None, boxes=None, **info):
    """The trajectory as a trainer records it: rewards and advantages on the steps, a patched step, the
    expert action and target boxes of step 0, the group and rollout kind in ``info``."""
    steps = []
    for step, reward in zip(trajectory.steps, rewards):
        extra = {"expert_action": expert.to_json()} if step.index == 0 and expert is not None else {}
        steps.append(dataclasses.replace(
            step, reward=reward, advantage=round(reward - 0.25, 3), patched=step.index in patched,
            patch=_call("swipe") if step.index in patched else None, info={**step.info, **extra},
            target_boxes=boxes if step.index == 0 and boxes else ()))
    return dataclasses.replace(trajectory, steps=tuple(steps), info={**trajectory.info, **info})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run directory whose store holds an oracle episode and a GRPO group of two: a scripted model's
    episode (every kind of mark, a parse failure, hostile text) and a random agent's."""
    run = tmp_path_factory.mktemp("run")
    store = TrajectoryStore(run / "store")
    env = MobileSimEnv(width=WIDTH, height=HEIGHT)
    oracle = run_episode(env, make_task("SettingsToggleWifi", 1), OracleAgent(), episode_id="oracle-1",
                         policy_version="expert")
    task = make_task("ShoppingAddItem", 2)
    model = run_episode(env, task, ScriptedModel(DECISIONS), episode_id="model-1", policy_version="step-3")
    model = dataclasses.replace(model, instruction=f"Add milk {HOSTILE}")
    model = _annotated(model, rewards=[1.0, 0.0, 0.1, 0.5, 0.5, 0.1, 0.0], patched={2},
                       expert=Action.click(210, 320), boxes=((150.0, 260.0, 260.0, 340.0),),
                       group=GROUP, rollout="online")
    random = run_episode(env, task, RandomAgent(5), episode_id="random-1", policy_version="step-3", max_steps=4)
    random = _annotated(random, rewards=[0.0] * 4, group=GROUP, rollout="online")
    for trajectory in (oracle, model, random):
        assert store.put(trajectory)
    return run


# --- without a browser ---------------------------------------------------------------------------------------


def test_a_scroll_is_drawn_as_the_stroke_the_device_performs():
    [mark] = action_marks(Action.scroll(Direction.DOWN, point=(100, 800)), (WIDTH, HEIGHT))
    # Scrolling down moves the finger up from the anchor by 0.3 of the screen height: (100, 800) → (100, 440).
    assert mark.kind == "stroke" and mark.points == ((100, 800), (100, 440))
    assert mark.points == scroll_stroke(Direction.DOWN, (WIDTH, HEIGHT), anchor=(100, 800))
    [caption] = action_marks(Action.type_text("hi"), (WIDTH, HEIGHT))
    assert caption.kind == "caption" and caption.label == 'type text="hi"'


def test_the_thought_is_the_think_block_or_the_text_before_a_tool_call():
    assert thought_of("<think> look left </think><action>{}</action>") == "look left"
    assert thought_of('Tap Wi-Fi.\n<tool_call>{"name": "x"}</tool_call>') == "Tap Wi-Fi."
    assert thought_of("no structure at all") is None


def test_a_semi_online_step_shows_the_expert_step_of_its_expert_episode(tmp_path):
    store = TrajectoryStore(tmp_path / "store")
    expert = run_episode(MobileSimEnv(width=WIDTH, height=HEIGHT), make_task("SettingsToggleWifi", 1), OracleAgent(),
                         episode_id="expert-1", policy_version="expert")
    store.put(expert)
    # A rollout on the expert's screens (stored by path, as the semi-online rollout records them).
    stored = store.get("expert-1")
    rollout = dataclasses.replace(
        stored, episode_id="rollout-1", policy_version="step-1", info={"expert_episode_id": "expert-1"},
        steps=tuple(dataclasses.replace(s, action=Action.click(5, 5), matched=False) for s in stored.steps[:2]))
    store.put(rollout)
    views = step_views(store, store.get("rollout-1"))
    assert [v.expert for v in views] == [describe_action(s.action) for s in expert.steps[:2]]
    taps = [(m.role, m.points[0]) for m in views[0].marks]
    assert taps == [("expert", expert.steps[0].action.point), ("action", (5.0, 5.0))]
    with TestClient(create_app(store)) as client:
        assert '<a class="expert-episode" href="expert-1.html">' in client.get("/episode/rollout-1.html").text


def test_open_store_takes_a_run_directory_or_a_store_and_names_a_wrong_path(run_dir, tmp_path):
    assert len(open_store(run_dir)) == 3 and len(open_store(run_dir / "store")) == 3
    with pytest.raises(DataError, match=str(tmp_path / "missing")):
        open_store(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a run directory"):
        open_store(tmp_path / "empty")


def test_the_server_refuses_unknown_pages_and_paths_out_of_the_store(run_dir):
    with TestClient(create_app(open_store(run_dir))) as client:
        page = client.get("/episode/model-1.html")
        assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
        assert "&lt;script&gt;" in page.text and "<script>window" not in page.text
        assert client.get("/episode/no-such-episode.html").status_code == 404
        assert client.get("/group/no-such-group.html").status_code == 404
        assert client.get("/screens/..%2F..%2Fmanifest.json").status_code == 404
        assert client.get("/screens/images/../manifest.json").status_code == 404
        image = page.text.split('src="../screens/', 1)[1].split('"', 1)[0]
        assert client.get(f"/screens/{image}").content.startswith(b"\x89PNG")


# --- in the browser ------------------------------------------------------------------------------------------

GEOMETRY = """
const [section, selector] = arguments;
const img = document.querySelector(section + " img.shot").getBoundingClientRect();
const box = (el) => {
  const r = el.getBoundingClientRect();
  return [r.left - img.left, r.top - img.top, r.width, r.height];
};
const mark = document.querySelector(section + " " + selector);
return {scale: [img.width / WIDTH, img.height / HEIGHT], box: mark ? box(mark) : null};
""".replace("WIDTH", str(WIDTH)).replace("HEIGHT", str(HEIGHT))


def _centre(driver, section: str, selector: str) -> tuple[float, float]:
    """The centre of a mark, in screenshot pixels (page geometry divided by the shown image's scale)."""
    found = driver.execute_script(GEOMETRY, section, selector)
    assert found["box"] is not None, f"no {selector} in {section}"
    (sx, sy), (left, top, width, height) = found["scale"], found["box"]
    return (left + width / 2) / sx, (top + height / 2) / sy


def _line(driver, section: str, selector: str) -> tuple[float, float, float, float]:
    """A stroke's bounding box in screenshot pixels: left, top, right, bottom."""
    found = driver.execute_script(GEOMETRY, section, selector)
    (sx, sy), (left, top, width, height) = found["scale"], found["box"]
    return left / sx, top / sy, (left + width) / sx, (top + height) / sy


def _no_injection(driver) -> None:
    assert driver.execute_script("return window.pwned") is None, "model text ran as script"
    scripts = driver.execute_script("return Array.from(document.scripts).map((s) => s.getAttribute('src'))")
    assert all(src and src.endswith("static/viewer.js") for src in scripts), scripts
    assert not driver.find_elements("css selector", "main img[src=x], main b")


def _check_episode_page(driver, base: str) -> None:
    """The scripted model's page: every mark where its action says, every field shown, nothing run."""
    driver.get(f"{base}/episode/model-1.html")
    loaded = f"return Array.from(document.querySelectorAll('img.shot')).every((i) => i.naturalWidth === {WIDTH})"
    wait_for(driver, lambda d: d.execute_script(loaded), 10, "every screenshot loaded")
    # The click at (200, 300) and the expert's at (210, 320): marker centres within 1 screenshot pixel.
    for selector, expected in ((".mark.tap.action .dot", (200, 300)), (".mark.tap.expert .dot", (210, 320))):
        x, y = _centre(driver, "#step-0", selector)
        assert abs(x - expected[0]) <= 1 and abs(y - expected[1]) <= 1, (selector, x, y)
    left, top, right, bottom = _line(driver, "#step-0", ".mark.box")
    assert (round(left), round(top), round(right), round(bottom)) == (150, 260, 260, 340)
    # The swipe (270, 900) → (270, 300), and the scroll down drawn as scroll_stroke's finger stroke.
    for step, (start, end) in ((2, ((270, 900), (270, 300))),
                               (3, scroll_stroke(Direction.DOWN, (WIDTH, HEIGHT)))):
        x, y = _centre(driver, f"#step-{step}", ".mark.stroke.action .start")
        assert abs(x - start[0]) <= 1 and abs(y - start[1]) <= 1, (step, x, y)
        _, top, _, bottom = _line(driver, f"#step-{step}", ".mark.stroke.action line")
        assert abs(top - min(start[1], end[1])) <= 3 and abs(bottom - max(start[1], end[1])) <= 3, (step, top, bottom)
    drag = driver.find_element("css selector", "#step-5 .mark.stroke.drag line")
    assert drag.value_of_css_property("stroke-dasharray") not in ("none", "")

    text = lambda css: driver.find_element("css selector", css).text
    assert "<script>" in text("#step-0 pre.thought") and "<b>bold</b>" in text("#step-0 pre.thought")
    assert text("#step-0 code.expert") == "click point=(210, 320)"
    assert "no_tool_call" in text("#step-1 .parse-error") and 'onerror="window.pwned' in text("#step-1 .parse-error")
    assert HOSTILE in text("#step-1 pre.raw")
    assert text("#step-2 .badge.patched") == "patched" and "failed-parse" in driver.find_element(
        "id", "step-1").get_attribute("class")
    assert text("#step-0 .reward") == "1" and text("#step-0 .advantage") == "0.75"
    assert 'type text="hello <i>world</i>"' in text("#step-4 .captions")
    assert HOSTILE in text("p.instruction")
    _no_injection(driver)

    body = driver.find_element("css selector", "body")
    for key, expected in (("j", "0"), ("j", "1"), ("j", "2"), ("k", "1")):
        body.send_keys(key)
        assert driver.execute_script("return document.body.dataset.currentStep") == expected
    assert driver.current_url.endswith("#step-1")
    assert driver.find_elements("css selector", "#step-1.current")
    assert not console_errors(driver)


@needs_chromium
def test_the_served_viewer_draws_filters_groups_and_navigates(run_dir, tmp_path):
    port = free_port()
    with server(["view", str(run_dir), "--port", str(port)], port, tmp_path / "view.log") as base, \
            chromium() as driver:
        driver.get(base + "/")
        rows = lambda: [r.text for r in driver.find_elements("css selector", "tbody tr") if r.is_displayed()]
        assert len(rows()) == 3
        save_screenshot(driver, "viewer-index")
        driver.find_element("css selector", 'select[data-filter="outcome"] option[value="success"]').click()
        assert [r.split()[0] for r in rows()] == ["oracle-1"] and driver.current_url.endswith("#outcome=success")
        # The filter state in the URL: a report can link to one policy version's episodes of one rollout kind.
        driver.get(base + "/index.html#policy=step-3&rollout=online")
        driver.refresh()
        assert sorted(r.split()[0] for r in rows()) == ["model-1", "random-1"]
        assert driver.find_element("id", "shown").text == "2"

        _check_episode_page(driver, base)
        assert "script-src 'self'" in driver.execute_script(
            "return fetch(location.href).then((r) => r.headers.get('content-security-policy'))")
        save_screenshot(driver, "viewer-episode")

        driver.get(base + "/episode/model-1.html")
        driver.find_element("link text", GROUP).click()
        heads = driver.find_elements("css selector", ".column-head a")
        assert sorted(h.text for h in heads) == ["model-1", "random-1"]
        assert len(driver.find_elements("css selector", ".row-head")) == len(DECISIONS)
        wait_for(driver, lambda d: d.execute_script(
            "return Array.from(document.images).every((i) => i.complete && i.naturalWidth > 0)"), 10, "group images")
        driver.find_element("css selector", "body").send_keys("j")
        assert len(driver.find_elements("css selector", ".cell.current")) == 2
        assert not console_errors(driver)
        save_screenshot(driver, "viewer-group")


@needs_chromium
def test_the_static_viewer_works_from_files_without_a_server(run_dir, tmp_path):
    out = tmp_path / "static"
    done = subprocess.run([sys.executable, "-m", "guiagent", "view", str(run_dir), "--static", str(out)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "wrote 3 episodes" in done.stdout
    with chromium() as driver:
        # No server and so no Content-Security-Policy: only the escaping keeps the model's text inert.
        _check_episode_page(driver, out.as_uri())
        driver.get((out / "index.html").as_uri())
        assert len(driver.find_elements("css selector", "tbody tr")) == 3
        driver.find_element("link text", GROUP).click()
        assert len(driver.find_elements("css selector", ".column-head")) == 2
        assert not console_errors(driver)
