"""AndroidControl: UI-S1's evaluation matcher for every action type, step metrics, SOP and its runner."""

from __future__ import annotations

import pytest

from guiagent.actions import ActionSpaceConfig, format_action
from guiagent.data.store import EpisodeWriter
from guiagent.eval import androidcontrol as ac
from guiagent.eval.androidcontrol import StepAction, StepResult, match_step, sop_metrics, step_metrics
from guiagent.eval.predictions import load_predictions, write_predictions
from guiagent.types import Action, Observation, Step, Trajectory

W, H = 1000, 2000


def gt(record, boxes=()):
    return ac.expected_from_androidcontrol(record, W, H, boxes)


def pred(action: Action) -> StepAction:
    return ac.predicted_step_action(action, W, H)


# --- the matcher, one action type at a time ------------------------------------------------------------


def test_wait_is_type_only():
    assert match_step(pred(Action.wait(3)), gt({"action_type": "wait"})) == (True, True)
    assert match_step(pred(Action.click(1, 1)), gt({"action_type": "wait"})) == (False, False)


def test_system_button_names_compare_case_insensitive_trimmed():
    back = gt({"action_type": "navigate_back"})
    assert match_step(pred(Action.system_button("back")), back) == (True, True)
    assert match_step(pred(Action.system_button("home")), back) == (True, False)
    uis1_back = ac.expected_from_check_options({"action": "system_button", "button": " Back "}, W, H)
    assert match_step(pred(Action.system_button("back")), uis1_back) == (True, True)


def test_type_text_containment_either_way():
    target = gt({"action_type": "input_text", "text": "Sculpture Art"})
    assert match_step(pred(Action.type_text("sculpture art ")), target) == (True, True)
    assert match_step(pred(Action.type_text("Sculpture")), target) == (True, True)  # pred inside gt
    assert match_step(pred(Action.type_text("my sculpture art piece")), target) == (
        True,
        True,
    )  # gt inside pred
    assert match_step(pred(Action.type_text("painting")), target) == (True, False)
    assert match_step(pred(Action.open_app("Sculpture Art")), target) == (False, False)
    # As in the reference's check_text, "" is contained in every text: typing nothing matches here (the
    # training rewards refuse that, tests/test_rewards_matching.py).
    assert match_step(pred(Action.type_text(" ")), target) == (True, True)


def test_open_by_text_or_click_in_candidate_box():
    boxes = [(400, 400, 600, 600), (0, 0, 1000, 2000)]
    target = gt({"action_type": "open_app", "app_name": "pCloud"}, boxes)
    assert match_step(pred(Action.open_app("pcloud")), target) == (True, True)
    assert match_step(pred(Action.open_app("Files")), target) == (True, False)
    assert match_step(pred(Action.click(500, 500)), target) == (True, True)
    # Inside the second (screen-sized) candidate box: any box counts.
    assert match_step(pred(Action.click(900, 1900)), target) == (True, True)
    # Without candidate boxes a click can never open an app.
    bare = gt({"action_type": "open_app", "app_name": "pCloud"})
    assert match_step(pred(Action.click(500, 500)), bare) == (False, False)
    assert match_step(pred(Action.type_text("pCloud")), target) == (False, False)


def test_open_click_near_first_box_centre_counts():
    # Box (0.4..0.45, 0.2..0.225) normalised; enlarged 1.2x it ends at x=0.455. A click at x=0.46, y at
    # the centre is outside, but 0.035 from the first box's centre (0.425, 0.2125): within 0.04.
    target = gt({"action_type": "open_app", "app_name": "Maps"}, [(400, 400, 450, 450)])
    assert match_step(pred(Action.click(460, 425)), target) == (True, True)
    assert match_step(pred(Action.click(470, 425)), target) == (True, False)  # 0.045 away


def test_swipe_is_type_only_direction_ignored():
    target = gt({"action_type": "scroll", "direction": "down"})
    assert match_step(pred(Action.scroll("up")), target) == (True, True)
    assert match_step(pred(Action.swipe((10, 10), (900, 10))), target) == (True, True)
    assert match_step(pred(Action.click(10, 10)), target) == (False, False)


