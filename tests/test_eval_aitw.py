"""AITW reference matcher (float32) and SeeClick's split metrics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guiagent.actions import AitwAction, AitwActionType
from guiagent.eval.aitw import (
    StepOutcome,
    aitw_action_of,
    check_actions_match,
    is_tap_action,
    resize_annotation_boxes,
    seeclick_metrics,
    subset_name,
)
from guiagent.types import Action

DP = AitwActionType.DUAL_POINT
NO_BOXES: list[list[float]] = []


def tap_match(a_yx, b_yx, boxes=NO_BOXES) -> bool:
    return check_actions_match(a_yx, a_yx, DP, b_yx, b_yx, DP, boxes)


# --- non-dual-point types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "t1,t2,expected",
    [
        (AitwActionType.TYPE, AitwActionType.TYPE, True),  # typed text is not compared
        (AitwActionType.PRESS_BACK, AitwActionType.PRESS_BACK, True),
        (AitwActionType.PRESS_BACK, AitwActionType.PRESS_HOME, False),
        (AitwActionType.STATUS_TASK_COMPLETE, AitwActionType.STATUS_TASK_IMPOSSIBLE, False),
        (AitwActionType.DUAL_POINT, AitwActionType.PRESS_ENTER, False),  # same points, different type
        (AitwActionType.PRESS_ENTER, AitwActionType.DUAL_POINT, False),
    ],
)
def test_non_dual_point_types_compare_type_only(t1, t2, expected):
    # Points that would be a perfect tap match must not matter once one side is not DUAL_POINT.
    assert check_actions_match((0.5, 0.5), (0.5, 0.5), t1, (0.5, 0.5), (0.5, 0.5), t2, NO_BOXES) is expected


@given(
    st.sampled_from([3, 5, 6, 7, 10, 11]), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)
)
@settings(max_examples=50, deadline=None)
def test_same_non_dual_type_matches_whatever_the_points(kind, a, b, c, d):
    assert check_actions_match((a, b), (c, d), kind, (d, c), (b, a), kind, NO_BOXES)


# --- tap / swipe threshold 0.04 in float32 ------------------------------------------------------------


def test_tap_threshold_is_inclusive_at_float32_0_04():
    edge = np.float32(0.04)
    assert is_tap_action((0.0, 0.0), (0.0, float(edge)))
    assert not is_tap_action((0.0, 0.0), (0.0, float(np.nextafter(edge, np.float32(1)))))
    assert is_tap_action((0.0, 0.0), (0.0, float(np.nextafter(edge, np.float32(0)))))


def test_tap_threshold_uses_float32_arithmetic():
    # 0.14 - 0.1 = 0.04000000000000001 in float64 (a swipe), but float32(0.14) - float32(0.1) == float32(0.04)
    # (a tap), which is what the JAX reference computes.
    assert is_tap_action((0.1, 0.5), (0.14, 0.5))
    # 0.94 - 0.9 = 0.0399999... in float64 (a tap), but 0.04000002 in float32 (a swipe).
    assert not is_tap_action((0.9, 0.5), (0.94, 0.5))


def test_tap_and_swipe_never_match():
    swipe = ((0.5, 0.5), (0.9, 0.5))
    assert not check_actions_match((0.5, 0.5), (0.5, 0.5), DP, *swipe, DP, [[0, 0, 1, 1]])


# --- tap distance 0.14 in float32 ---------------------------------------------------------------------


def test_tap_distance_threshold_at_and_around_0_14():
    edge = float(np.float32(0.14))
    assert tap_match((0.0, 0.0), (0.0, edge))
    assert not tap_match((0.0, 0.0), (0.0, float(np.nextafter(np.float32(0.14), np.float32(1)))))
    # 0.54 - 0.4 = 0.14 exactly in float64, but 0.14000002 in float32: the reference says no match.
    assert not tap_match((0.5, 0.4), (0.5, 0.54))
    # 0.34 - 0.2 is float32(0.14): match.
    assert tap_match((0.5, 0.2), (0.5, 0.34))


# --- annotation boxes ---------------------------------------------------------------------------------


def test_box_enlargement_each_side_by_0_7_size():
    boxes = [[0.4, 0.4, 0.1, 0.1]]  # y, x, h, w -> enlarged to [0.33, 0.57] on both axes
    resized = resize_annotation_boxes(boxes)
    np.testing.assert_allclose(resized, [[0.33, 0.33, 0.24, 0.24]], rtol=1e-6)
    assert resized.dtype == np.float32
    # 0.31 apart: only a shared (enlarged) box can make these match.
    assert tap_match((0.34, 0.34), (0.56, 0.56), boxes)
    assert not tap_match((0.34, 0.34), (0.56, 0.56), NO_BOXES)
    # One point outside the enlarged box, too far for the distance rule.
    assert not tap_match((0.34, 0.34), (0.58, 0.58), boxes)


def test_box_edges_are_included():
    boxes = [[0.4, 0.4, 0.1, 0.1]]
    resized = resize_annotation_boxes(boxes)[0]
    bottom = float(resized[0] + resized[2])  # float32 sum, as the reference compares
    left = float(resized[1])
    assert tap_match((bottom, left), (0.34, 0.56), boxes)


def test_box_clamped_at_screen_edge_keeps_reference_height():
    # A box at the top edge: top = max(0, 0.02 - 0.07) = 0, but height stays 2.4 * 0.1 = 0.24, so the
    # enlarged box reaches y = 0.24 (an edge-shifted box would stop at 0.19).
    boxes = [[0.02, 0.4, 0.1, 0.1]]
    np.testing.assert_allclose(resize_annotation_boxes(boxes), [[0.0, 0.33, 0.24, 0.24]], rtol=1e-6)
    assert tap_match((0.0, 0.34), (0.23, 0.56), boxes)
    assert not tap_match((0.0, 0.34), (0.25, 0.56), boxes)


def test_box_size_clamped_to_one():
    boxes = [[0.1, 0.0, 0.5, 0.8]]  # h + 1.4h = 1.2 -> 1; w + 1.4w = 1.92 -> 1
    np.testing.assert_allclose(resize_annotation_boxes(boxes), [[0.0, 0.0, 1.0, 1.0]], atol=1e-7)


def test_both_taps_must_share_one_box():
    boxes = [[0.1, 0.1, 0.05, 0.05], [0.8, 0.8, 0.05, 0.05]]
    assert not tap_match((0.11, 0.11), (0.81, 0.81), boxes)


# --- swipes -------------------------------------------------------------------------------------------


def test_swipes_match_on_main_axis_only():
    up = ((0.8, 0.5), (0.2, 0.5))
    down = ((0.2, 0.5), (0.8, 0.5))
    left = ((0.5, 0.8), (0.5, 0.2))
    assert check_actions_match(*up, DP, *down, DP, NO_BOXES)  # same axis, opposite direction
    assert not check_actions_match(*up, DP, *left, DP, NO_BOXES)
    # A tie on |dy| == |dx| picks the y axis (argmax returns the first index).
    diagonal = ((0.2, 0.2), (0.6, 0.6))
    assert check_actions_match(*diagonal, DP, *up, DP, NO_BOXES)
    assert not check_actions_match(*diagonal, DP, *left, DP, NO_BOXES)


yx = st.tuples(st.floats(0, 1, width=32), st.floats(0, 1, width=32))


@given(
    yx,
    yx,
    st.sampled_from([3, 4, 5]),
    yx,
    yx,
    st.sampled_from([3, 4, 5]),
    st.lists(st.tuples(*[st.floats(0, 1, width=32)] * 4), max_size=3),
)
@settings(max_examples=200, deadline=None)
def test_matching_is_symmetric(t1, l1, k1, t2, l2, k2, boxes):
    assert check_actions_match(t1, l1, k1, t2, l2, k2, boxes) == check_actions_match(
        t2, l2, k2, t1, l1, k1, boxes
    )


# --- canonical actions as SeeClick scores them ---------------------------------------------------------


def test_canonical_actions_in_aitw_terms():
    w, h = 1080, 2400
    click = aitw_action_of(Action.click(540, 1200), w, h)
    assert click.action_type == DP and click.touch_yx == click.lift_yx == (0.5, 0.5)
    # Scroll down (view moves down) = the finger moves up: same axis as a recorded upward swipe.
    scroll = aitw_action_of(Action.scroll("down"), w, h)
    assert scroll.touch_yx == (0.8, 0.5) and scroll.lift_yx == (0.2, 0.5)
    assert check_actions_match(scroll.touch_yx, scroll.lift_yx, DP, (0.7, 0.4), (0.3, 0.42), DP, NO_BOXES)
    assert not check_actions_match(scroll.touch_yx, scroll.lift_yx, DP, (0.5, 0.1), (0.5, 0.9), DP, NO_BOXES)
    assert aitw_action_of(Action.system_button("back"), w, h).action_type == AitwActionType.PRESS_BACK
    assert aitw_action_of(Action.type_text("hi"), w, h).typed_text == "hi"
    assert aitw_action_of(Action(type="hotkey", keys=("ctrl", "c")), w, h).action_type == -1


# --- SeeClick metrics ---------------------------------------------------------------------------------


def _o(subset, gt, pred, match):
    return StepOutcome(subset, gt, pred, match)


def test_seeclick_metrics_by_hand():
    tap = AitwAction(DP, (0.5, 0.5), (0.5, 0.5))
    swipe = AitwAction(DP, (0.8, 0.5), (0.2, 0.5))
    typed = AitwAction(AitwActionType.TYPE, typed_text="Hello World")
    back = AitwAction(AitwActionType.PRESS_BACK)
    outcomes = [
        # general: 4 steps
        _o("general", tap, tap, True),
        _o("general", swipe, tap, False),  # type matches (both DUAL_POINT), action does not
        _o("general", typed, AitwAction(AitwActionType.TYPE, typed_text="hello"), True),  # contained: text ok
        _o("general", back, None, False),  # parse failure / missing: in the total only
        # install: 2 steps
        _o("install", typed, tap, False),  # SeeClick: a non-TYPE prediction has "" text, which matches
        _o("install", tap, tap, False),
    ]
    m = seeclick_metrics(outcomes)
    g, i = m["subsets"]["general"], m["subsets"]["install"]
    assert g["steps"] == 4 and g["action_acc"] == 2 / 4 and g["type_acc"] == 3 / 4
    assert g["text_acc"] == 1.0 and g["click_acc"] == 1.0 and g["scroll_acc"] == 0.0
    assert (
        i["action_acc"] == 0.0 and i["type_acc"] == 1 / 2 and i["text_acc"] == 1.0 and i["click_acc"] == 0.0
    )
    assert i["scroll_acc"] is None
    assert m["overall"] == pytest.approx((0.5 + 0.0) / 2)  # mean of subsets, not pooled (2/6)
    assert m["pooled"]["action_acc"] == pytest.approx(2 / 6)
    strict = seeclick_metrics(outcomes, strict_text=True)
    assert strict["subsets"]["install"]["text_acc"] == 0.0


def test_subset_names_normalise():
    assert subset_name("GoogleApps") == subset_name("google_apps") == "googleapps"
    assert subset_name(None) == "all"


def test_seeclick_ground_truth_scrolls_use_the_fixed_gesture():
    from guiagent.eval.aitw import ground_truth_of

    info = {
        "action_type": 4,
        "touch_yx": [0.5, 0.45],
        "lift_yx": [0.52, 0.9],
        "typed_text": "",
        "annotations_yxhw": [[0.1, 0.1, 0.2, 0.2]],
        "action_type_text": "scroll left",
    }
    gt, boxes = ground_truth_of(info)
    assert (gt.touch_yx, gt.lift_yx) == ((0.5, 0.2), (0.5, 0.8)) and boxes == [[0.1, 0.1, 0.2, 0.2]]
    raw, _ = ground_truth_of({**info, "action_type_text": "click"})
    assert raw.touch_yx == (0.5, 0.45)


def test_seeclick_split_store_scores_every_subset(tmp_path):
    import json

    from guiagent.actions import ActionSpaceConfig
    from guiagent.data import samples
    from guiagent.data.convert import convert
    from guiagent.data.store import iter_episodes
    from guiagent.eval import evaluate
    from guiagent.eval.predictions import load_predictions

    src = samples.write_aitw_seeclick_sample(tmp_path / "src", episodes_per_subset=1, seed=4)
    convert("aitw_seeclick", src, tmp_path / "store", images=tmp_path / "src" / "aitw_images", split="test")
    lines = []
    for t in iter_episodes(tmp_path / "store"):
        for s in t.steps:  # the expert's own action on even steps, nothing on odd ones
            if s.index % 2 == 0 and s.action is not None:
                lines.append({"episode_id": t.episode_id, "step": s.index, "action": s.action.to_json()})
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    report = evaluate("aitw", tmp_path / "store", load_predictions(tmp_path / "p.jsonl"), ActionSpaceConfig())
    subsets = report["metrics"]["subsets"]
    assert list(subsets) == ["general", "install", "googleapps", "single", "webshopping"]
    for m in subsets.values():
        assert m["action_acc"] == pytest.approx(len(range(0, m["steps"], 2)) / m["steps"])
    assert report["notes"][0].startswith("overall = mean")
