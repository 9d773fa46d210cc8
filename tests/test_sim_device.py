"""MobileSim device behaviour: rendering, XML/hit-test consistency, input, navigation, scrolling, state."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from guiagent.envs.sim.apps import APPS, LAUNCHER
from guiagent.envs.sim.device import MobileSim, keycode
from guiagent.envs.sim.oracle import UIScreen
from guiagent.envs.sim.ui import hit_test, iter_nodes
from guiagent.errors import ActionError, DataError

CONTACTS, SHOPPING, SETTINGS = "com.android.contacts", "com.guiagent.shopping", "com.android.settings"


def ui(sim: MobileSim) -> UIScreen:
    return UIScreen(sim.dump_ui_xml(), sim.size)


def tap_node(sim: MobileSim, **query) -> None:
    node = ui(sim).first(**query)
    assert node is not None, f"no node {query} on screen {sim.current_focus()}"
    sim.tap(*node.center)


def test_screenshot_is_a_png_of_the_screen_size_and_not_blank():
    sim = MobileSim()
    image = Image.open(io.BytesIO(sim.screenshot_png()))
    assert image.format == "PNG" and image.size == (1080, 2400)
    assert len(image.convert("RGB").getcolors(1 << 20)) > 5
    small = MobileSim(540, 1200)
    assert Image.open(io.BytesIO(small.screenshot_png())).size == (540, 1200)
    assert sim.screenshot_rgb().size == (1080, 2400)


def test_xml_is_uiautomator_format_with_bounds_inside_parents():
    sim = MobileSim()
    sim.start_app(SETTINGS)
    root = ET.fromstring(sim.dump_ui_xml())
    assert root.tag == "hierarchy" and root.get("rotation") == "0"
    attrs = {"index", "text", "resource-id", "class", "package", "content-desc", "checkable", "checked",
             "clickable", "enabled", "focusable", "focused", "scrollable", "long-clickable", "password",
             "selected", "bounds"}

    def walk(node, parent_box):
        assert set(node.attrib) == attrs
        a, b = node.get("bounds").strip("[]").split("][")
        x1, y1 = map(int, a.split(","))
        x2, y2 = map(int, b.split(","))
        box = (x1, y1, x2, y2)
        assert parent_box[0] <= x1 < x2 <= parent_box[2] and parent_box[1] <= y1 < y2 <= parent_box[3]
        for child in node:
            walk(child, box)

    walk(root[0], (0, 0, 1080, 2400))
    packages = {n.get("package") for n in root.iter("node")}
    assert {SETTINGS, "com.android.systemui"} <= packages


def _all_screens():
    """A tour through every app and screen kind (lists, details, forms, dialogs, keyboard, recents)."""
    sim = MobileSim(seed=5)
    yield sim
    for pkg in APPS:
        sim.start_app(pkg)
        yield sim
    sim.start_app(CONTACTS)
    tap_node(sim, rid="contact")
    yield sim
    tap_node(sim, rid="delete")
    yield sim  # dialog
    sim.keyevent("KEYCODE_BACK")
    tap_node(sim, rid="edit")
    tap_node(sim, rid="edit_phone")
    yield sim  # keyboard
    sim.keyevent(3)
    sim.start_app("com.guiagent.browser")
    tap_node(sim, rid="url_bar")
    sim.input_text("solar panels\n")
    yield sim
    sim.keyevent(187)
    yield sim  # recents


def test_tapping_the_centre_of_every_clickable_node_hits_that_node():
    checked = 0
    for sim in _all_screens():
        tree = sim.view_tree()
        for node in iter_nodes(tree, visible_only=True):
            if node.clickable:
                x1, y1, x2, y2 = node.bounds
                hit = hit_test(tree, (x1 + x2) / 2, (y1 + y2) / 2)
                assert hit is node, f"{sim.current_focus()}: tap at centre of {node.rid or node.text} hit {hit and hit.rid}"
                checked += 1
    assert checked > 150


def test_xml_lists_exactly_the_touchable_nodes_with_their_bounds():
    for sim in _all_screens():
        xml_clickable = sorted((n.bounds, n.rid) for n in ui(sim).nodes if n.clickable)
        tree_clickable = sorted((n.bounds, n.rid) for n in iter_nodes(sim.view_tree(), True) if n.clickable)
        assert xml_clickable == tree_clickable


def test_dialog_covers_the_screen_below_it():
    sim = MobileSim(seed=1)
    sim.start_app(CONTACTS)
    tap_node(sim, rid="contact")
    edit = ui(sim).first(rid="edit")
    tap_node(sim, rid="delete")
    screen = ui(sim)
    assert screen.dialog_shown and screen.first(rid="edit") is None
    sim.tap(*edit.center)  # lands on the scrim: dismisses, does not open the editor
    assert not ui(sim).dialog_shown and sim.current_focus()[1] == ".activities.ContactDetailActivity"


def test_same_seed_and_inputs_give_identical_screens_and_different_seeds_differ():
    def play(seed: int) -> list[str]:
        sim = MobileSim(seed=seed)
        hashes = []
        for step in (lambda: sim.start_app(CONTACTS), lambda: sim.swipe(540, 1800, 540, 900),
                     lambda: tap_node(sim, rid="contact"), lambda: sim.keyevent(4),
                     lambda: sim.start_app(SHOPPING), lambda: tap_node(sim, rid="new_item"),
                     lambda: sim.input_text("Crème brûlée ✓")):
            step()
            hashes.append(hashlib.sha256(sim.screenshot_png() + sim.dump_ui_xml().encode()).hexdigest())
        return hashes

    assert play(7) == play(7)
    assert play(7) != play(8)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["tap", "swipe", "key", "text", "long"]),
                          st.integers(0, 1079), st.integers(0, 2399), st.integers(0, 2399)),
                min_size=1, max_size=8))
def test_any_input_sequence_is_deterministic_and_keeps_the_tree_valid(inputs):
    def play() -> tuple[str, str]:
        sim = MobileSim(seed=2)
        sim.start_app(SHOPPING)
        for kind, x, y, y2 in inputs:
            if kind == "tap":
                sim.tap(x, y)
            elif kind == "long":
                sim.long_press(x, y)
            elif kind == "swipe":
                sim.swipe(x, y, x, y2)
            elif kind == "key":
                sim.keyevent([3, 4, 66, 67, 187][x % 5])
            else:
                sim.input_text("ab ü")
        for node in iter_nodes(sim.view_tree()):
            x1, y1, x2, y2 = node.bounds
            assert 0 <= x1 < x2 <= 1080 and 0 <= y1 < y2 <= 2400
        return hashlib.sha256(sim.screenshot_png()).hexdigest(), sim.dump_ui_xml()

    assert play() == play()


def test_soft_keyboard_types_with_shift_and_delete_and_input_text_takes_unicode():
    sim = MobileSim(seed=0)
    sim.start_app(SHOPPING)
    assert not ui(sim).keyboard_shown
    tap_node(sim, rid="new_item")
    assert ui(sim).keyboard_shown and ui(sim).first(rid="new_item").focused
    tap_node(sim, desc="shift")
    for key in "kiwi":
        tap_node(sim, desc=key.upper() if key == "k" else key)
    tap_node(sim, desc="space")
    tap_node(sim, desc="x")
    tap_node(sim, desc="delete")
    sim.input_text("日本 ñ")
    assert ui(sim).first(rid="new_item").text == "Kiwi 日本 ñ"
    sim.keyevent("KEYCODE_ENTER")
    names = [i["name"] for i in sim.state()["shopping"]]
    assert names[-1] == "Kiwi 日本 ñ"
    assert ui(sim).first(rid="new_item").text == ""


def test_text_without_a_focused_field_is_dropped_and_back_hides_the_keyboard_first():
    sim = MobileSim()
    sim.start_app(SHOPPING)
    sim.input_text("lost")
    assert ui(sim).first(rid="new_item").text == ""
    tap_node(sim, rid="new_item")
    sim.keyevent(4)
    assert not ui(sim).keyboard_shown and sim.current_focus()[0] == SHOPPING
    sim.keyevent(4)
    assert sim.current_focus() == (LAUNCHER, ".Launcher")


def test_back_home_and_app_switch_navigate_like_android():
    sim = MobileSim(seed=4)
    assert sim.current_focus() == (LAUNCHER, ".Launcher")
    tap_node(sim, rid="icon", text="Contacts")
    assert sim.current_focus() == (CONTACTS, ".activities.PeopleActivity")
    tap_node(sim, rid="contact")
    assert sim.current_focus()[1] == ".activities.ContactDetailActivity"
    sim.keyevent("KEYCODE_HOME")
    assert sim.current_focus() == (LAUNCHER, ".Launcher")
    sim.start_app(CONTACTS)  # resumes the task where it was
    assert sim.current_focus()[1] == ".activities.ContactDetailActivity"
    sim.tap(*ui(sim).first(desc="Back").center)  # nav bar back button
    assert sim.current_focus()[1] == ".activities.PeopleActivity"
    sim.start_app(SETTINGS)
    sim.keyevent(187)
    assert sim.current_focus() == (LAUNCHER, ".RecentsActivity")
    cards = [n.text for n in ui(sim).find(rid="task")]
    assert cards == ["Settings", "Contacts"]
    tap_node(sim, rid="task", text="Contacts")
    assert sim.current_focus()[0] == CONTACTS
    sim.force_stop(CONTACTS)
    assert sim.current_focus() == (LAUNCHER, ".Launcher")
    sim.start_app(CONTACTS)
    assert sim.current_focus()[1] == ".activities.PeopleActivity"


def test_scrolling_reveals_rows_beyond_the_first_screen_and_stops_at_the_ends():
    sim = MobileSim(seed=0)
    sim.start_app(CONTACTS)
    names = [c["name"] for c in sim.state()["contacts"]]
    first_screen = {n.text for n in ui(sim).find(rid="contact_title")}
    assert names[0] in first_screen and names[-1] not in first_screen
    for _ in range(10):
        sim.swipe(540, 2000, 540, 600, 300)  # finger up: content moves up, later rows appear
    last_screen = {n.text.replace("  ★", "") for n in ui(sim).find(rid="contact_title")}
    assert names[-1] in last_screen and names[0] not in last_screen
    assert ui(sim).first(rid="contact_list").scrollable
    for _ in range(10):
        sim.swipe(540, 600, 540, 2000, 300)
    assert names[0] in {n.text.replace("  ★", "") for n in ui(sim).find(rid="contact_title")}


def test_short_swipes_are_taps_or_long_presses_and_long_press_falls_back_to_click():
    sim = MobileSim(seed=0)
    sim.start_app(SHOPPING)
    row = ui(sim).find(rid="item")[0]
    before = sim.state()["shopping"][0]["done"]
    sim.swipe(row.center[0], row.center[1], row.center[0] + 5, row.center[1], 50)  # a tap
    assert sim.state()["shopping"][0]["done"] != before
    sim.swipe(*row.center, *row.center, 800)  # a long press: delete dialog
    assert ui(sim).dialog_shown
    sim.keyevent(4)
    sim.start_app(SETTINGS)
    wifi = sim.state()["settings"]["wifi"]
    node = ui(sim).first(rid="wifi")
    sim.long_press(*node.center)  # no long-click listener: the click happens
    assert sim.state()["settings"]["wifi"] != wifi


def test_snapshot_restore_round_trips_through_json():
    sim = MobileSim(seed=3)
    sim.start_app(SHOPPING)
    tap_node(sim, rid="new_item")
    sim.input_text("Brötchen")
    sim.files["/sdcard/a.bin"] = b"\x00\x01"
    saved = json.loads(json.dumps(sim.snapshot()))
    png = sim.screenshot_png()
    sim.keyevent(3)
    sim.start_app(SETTINGS)
    sim.files.clear()
    sim.restore(saved)
    assert sim.screenshot_png() == png and sim.files == {"/sdcard/a.bin": b"\x00\x01"}
    with pytest.raises(DataError):
        sim.restore({"format": "something else"})
    with pytest.raises(DataError):
        sim.restore({"format": "mobilesim-snapshot/1", "world": {}, "task": None, "files": {}, "props": {}})


def test_keycodes_app_starts_and_props():
    assert keycode("KEYCODE_HOME") == 3 and keycode("back") == 4 and keycode("187") == 187 and keycode(66) == 66
    with pytest.raises(ActionError):
        keycode("KEYCODE_NOPE")
    sim = MobileSim()
    with pytest.raises(ActionError):
        sim.start_app("com.example.missing")
    with pytest.raises(ActionError):
        sim.start_app(SETTINGS, ".NoSuchActivity")
    for name in ("com.android.settings/.Settings", ".Settings", "com.android.settings.Settings",
                 "com.android.settings/com.android.settings.Settings"):
        sim.keyevent(3)
        sim.start_app(SETTINGS, name)
        assert sim.current_focus() == (SETTINGS, ".Settings")
    assert sim.props["sys.boot_completed"] == "1" and sim.props["ro.build.version.sdk"] == "34"
    assert set(APPS) <= set(sim.packages()) and sim.package_for("shopping list") == SHOPPING
    with pytest.raises(ActionError):
        sim.package_for("Camera")


def test_step_latency_is_slept_outside_the_lock():
    sim = MobileSim(step_latency=0.2)
    shots = []
    worker = threading.Thread(target=lambda: sim.tap(10, 10))
    start = time.perf_counter()
    worker.start()
    time.sleep(0.02)
    shots.append(sim.screenshot_png())  # not held up by the sleeping tap
    grabbed = time.perf_counter() - start
    worker.join()
    assert time.perf_counter() - start >= 0.2 and grabbed < 0.19 and shots[0]


def test_concurrent_inputs_and_screenshots_do_not_corrupt_state():
    sim = MobileSim(seed=1)
    sim.start_app(CONTACTS)
    errors = []

    def scroller():
        try:
            for i in range(15):
                sim.swipe(540, 1800, 540, 1000) if i % 2 else sim.swipe(540, 1000, 540, 1800)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=scroller) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(5):
        ET.fromstring(sim.dump_ui_xml())
        sim.screenshot_png()
    for t in threads:
        t.join()
    assert not errors


def test_renders_are_identical_across_processes_with_different_hash_seeds():
    import os
    import subprocess
    import sys

    script = ("import hashlib\nfrom guiagent.envs.sim.device import MobileSim\n"
              "s = MobileSim(seed=9)\ns.start_app('com.android.contacts')\ns.swipe(540, 1800, 540, 900)\n"
              "print(hashlib.sha256(s.screenshot_png() + s.dump_ui_xml().encode()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60,
                              env={**os.environ, "PYTHONHASHSEED": str(h)}).stdout.strip() for h in (1, 2)}
    assert len(digests) == 1 and len(digests.pop()) == 64


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"width": 100}, "320x480 to 4096x4096 pixels, got 100x2400"),
    ({"height": 10**6}, "got 1080x1000000"),  # would allocate and render a 3 GB frame per screenshot
    ({"step_latency": -1.0}, "step_latency must be 0 to 10.0 seconds"),
    ({"step_latency": float("nan")}, "got nan"),  # time.sleep(nan) raises at the first input otherwise
    ({"step_latency": 1e308}, r"got 1e\+308"),
])
def test_screen_size_and_latency_are_checked_when_the_device_is_made(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MobileSim(**kwargs)
