"""UI-S1 training matcher and step reward (arXiv 2509.11543): hand-computed cases and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guiagent.rewards import RewardInput, get_reward, match_action, text_contains, token_f1, uis1_step_reward
from guiagent.rewards.matching import MatchResult, enlarge_box, finger_direction
from guiagent.types import Action, ActionType, Direction, SystemButton

SCREEN = (1000, 1000)
BOX = (100.0, 200.0, 200.0, 300.0)  # centre (150, 250), 100 x 100
EXPERT_CLICK = Action.click(150, 250)


# --- click: the enlarged box and the 0.04 threshold -------------------------------------------------------


def test_enlarge_box_about_centre():
    # centre (150, 250); 1.2 x 100 = 120 wide/high -> 60 each side of the centre.
    assert enlarge_box(BOX, 1.2) == pytest.approx((90.0, 190.0, 210.0, 310.0))


@pytest.mark.parametrize(
    "point, exact",
    [
        (
            (210.0, 250.0),
            True,
        ),  # right edge of the enlarged box (edges included); 60 px = 0.06 from the point
        ((90.0, 190.0), True),  # top-left corner of the enlarged box
        ((210.5, 250.0), False),  # just outside; 0.0605 > 0.04 so the distance rule does not save it
        ((150.0, 310.0), True),  # bottom edge
        ((150.0, 310.5), False),
    ],
)
def test_click_enlarged_box_edges(point, exact):
    result = match_action(Action.click(*point), EXPERT_CLICK, BOX, SCREEN)
    assert result == MatchResult(fmt=True, type_match=True, exact_match=exact)


@pytest.mark.parametrize(
    "point, exact",
    [
        ((540.0, 500.0), True),  # dx = 40/1000 = 0.04 exactly -> within (<=)
        ((541.0, 500.0), False),  # 0.041
        ((500.0, 580.0), True),  # dy = 80/2000 = 0.04: y is normalised by the height
        ((500.0, 581.0), False),
    ],
)
def test_click_distance_threshold_without_box(point, exact):
    expert = Action.click(500, 500)
    assert match_action(Action.click(*point), expert, None, (1000, 2000)).exact_match is exact


def test_click_threshold_is_euclidean():
    # (24, 64) px on 1000 x 2000 -> (0.024, 0.032) -> hypot = 0.04 exactly (3-4-5 triangle) -> match;
    # (25, 64) -> hypot(0.025, 0.032) = 0.0406 -> no match.
    expert = Action.click(500, 500)
    assert match_action(Action.click(524, 564), expert, None, (1000, 2000)).exact_match
    assert not match_action(Action.click(525, 564), expert, None, (1000, 2000)).exact_match


def test_long_press_needs_long_press_and_parse_failure_is_all_false():
    assert match_action(Action.long_press(150, 250), EXPERT_CLICK, BOX, SCREEN) == MatchResult(
        True, False, False
    )
    assert match_action(None, EXPERT_CLICK, BOX, SCREEN) == MatchResult(False, False, False)


# --- swipe / scroll: one finger-direction convention ------------------------------------------------------


def test_finger_direction_of_both_conventions():
    # SCROLL stores the view direction: scrolling down moves the finger up.
    assert finger_direction(Action.scroll("down")) is Direction.UP
    assert finger_direction(Action.scroll("left")) is Direction.RIGHT
    # SWIPE stores the finger: (500, 1500) -> (500, 500) moves up.
    assert finger_direction(Action.swipe((500, 1500), (500, 500))) is Direction.UP
    # dominant axis: dx = 300 > |dy| = 100 -> right.
    assert finger_direction(Action.swipe((100, 500), (400, 400))) is Direction.RIGHT


def test_scroll_expert_against_swipe_prediction():
    expert = Action.scroll("down")  # view down = finger up
    finger_up = Action.swipe((500, 1500), (500, 500))
    finger_down = Action.swipe((500, 500), (500, 1500))
    assert match_action(finger_up, expert, None, SCREEN) == MatchResult(True, True, True)
    assert match_action(finger_down, expert, None, SCREEN) == MatchResult(True, True, False)


def test_swipe_expert_against_scroll_prediction():
    expert = Action.swipe((500, 1500), (500, 500))  # finger up = view scrolls down
    assert match_action(Action.scroll("down"), expert, None, SCREEN).exact_match
    assert not match_action(Action.scroll("up"), expert, None, SCREEN).exact_match
    assert match_action(Action.scroll("up"), expert, None, SCREEN).type_match


def test_scroll_against_scroll_and_swipe_against_swipe():
    assert match_action(Action.scroll("left"), Action.scroll("left"), None, SCREEN).exact_match
    assert not match_action(Action.scroll("left"), Action.scroll("right"), None, SCREEN).exact_match
    right = Action.swipe((100, 500), (400, 450))
    assert match_action(Action.swipe((600, 600), (900, 640)), right, None, SCREEN).exact_match


# --- text, buttons, wait ----------------------------------------------------------------------------------


def test_text_containment_either_way_case_insensitive():
    expert = Action.type_text("Hello")
    assert match_action(Action.type_text("  hello world "), expert, None, SCREEN).exact_match
    assert match_action(Action.type_text("HELL"), expert, None, SCREEN).exact_match  # "hell" in "hello"
    assert not match_action(Action.type_text("goodbye"), expert, None, SCREEN).exact_match
    # Empty text never "contains" a non-empty target (differs from the released code on purpose).
    assert not match_action(Action.type_text(" "), expert, None, SCREEN).exact_match
    assert match_action(
        Action.open_app("settings"), Action.open_app("Settings app"), None, SCREEN
    ).exact_match
    assert not match_action(Action.open_app("settings"), expert, None, SCREEN).type_match


def test_system_button_and_wait_and_terminate():
    back = Action.system_button(SystemButton.BACK)
    assert match_action(Action.system_button("back"), back, None, SCREEN).exact_match
    assert match_action(Action.system_button("home"), back, None, SCREEN) == MatchResult(True, True, False)
    assert match_action(Action.wait(3), Action.wait(), None, SCREEN).exact_match  # type only
    assert match_action(Action.terminate("failure"), Action.terminate("success"), None, SCREEN).exact_match


def test_token_f1_and_containment_helpers():
    # "the cat sat" -> [cat, sat]; "cat sat on mat" -> [cat, sat, on, mat]: overlap 2, p = 1, r = 0.5,
    # F1 = 2 * 0.5 / 1.5 = 0.6667.
    assert token_f1("the cat sat", "cat sat on mat") == pytest.approx(2 / 3)
    assert token_f1("The Cat!", "cat") == 1.0  # case, punctuation and articles normalised away
    assert token_f1("", "cat") == 0.0 and token_f1("the", "a") == 1.0  # both normalise to nothing
    assert text_contains("abc", "xabcx") and not text_contains("", "abc") and text_contains("", " ")
    # UI-S1's own rule ("" is in every string), which the AndroidControl evaluator reproduces.
    assert text_contains("", "abc", empty_matches=True) and text_contains(None, "abc", empty_matches=True)
    assert not match_action(Action.type_text(" "), Action.type_text("milk"), None, SCREEN).exact_match


# --- the UI-S1 step reward --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt, type_match, exact, think, paper, code",
    [
        # paper: 0.1 fmt + 0.4 fmt type + 0.5 fmt type acc  (fmt needs the think block)
        # code:  0.1 think + 0.9 a, a = 0 (no parse) / 0.1 (wrong type) / 0.5 (type) / 1.0 (exact)
        (False, False, False, True, 0.0, 0.1),
        (False, False, False, False, 0.0, 0.0),
        (True, False, False, True, 0.1, 0.1 + 0.09),
        (True, True, False, True, 0.5, 0.1 + 0.45),
        (True, True, True, True, 1.0, 1.0),
        (True, True, True, False, 0.0, 0.9),  # no think: the paper's gate zeroes it, the code does not
    ],
)
def test_uis1_reward_table(fmt, type_match, exact, think, paper, code):
    match = MatchResult(fmt, type_match, exact)
    assert uis1_step_reward(match, think_ok=think) == pytest.approx(paper)
    assert uis1_step_reward(match, think_ok=think, variant="code") == pytest.approx(code)


def test_uis1_reward_rejects_unknown_variant():
    with pytest.raises(ValueError, match="variant"):
        uis1_step_reward(MatchResult(True, True, True), variant="both")  # type: ignore[arg-type]


def test_registered_uis1_step_reward():
    fn = get_reward("uis1_step")
    base = {"response": "", "screen_size": SCREEN, "expert": EXPERT_CLICK, "expert_box": BOX}
    assert fn(RewardInput(action=Action.click(150, 250), think="tap it", **base)) == 1.0
    assert fn(RewardInput(action=Action.click(150, 250), think=None, **base)) == 0.0
    assert fn(RewardInput(action=Action.click(150, 250), think=None, **base), require_think=False) == 1.0
    assert fn(RewardInput(action=Action.click(900, 900), think="x", **base)) == pytest.approx(0.5)
    assert fn(RewardInput(action=None, think="x", **base), variant="code") == pytest.approx(0.1)
    with pytest.raises(ValueError, match="expert"):
        fn(RewardInput(action=None, response="", screen_size=SCREEN))


# --- properties -----------------------------------------------------------------------------------------

coord = st.floats(min_value=-5000, max_value=5000, allow_nan=False)
# Predictions may carry any float, NaN and infinities included (parsers reject them; hand-built actions may not).
point = st.tuples(coord, coord)  # non-finite coordinates cannot be built (Action refuses them)
text = st.text(max_size=30)


def actions() -> st.SearchStrategy[Action]:
    return st.one_of(
        st.builds(lambda p: Action(ActionType.CLICK, point=p), point),
        st.builds(lambda p: Action(ActionType.LONG_PRESS, point=p), point),
        st.builds(Action.swipe, point, point),
        st.builds(Action.scroll, st.sampled_from(list(Direction))),
        st.builds(Action.type_text, text),
        st.builds(Action.open_app, text),
        st.builds(Action.answer, text),
        st.builds(Action.system_button, st.sampled_from(list(SystemButton))),
        st.builds(lambda k: Action(ActionType.KEY, keys=(k,)), st.text(min_size=1, max_size=5)),
        st.builds(Action.wait),
        st.builds(Action.terminate, st.sampled_from(["success", "failure"])),
    )


@st.composite
def boxes(draw):
    x1, x2 = sorted((draw(coord), draw(coord)))
    y1, y2 = sorted((draw(coord), draw(coord)))
    return (x1, y1, x2, y2)


screens = st.tuples(st.integers(1, 4000), st.integers(1, 4000))


@settings(max_examples=300, deadline=None)
@given(
    pred=st.one_of(st.none(), actions()),
    expert=actions(),
    box=st.one_of(st.none(), boxes()),
    screen=screens,
    think=st.booleans(),
)
def test_match_and_reward_properties(pred, expert, box, screen, think):
    match = match_action(pred, expert, box, screen)
    assert match.exact_match <= match.type_match <= match.fmt  # exact implies type implies parsed
    paper = uis1_step_reward(match, think_ok=think)
    code = uis1_step_reward(match, think_ok=think, variant="code")
    assert any(math.isclose(paper, v) for v in (0.0, 0.1, 0.5, 1.0))
    assert math.isfinite(code) and 0.0 <= code <= 1.0
    if pred is not None and all(math.isfinite(v) for p in pred.points() for v in p):
        assert match_action(pred, pred, None, screen).exact_match  # an action always matches itself


def test_non_finite_predictions_cannot_reach_the_matcher():
    # A parser never yields one and Action refuses to build one, so no reward can become NaN.
    for value in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="point"):
            Action.click(value, 250)
