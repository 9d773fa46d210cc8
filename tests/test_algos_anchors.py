"""Anchor-state keys: normalised accessibility-tree hashes, perceptual screenshot hashes, and the anchor ids
of MobileSim trajectories that GiGPO groups its steps by."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image, ImageDraw

from guiagent.agent import Decision, OracleAgent, ReplayAgent, run_episode
from guiagent.algos import AdvantageBatch, get_advantage
from guiagent.algos.anchors import (
    anchor_ids,
    anchor_key_from_a11y,
    group_by_phash,
    hamming,
    normalize_a11y,
    perceptual_hash,
)
from guiagent.envs.sim.env import MobileSimEnv
from guiagent.envs.sim.tasks import make_task
from guiagent.errors import DataError
from guiagent.types import Action, SystemButton

TREE = """<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>
<hierarchy rotation="0">
  <node index="0" text="{clock}" package="com.android.systemui" class="android.widget.TextView" bounds="[0,0][120,60]"/>
  <node index="{i}" text="Wi-Fi" resource-id="android:id/title" class="android.widget.TextView"
        package="com.android.settings" checked="false" focused="{focused}" bounds="[40,{y}][400,{y2}]"/>
  <node index="2" text="" resource-id="android:id/switch_widget" class="android.widget.Switch"
        package="com.android.settings" checkable="true" checked="{checked}" bounds="[900,300][1040,380]"/>
</hierarchy>"""


def tree(clock="9:41", i="1", focused="false", y=300, checked="false"):
    return TREE.format(clock=clock, i=i, focused=focused, y=y, y2=y + 80, checked=checked)


def test_volatile_parts_do_not_change_the_key():
    base = anchor_key_from_a11y(tree())
    # Status-bar clock, bounds jitter, focus, sibling index, whitespace between elements: same state.
    assert anchor_key_from_a11y(tree(clock="10:02", y=304, focused="true", i="3")) == base
    assert anchor_key_from_a11y(tree().replace("\n  ", "")) == base
    assert base.startswith("a11y:") and len(base) == 5 + 16


def test_state_changes_change_the_key():
    assert anchor_key_from_a11y(tree(checked="true")) != anchor_key_from_a11y(tree())
    assert anchor_key_from_a11y(tree().replace('text="Wi-Fi"', 'text="Bluetooth"')) != anchor_key_from_a11y(tree())


def test_clock_text_inside_the_app_is_masked():
    a = tree().replace('text="Wi-Fi"', 'text="Alarm at 7:30 AM"')
    b = tree().replace('text="Wi-Fi"', 'text="Alarm at 7:31 AM"')
    assert anchor_key_from_a11y(a) == anchor_key_from_a11y(b)


def test_text_trees_mask_coordinates_and_whitespace():
    a = "window 'Files'\n  button 'Open' (120, 48)\n  list  [0,0][800,600]\n"
    b = "window 'Files'\n  button   'Open' (121, 50)\n\n  list [0,0][801,600]"
    assert normalize_a11y(a) == normalize_a11y(b) == "window 'Files'\nbutton 'Open' <xy>\nlist <xy><xy>"
    assert anchor_key_from_a11y(a) != anchor_key_from_a11y(a.replace("Open", "Save"))
    # Broken XML falls back to the text normalisation instead of raising.
    assert normalize_a11y("<node a='1'") == "<node a='1'"


def test_dhash_by_hand():
    # A 9×8 image whose brightness falls from left to right: every pixel is brighter than its right
    # neighbour, so all 64 bits are 1. The mirrored image has all bits 0. (Resizing 9×8 to 9×8 is exact.)
    falling = Image.fromarray(np.tile(np.arange(250, 250 - 9 * 20, -20, dtype=np.uint8), (8, 1)))
    assert perceptual_hash(falling) == 2**64 - 1
    assert perceptual_hash(falling.transpose(Image.Transpose.FLIP_LEFT_RIGHT)) == 0
    assert hamming(2**64 - 1, 0) == 64


def _screen(button_y: int, noise_seed: int | None = None) -> Image.Image:
    img = Image.new("RGB", (270, 600), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, 270, 40], fill=(30, 30, 120))  # app bar
    draw.rectangle([20, button_y, 250, button_y + 60], fill=(0, 150, 0))
    draw.text((30, 100), "Settings", fill="black")
    if noise_seed is not None:  # sensor-free but real: JPEG-like small pixel noise
        arr = np.asarray(img).astype(np.int16)
        arr += np.random.default_rng(noise_seed).integers(-6, 7, arr.shape, dtype=np.int16)
        img = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    return img


@pytest.mark.parametrize("method", ["dhash", "phash"])
def test_perceptual_hash_near_for_same_screen_far_for_another(method):
    same = hamming(perceptual_hash(_screen(300), method), perceptual_hash(_screen(300, noise_seed=1), method))
    other = hamming(perceptual_hash(_screen(300), method), perceptual_hash(_screen(500), method))
    assert same <= 4 < other


def test_group_by_phash_is_leader_based_and_deterministic():
    # max_distance 1. 0b0 leads group 0; 0b1 is 1 bit away → 0; 0b11 is 2 bits from the leader 0b0
    # (though 1 from 0b1: no chaining) → new group 1; 0b111111 is 6 from 0b0 and 4 from 0b11 → group 2;
    # a second 0b1 → group 0 again.
    assert group_by_phash([0b0, 0b1, 0b11, 0b111111, 0b1], max_distance=1) == [0, 0, 1, 2, 0]
    assert group_by_phash([5, 5, 6], max_distance=0) == [0, 0, 1]
    assert group_by_phash([], max_distance=3) == []
    with pytest.raises(ValueError):
        group_by_phash([1], max_distance=-1)


# --- anchor_ids on MobileSim trajectories ---------------------------------------------------------------------


class Script:
    """A scripted agent: plays ``actions`` in order."""

    def __init__(self, actions):
        self.actions = actions

    def reset(self, task):
        self.next = 0

    def act(self, observation, history):
        self.next += 1
        return Decision(self.actions[self.next - 1])


def _rewarded(traj):
    """The env's verdict on the last step, 0 before (online outcome rewards)."""
    last = len(traj.steps) - 1
    steps = tuple(dataclasses.replace(s, reward=traj.outcome.reward if s.index == last else 0.0) for s in traj.steps)
    return dataclasses.replace(traj, steps=steps)