@pytest.mark.parametrize("kind", ["click", "long_press"])
def test_click_inside_enlarged_box_or_near_point(kind):
    make = Action.click if kind == "click" else Action.long_press
    # Box 400..500 x 1000..1100 -> normalised 0.4..0.5 x 0.5..0.55; enlarged 1.2x about its centre:
    # 0.39..0.51 x 0.495..0.555. Ground-truth point (450, 1050) = (0.45, 0.525).
    target = gt({"action_type": kind, "x": 450, "y": 1050}, [(400, 1000, 500, 1100)])
    assert match_step(pred(make(505, 1105)), target) == (True, True)  # outside the box, inside enlarged
    assert match_step(pred(make(510, 1050)), target) == (True, True)  # exactly on the enlarged edge x=0.51
    assert match_step(pred(make(520, 1050)), target) == (True, False)  # 0.07 away, outside
    # No boxes: distance 0.04 (normalised) from the point, edges included.
    bare = gt({"action_type": kind, "x": 450, "y": 1050})
    assert match_step(pred(make(490, 1050)), bare) == (True, True)  # 0.04 exactly
    assert match_step(pred(make(491, 1050)), bare) == (True, False)
    other = Action.long_press(450, 1050) if kind == "click" else Action.click(450, 1050)
    assert match_step(pred(other), target) == (False, False)


def test_prediction_normalised_by_its_own_screen():
    # The same normalised point on a different screen size matches: coordinates are compared in [0, 1].
    target = gt({"action_type": "click", "x": 500, "y": 1000})
    assert match_step(ac.predicted_step_action(Action.click(250, 500), 500, 1000), target) == (True, True)


def test_missing_prediction_is_wrong():
    assert match_step(None, gt({"action_type": "wait"})) == (False, False)


# --- step metrics and SOP by hand ---------------------------------------------------------------------


def _r(ep, i, kind, t, f):
    return StepResult(ep, i, kind, t, f)


def test_step_metrics_by_hand():
    results = [
        _r("a", 0, "click", True, True),
        _r("a", 1, "click", True, False),
        _r("a", 2, "type", True, True),
        _r("b", 0, "click", False, False),
        _r("b", 1, "wait", True, True),
    ]
    m = step_metrics(results)
    assert m["type_acc"] == 4 / 5 and m["step_sr"] == 3 / 5
    # Grounding: clicks whose type matched (2), of which 1 hit.
    assert m["grounding_acc"] == 1 / 2 and m["grounding_steps"] == 2


def test_sop_by_hand():
    episodes = [
        [_r("a", 0, "click", True, True), _r("a", 1, "click", True, True)],  # 2/2, success
        [
            _r("b", 0, "click", True, True),
            _r("b", 1, "type", True, False),
            _r("b", 2, "wait", True, True),
        ],  # 1/3
        [
            _r("c", 0, "click", False, False),
            _r("c", 1, "click", True, True),
        ],  # 0/2: later matches don't count
        [],  # skipped
    ]
    m = sop_metrics(episodes)
    pg = (1 + 1 / 3 + 0) / 3
    tsr = 1 / 3
    assert m["episodes"] == 3
    assert m["pg"] == pytest.approx(pg) and m["tsr"] == pytest.approx(tsr)
    assert m["score"] == pytest.approx((pg + tsr) / 2)
    assert sop_metrics([])["score"] is None


# --- SOP through a store, a predictions file and the runner -----------------------------------------

EPISODES = {
    "e1": [
        {"action_type": "open_app", "app_name": "Clock"},
        {"action_type": "click", "x": 100, "y": 200},
        {"action_type": "input_text", "text": "7 am"},
    ],
    "e2": [{"action_type": "click", "x": 500, "y": 500}, {"action_type": "navigate_back"}],
}


def write_store(root) -> None:
    with EpisodeWriter(root, "androidcontrol", source="hand-made", split="test") as writer:
        for ep, actions in EPISODES.items():
            steps = []
            for i, record in enumerate(actions):
                obs = Observation(
                    W,
                    H,
                    screenshot_path=f"images/{ep}/{i}.png",
                    instruction=f"goal {ep}",
                    extras={"step_instruction": f"do {record['action_type']}"},
                )
                steps.append(
                    Step(i, obs, None, info={"androidcontrol": {"action": record, "step_instruction": "x"}})
                )
            writer.add(Trajectory(ep, ep, 0, "androidcontrol", "dataset", steps=tuple(steps)))


