"""Rule-based single-step rewards and their paper presets: hand-computed cases and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guiagent.errors import ConfigError, DataError
from guiagent.rewards import RULE_PRESETS, RewardInput, RuleRewardConfig, get_reward, rule_preset, rule_reward
from guiagent.rewards.rules import segui_point_decay
from guiagent.types import Action
from tests.test_rewards_matching import actions, boxes, screens

SCREEN = (1000, 1000)
BOX = (100.0, 200.0, 200.0, 300.0)  # centre (150, 250)
CLICK = Action.click(150, 250)


def score(preset: str, pred, expert=CLICK, box=BOX, think=True, screen=SCREEN) -> float:
    return rule_reward(pred, expert, box, screen, RULE_PRESETS[preset], think_ok=think)


def test_ui_r1_preset():
    # R = R_T + R_C + R_F (each 0/1); R_C only for clicks and only with the right type.
    assert score("ui_r1", Action.click(150, 250)) == 3.0
    assert score("ui_r1", Action.click(250, 250)) == 2.0  # outside the box: format + type
    assert score("ui_r1", Action.long_press(150, 250)) == 1.0  # wrong type: format only
    assert score("ui_r1", Action.click(150, 250), think=False) == 2.0  # no <think>: R_F = 0
    # Non-click actions have no coordinate term: format + type at most.
    assert score("ui_r1", Action.type_text("abc"), expert=Action.type_text("abc"), box=None) == 2.0
    assert score("ui_r1", Action.type_text("xyz"), expert=Action.type_text("abc"), box=None) == 2.0
    assert score("ui_r1", None) == 0.0


def test_gui_r1_paper_preset():
    # 0.2 R_f + 0.8 (R_act + R_point + R_text), point strictly inside, R_text = [F1 >= 0.5].
    assert score("gui_r1", Action.click(150, 250)) == pytest.approx(1.8)
    assert score("gui_r1", Action.click(100, 250)) == pytest.approx(1.0)  # on the edge: not strictly inside
    assert score("gui_r1", Action.long_press(150, 250)) == pytest.approx(1.0)  # point counts without the type
    typed = Action.type_text("buy milk now")
    # "buy milk" vs "buy milk now": p = 1, r = 2/3, F1 = 0.8 >= 0.5 -> R_text = 1.
    assert score("gui_r1", Action.type_text("buy milk"), expert=typed, box=None) == pytest.approx(1.8)
    assert score("gui_r1", Action.type_text("eggs"), expert=typed, box=None) == pytest.approx(1.0)
    # An argument-free expert (wait) gives no argument credit to a wrong type: 0.2 format only.
    assert score("gui_r1", Action.click(1, 1), expert=Action.wait(), box=None) == pytest.approx(0.2)


def test_gui_r1_code_preset():
    # 0.2 format + 0.8 [type matches and arguments right]; strict box; 140 px point fallback.
    assert score("gui_r1_code", Action.click(150, 250)) == pytest.approx(1.0)
    assert score("gui_r1_code", Action.click(100, 250)) == pytest.approx(0.2)
    assert score("gui_r1_code", Action.long_press(150, 250)) == pytest.approx(0.2)
    assert score("gui_r1_code", Action.click(289, 250), box=None) == pytest.approx(1.0)  # 139 < 140
    assert score("gui_r1_code", Action.click(290, 250), box=None) == pytest.approx(0.2)  # 140 is not < 140
    assert score("gui_r1_code", Action.wait(), expert=Action.wait(), box=None) == pytest.approx(1.0)


def test_infigui_r1_preset():
    # 0.1 R_format + 0.9 [format] (0.2 R_type + 0.8 R_param).
    assert score("infigui_r1", Action.click(150, 250)) == pytest.approx(1.0)
    assert score("infigui_r1", Action.click(500, 500)) == pytest.approx(0.1 + 0.18)
    assert score("infigui_r1", Action.long_press(150, 250)) == pytest.approx(0.1)
    assert score("infigui_r1", Action.click(150, 250), think=False) == 0.0  # accuracy needs the format
    hello = Action.type_text("Hello")
    assert score("infigui_r1", Action.type_text(" hello "), expert=hello, box=None) == pytest.approx(1.0)
    assert score("infigui_r1", Action.type_text("hello world"), expert=hello, box=None) == pytest.approx(0.28)
    assert score(
        "infigui_r1", Action.scroll("down"), expert=Action.scroll("down"), box=None
    ) == pytest.approx(1.0)
    assert score("infigui_r1", Action.scroll("up"), expert=Action.scroll("down"), box=None) == pytest.approx(
        0.28
    )


def test_gta1_preset():
    # r = 1 iff x_min <= x <= x_max and y_min <= y <= y_max; no format/thinking term.
    assert score("gta1", Action.click(100, 200), think=False) == 1.0  # the corner counts
    assert score("gta1", Action.click(99.5, 200)) == 0.0
    assert score("gta1", Action.long_press(150, 250)) == 0.0


@pytest.mark.parametrize(
    "point, box, expected",
    [
        # format 1 + [in box] + 1 - (d / d_max)^2, normalised per axis on 1000 x 1000.
        ((500, 500), (400, 400, 600, 600), 3.0),  # centre: d = 0
        ((600, 500), (400, 400, 600, 600), 1 + 1 + (1 - 0.1**2 / 0.5)),  # d = 0.1, d_max^2 = 0.5 -> 2.98
        ((800, 500), (400, 400, 600, 600), 1 + 0 + (1 - 0.3**2 / 0.5)),  # outside, d = 0.3 -> 1.82
        ((999.9, 999.9), (400, 400, 600, 600), 1 + 0 + (1 - (0.4999**2 * 2) / 0.5)),  # nearly the corner
        ((700, 50), (0, 0, 100, 100), 1 + 0 + (1 - 0.65**2 / (2 * 0.95**2))),  # d = 0.65 -> 1.76593
    ],
)
def test_se_gui_preset(point, box, expected):
    assert score("se_gui", Action.click(*point), box=box) == pytest.approx(expected)


def test_segui_decay_guard_on_raw_distance():
    # Corner box (0, 0, 100, 100): centre (0.05, 0.05), d_max = hypot(0.95, 0.95) = 1.3435. A point at
    # (900, 900) has d = hypot(0.85, 0.85) = 1.202 > 1: the released code zeroes it although
    # 1 - (d / d_max)^2 = 0.1994 would be positive.
    assert segui_point_decay((900, 900), (0, 0, 100, 100), SCREEN) == 0.0
    assert segui_point_decay((1000, 1000), (400, 400, 600, 600), SCREEN) == pytest.approx(0.0, abs=1e-12)


def test_custom_config_text_f1_without_threshold_and_containment():
    cfg = RuleRewardConfig(format_weight=0, type_weight=0, args_weight=1, text_metric="f1")
    # [cat, sat] vs [cat, sat, on, mat]: F1 = 2/3 (continuous without a threshold).
    assert rule_reward(
        Action.type_text("the cat sat"), Action.type_text("cat sat on mat"), None, SCREEN, cfg
    ) == pytest.approx(2 / 3)
    contains = cfg.model_copy(update={"text_metric": "contains"})
    assert rule_reward(Action.type_text("CAT"), Action.type_text("a cat"), None, SCREEN, contains) == 1.0
    enlarged = RuleRewardConfig(type_weight=0, args_weight=1, box_scale=1.2)
    assert rule_reward(Action.click(210, 250), CLICK, BOX, SCREEN, enlarged) == 1.0  # 1.2x box edge


def test_missing_box_is_a_data_error_and_config_is_strict():
    with pytest.raises(DataError, match="expert_box"):
        score("gta1", Action.click(150, 250), box=None)
    with pytest.raises(ConfigError, match="presets"):
        rule_preset("ui-r1")
    with pytest.raises(ValueError):
        RuleRewardConfig(format_weight=0, type_weight=0, args_weight=0)
    with pytest.raises(ValueError):
        RuleRewardConfig(typo_weight=1)  # unknown key


def test_registered_rule_reward():
    fn = get_reward("rule")
    sample = RewardInput(
        response="",
        action=Action.click(150, 250),
        screen_size=SCREEN,
        think="t",
        expert=CLICK,
        expert_box=BOX,
    )
    assert fn(sample, preset="ui_r1") == 3.0
    assert fn(sample, config={"type_weight": 0.5, "args_weight": 0.5}) == 1.0
    with pytest.raises(ConfigError):
        fn(sample)


@settings(max_examples=300, deadline=None)
@given(
    preset=st.sampled_from(sorted(RULE_PRESETS)),
    pred=st.one_of(st.none(), actions()),
    expert=actions(),
    box=boxes(),
    screen=screens,
    think=st.booleans(),
)
def test_presets_are_finite_and_in_range(preset, pred, expert, box, screen, think):
    cfg = RULE_PRESETS[preset]
    r = rule_reward(pred, expert, box, screen, cfg, think_ok=think)
    assert math.isfinite(r) and 0.0 <= r <= cfg.max_reward() + 1e-12


@settings(max_examples=200, deadline=None)
@given(
    weights=st.tuples(*[st.floats(0, 10)] * 4).filter(lambda w: sum(w) > 0),
    gates=st.tuples(st.booleans(), st.booleans()),
    metric=st.sampled_from(["f1", "contains", "exact"]),
    threshold=st.one_of(st.none(), st.floats(0, 1)),
    pred=actions(),
    expert=actions(),
    box=boxes(),
    screen=screens,
)
def test_any_config_is_finite_and_in_range(weights, gates, metric, threshold, pred, expert, box, screen):
    cfg = RuleRewardConfig(
        format_weight=weights[0],
        type_weight=weights[1],
        args_weight=weights[2],
        distance_weight=weights[3],
        gate_on_format=gates[0],
        gate_args_on_type=gates[1],
        text_metric=metric,
        text_threshold=threshold,
    )
    r = rule_reward(pred, expert, box, screen, cfg)
    assert math.isfinite(r) and 0.0 <= r <= cfg.max_reward() * (1 + 1e-9)