@pytest.fixture(scope="module")
def wifi():
    """Two MobileSim episodes of "Turn on Wi-Fi in Settings" (seed 0), one group:

    A (oracle):   home → settings (Wi-Fi off) → settings (Wi-Fi on), terminate: success, rewards [0, 0, 1]
    B (scripted): home → settings (Wi-Fi off) → BACK → home, terminate: failure, rewards [0, 0, 0]
    """
    env, task = MobileSimEnv(), make_task("SettingsToggleWifi", 0)
    a = run_episode(env, task, OracleAgent(), episode_id="A")
    b = run_episode(env, task, Script([a.steps[0].action, Action.system_button(SystemButton.BACK),
                                       Action.terminate("failure")]), episode_id="B")
    assert a.outcome.success and not b.outcome.success
    return _rewarded(a), _rewarded(b)


# Rows A0 A1 A2 B0 B1 B2 = home, settings-off, settings-on, home, settings-off, home.
SAME_SCREENS = [0, 1, 2, 0, 1, 0]


def test_a11y_anchors_join_the_same_screen_across_and_within_trajectories(wifi):
    ids = anchor_ids([wifi], source="a11y").tolist()
    assert ids == SAME_SCREENS
    assert anchor_ids([wifi]).tolist() == ids  # every MobileSim observation has a tree: auto = a11y


def test_phash_anchors_join_the_same_screen_across_and_within_trajectories(wifi):
    ids = anchor_ids([wifi], source="phash").tolist()
    # Home and Settings are far apart (about 30 of 64 bits); a revisited screen hashes the same.
    assert ids[0] == ids[3] == ids[5] and ids[1] == ids[4] and ids[0] != ids[1]
    # Flipping the Wi-Fi switch moves only a few bits: with distance 0 it is another state, as in the tree.
    assert anchor_ids([wifi], source="phash", phash_distance=0).tolist() == SAME_SCREENS


def test_auto_falls_back_to_screenshots_for_a_group_without_trees(wifi):
    a, b = wifi
    bare = dataclasses.replace(b, steps=tuple(
        dataclasses.replace(s, observation=dataclasses.replace(s.observation, a11y_tree=None)) for s in b.steps))
    # One step without a tree sends the whole group to screenshots, so its states stay comparable.
    assert anchor_ids([(a, bare)], phash_distance=0).tolist() == SAME_SCREENS
    with pytest.raises(DataError, match="B step 0.*no accessibility tree"):
        anchor_ids([(a, bare)], source="a11y")
    with pytest.raises(ValueError, match="source"):
        anchor_ids([wifi], source="pixels")


def test_groups_never_share_anchors(wifi):
    a, b = wifi
    replayed = run_episode(MobileSimEnv(), make_task("SettingsToggleWifi", 0), ReplayAgent(a), episode_id="A2")
    # Group 1 replays A: the same screens as group 0, but states are compared only inside a group.
    ids = anchor_ids([[a, b], [replayed]]).tolist()
    assert ids == SAME_SCREENS + [3, 4, 5]
    assert len(ids) == len(AdvantageBatch.from_trajectories([[a, b], [_rewarded(replayed)]]))


def test_gigpo_with_anchor_ids_by_hand(wifi):
    # γ = 0.5. Returns: A [0.25, 0.5, 1], B [0, 0, 0]. Episode level: totals [1, 0] → A +0.70711, B -0.70711.
    # Step groups by anchor: home {A0 0.25, B0 0, B2 0}: mean 1/12, std sqrt((1/36 + 2/144) / 2) = 0.14434
    #   → A0 1.15470, B0 B2 -0.57735. Settings-off {A1 0.5, B1 0} → ±0.70711. Settings-on {A2} alone → 0.
    batch = dataclasses.replace(AdvantageBatch.from_trajectories([wifi]), anchor_ids=anchor_ids([wifi]))
    r2 = 0.70711
    expected = [r2 + 1.15470, r2 + r2, r2, -r2 - 0.57735, -r2 - r2, -r2 - 0.57735]
    assert get_advantage("gigpo")(batch, gamma=0.5).tolist() == pytest.approx(expected, abs=1e-4)