class ScriptedPolicy:
    """A policy that answers from a script, recording what it was shown (the StepPolicy protocol)."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def predict(self, observation, history):
        self.calls.append((observation, tuple(history)))
        return self.answers[len(self.calls) - 1]


def test_run_sop_stops_at_first_mismatch_and_scores_like_the_file(tmp_path):
    root = tmp_path / "store"
    write_store(root)
    space = ActionSpaceConfig(format="uis1")
    geo = space.geometry(W, H)
    text = lambda a: format_action(a, "uis1", geo)  # noqa: E731
    policy = ScriptedPolicy(
        [
            text(Action.open_app("clock")),
            text(Action.click(102, 201)),
            text(Action.type_text("7 AM")),  # e1: 3/3
            text(Action.click(900, 1900)),  # e2 step 0 misses: the episode ends, step 1 is never asked
        ]
    )
    records = list(ac.run_sop(root, policy, space, level="high"))
    assert [(r["episode_id"], r["step"]) for r in records] == [("e1", 0), ("e1", 1), ("e1", 2), ("e2", 0)]
    # The model's own responses are its history; High level hides the step instruction.
    assert policy.calls[2][1] == (records[0]["response"], records[1]["response"])
    assert "step_instruction" not in policy.calls[0][0].extras
    assert policy.calls[0][0].screenshot_path.startswith(str(root))
    write_predictions(tmp_path / "preds.jsonl", records)
    report = ac.evaluate(root, load_predictions(tmp_path / "preds.jsonl"), space)
    sop = report["metrics"]["high"]["sop"]
    assert sop["pg"] == pytest.approx((1 + 0) / 2) and sop["tsr"] == pytest.approx(1 / 2)
    assert sop["score"] == pytest.approx(0.5)
    assert report["missing_predictions"] == 1  # e2 step 1, never asked
    assert report["metrics"]["high"]["step_sr"] == pytest.approx(3 / 5)


def test_low_level_sees_the_step_instruction(tmp_path):
    root = tmp_path / "store"
    write_store(root)
    policy = ScriptedPolicy(["not an action"] * 5)
    records = list(ac.run_sop(root, policy, ActionSpaceConfig(format="uis1"), level="low"))
    assert policy.calls[0][0].extras["step_instruction"] == "do open_app"
    assert len(records) == 2  # a parse failure ends each episode at its first step


def test_uis1_store_uses_its_check_options(tmp_path):
    import json

    from guiagent.data import samples
    from guiagent.data.convert import convert
    from guiagent.data.store import iter_episodes

    path = samples.write_uis1_sample(tmp_path / "src", episodes=3, seed=1)
    convert("uis1", path, tmp_path / "store", images=tmp_path / "src" / "images")
    lines = []
    for t in iter_episodes(tmp_path / "store"):
        for s in t.steps:
            assert "check_options" in s.info["uis1"]
            lines.append({"episode_id": t.episode_id, "step": s.index, "action": s.action.to_json()})
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    report = ac.evaluate(tmp_path / "store", load_predictions(tmp_path / "p.jsonl"), ActionSpaceConfig())
    assert report["metrics"]["high"]["sop"]["score"] == 1.0
    assert report["metrics"]["high"]["step_sr"] == 1.0


def test_predictions_file_errors_name_the_line_or_are_skipped_and_counted(tmp_path):
    from guiagent.errors import DataError

    path = tmp_path / "preds.jsonl"
    lines = [
        '{"episode_id": "e", "step": 0, "response": "x"}',
        "{not json",
        '{"episode_id": "e", "response": "x"}',  # no step
        "",
        '{"episode_id": "e", "step": 0, "response": "again"}',  # duplicate key
        '{"sample_id": 7, "action": {"type": "click", "point": [1, 2]}}',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_predictions(path)
    assert info.value.file == str(path) and info.value.record == 2
    loaded = load_predictions(path, skip_invalid=True)
    assert loaded.invalid_lines == (2, 3, 5)
    assert loaded.step("e", 0).response == "x" and loaded.samples["7"].action == Action.click(1, 2)
    with pytest.raises(DataError, match="missing.jsonl"):
        load_predictions(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("benchmark", ["aitw", "androidcontrol", "odyssey"])
def test_a_step_without_ground_truth_is_a_data_error_naming_the_step(tmp_path, benchmark):
    from guiagent.errors import DataError
    from guiagent.eval import evaluate

    root = tmp_path / "store"
    with EpisodeWriter(root, benchmark, source="hand-made", split="test") as writer:
        step = Step(0, Observation(W, H, screenshot_path="images/e1/0.png", instruction="goal"), None, info={})
        writer.add(Trajectory("e1", "e1", 0, benchmark, "dataset", steps=(step,)))
    predictions = tmp_path / "preds.jsonl"
    write_predictions(predictions, [])
    with pytest.raises(DataError, match="step has no valid") as info:
        evaluate(benchmark, root, load_predictions(predictions), ActionSpaceConfig())
    assert info.value.record == "episode e1 step 0" and info.value.file.endswith("episodes.jsonl")
