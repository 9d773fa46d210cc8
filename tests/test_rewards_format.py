"""Format checks (model text -> RewardInput), the registry, and the task-success reward."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guiagent.actions import format_action, model_geometry
from guiagent.errors import ConfigError
from guiagent.rewards import (
    RULE_PRESETS,
    RewardInput,
    RuleMemoryJudge,
    available_rewards,
    extract_think,
    get_reward,
    parse_response,
    register_reward,
    sample_from_response,
    task_success_reward,
)
from guiagent.rewards.registry import _REWARDS
from guiagent.types import Action, EpisodeStatus, Outcome

GEOMETRY = model_geometry(1080, 2400)  # resized to 1092 x 2408
SCREEN = (1080, 2400)
EXPERT = Action.click(540, 1200)
BOX = (440.0, 1100.0, 640.0, 1300.0)


def test_extract_think():
    assert extract_think("<think> tap OK </think><action>{}</action>") == "tap OK"
    assert extract_think("<think>  </think><action>{}</action>") is None  # empty block
    assert extract_think("<action>{}</action>") is None
    assert extract_think("the plan</think><tool_call>{}</tool_call>") == "the plan"  # template opened it
    assert extract_think("<think>unclosed") is None


def test_parse_response_uis1_and_the_step_reward():
    text = format_action(EXPERT, "uis1", GEOMETRY, thought="The OK button is in the middle.")
    parsed = parse_response(text, "uis1", GEOMETRY)
    assert parsed.failure is None and parsed.think == "The OK button is in the middle."
    assert parsed.fmt_ok(require_think=True)
    assert parsed.action.point == pytest.approx((540, 1200), abs=1.0)  # within one model pixel
    sample = sample_from_response(parsed, SCREEN, expert=EXPERT, expert_box=BOX)
    assert get_reward("uis1_step")(sample) == 1.0

    no_think = parse_response(format_action(EXPERT, "uis1", GEOMETRY), "uis1", GEOMETRY)
    assert no_think.action is not None and not no_think.fmt_ok(require_think=True) and no_think.fmt_ok(False)
    assert (
        get_reward("uis1_step")(sample_from_response(no_think, SCREEN, expert=EXPERT, expert_box=BOX)) == 0.0
    )


def test_parse_failure_gives_zero_reward_everywhere():
    parsed = parse_response("<think>I will click OK</think> click(540, 1200)", "uis1", GEOMETRY)
    assert parsed.action is None and parsed.failure.startswith("no_tool_call")
    sample = sample_from_response(parsed, SCREEN, expert=EXPERT, expert_box=BOX, memory_used=True)
    assert sample.parse_error == parsed.failure
    assert get_reward("uis1_step")(sample) == 0.0
    assert get_reward("har")(sample) == 0.0
    for preset in RULE_PRESETS:
        assert get_reward("rule")(sample, preset=preset) == 0.0


def test_qwen_tool_call_with_gta1_and_har_rule_judge():
    text = "<think>I typed the name already, so press the Search button.</think>\n" + format_action(
        Action.click(500, 1150), "qwen25vl_mobile", GEOMETRY
    )
    parsed = parse_response(text, "qwen25vl_mobile", GEOMETRY)
    history = ["Typed the name Alice", "Opened Contacts"]
    memory = RuleMemoryJudge().judge(parsed.think, history)  # "typed the name" -> [typed, name] bigram
    sample = sample_from_response(
        parsed, SCREEN, expert=EXPERT, expert_box=BOX, history=history, memory_used=memory
    )
    assert memory is True
    assert get_reward("rule")(sample, preset="gta1") == 1.0
    # HAR: inside the box, d = hypot(40, 50) px (within one model pixel) -> 1 + exp(-0.64) + 0.2 memory.
    assert get_reward("har")(sample) == pytest.approx(1 + math.exp(-math.hypot(40, 50) / 100) + 0.2, abs=0.02)


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=300),
        st.builds(
            lambda a, b: f"<think>{a}</think><action>{b}</action>", st.text(max_size=50), st.text(max_size=80)
        ),
        st.builds(
            lambda a: '<tool_call>{"name": "mobile_use", "arguments": ' + a + "}</tool_call>",
            st.text(max_size=80),
        ),
    ),
    fmt=st.sampled_from(["uis1", "qwen25vl_mobile", "qwen3vl_mobile"]),
)
def test_rewards_never_raise_on_model_text(text, fmt):
    sample = sample_from_response(
        parse_response(text, fmt, GEOMETRY), SCREEN, expert=EXPERT, expert_box=BOX, memory_used=False
    )
    for value in (
        get_reward("uis1_step")(sample),
        get_reward("uis1_step")(sample, variant="code"),
        get_reward("har")(sample),
        *(get_reward("rule")(sample, preset=p) for p in RULE_PRESETS),
    ):
        assert math.isfinite(value) and value >= 0.0


# --- registry -------------------------------------------------------------------------------------------


def test_registry_names_and_double_registration():
    assert {"uis1_step", "rule", "har", "task_success"} <= set(available_rewards())
    with pytest.raises(ValueError, match="already registered"):
        register_reward("uis1_step")(lambda sample: 0.0)
    with pytest.raises(ConfigError, match="unknown reward .uis1.; known: .*uis1_step"):
        get_reward("uis1")


def test_register_a_new_reward():
    try:

        @register_reward("test_constant")
        def constant(sample: RewardInput, *, value: float = 0.5) -> float:
            return value

        assert get_reward("test_constant")(None, value=0.25) == 0.25
    finally:
        _REWARDS.pop("test_constant", None)


# --- task success ---------------------------------------------------------------------------------------


def test_task_success_comes_from_the_environment_not_the_agent():
    assert task_success_reward(Outcome(EpisodeStatus.SUCCESS)) == 1.0
    for status in (EpisodeStatus.FAILURE, EpisodeStatus.TIMEOUT, EpisodeStatus.ERROR):
        assert task_success_reward(Outcome(status)) == 0.0
    # The agent claims success; the environment's check says failure: no reward.
    claim = RewardInput(
        response="",
        action=Action.terminate("success"),
        screen_size=SCREEN,
        outcome=Outcome(EpisodeStatus.FAILURE),
    )
    assert get_reward("task_success")(claim) == 0.0
    quiet = RewardInput(response="", action=None, screen_size=SCREEN, outcome=Outcome(EpisodeStatus.SUCCESS))
    assert get_reward("task_success")(quiet, failure=-1.0) == 1.0
    with pytest.raises(ValueError, match="outcome"):
        get_reward("task_success")(RewardInput(response="", action=None, screen_size=SCREEN))


def test_reward_config_calls_the_registered_reward():
    from guiagent.config import parse_config
    from guiagent.rewards import RewardConfig

    cfg = parse_config({"name": "rule", "options": {"preset": "gta1"}}, RewardConfig)
    sample = RewardInput(
        response="", action=Action.click(500, 1150), screen_size=SCREEN, expert=EXPERT, expert_box=BOX
    )
    assert cfg(sample) == 1.0
    with pytest.raises(ConfigError, match="unknown reward 'rules'"):
        parse_config({"name": "rules"}, RewardConfig)
    with pytest.raises(ConfigError, match="did you mean 'name'"):
        parse_config({"nme": "rule"}, RewardConfig)
    with pytest.raises(ConfigError, match="unknown option.*presets.*valid: preset, config"):
        parse_config({"name": "rule", "options": {"presets": "gta1"}}, RewardConfig)


def test_cli_score_runs_as_a_subprocess(tmp_path):
    import json
    import subprocess
    import sys

    response = tmp_path / "response.txt"
    response.write_text(
        "<think>I opened the menu before.</think>\n" + format_action(EXPERT, "uis1", GEOMETRY)
    )
    result = subprocess.run(  # noqa: PLW1510 - the return code is asserted below
        [
            sys.executable,
            "-m",
            "guiagent",
            "rewards",
            "score",
            str(response),
            "--expert",
            json.dumps(EXPERT.to_json()),
            "--width",
            "1080",
            "--height",
            "2400",
            "--box",
            "440,1100,640,1300",
            "--history",
            "Opened the menu",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["memory_used"] is True and out["parse_error"] is None
    assert out["rewards"]["uis1_step"] == 1.0 and out["rewards"]["har"] == pytest.approx(2.2)


def test_cli_score_reports_bad_input(tmp_path):
    from typer.testing import CliRunner

    from guiagent.cli import app

    response = tmp_path / "response.txt"
    response.write_text("anything")
    for expert in ("{}", "not json", '{"type": "click"}'):
        bad = CliRunner().invoke(
            app,
            ["rewards", "score", str(response), "--expert", expert, "--width", "1080", "--height", "2400"],
        )
        assert bad.exit_code == 1 and "error:" in bad.output


def test_cli_score_without_think_format_or_box_scores_what_it_can():
    from typer.testing import CliRunner

    from guiagent.cli import app

    # A qwen25vl_mobile click of the right type far from the expert point: fmt = 1 (no think block in
    # this format), type = 1, acc = 0 -> UI-S1 paper reward 0.1 + 0.4 = 0.5. Box-based presets cannot
    # be scored without --box and are listed as unavailable instead of failing the whole command.
    text = format_action(Action.click(100, 100), "qwen25vl_mobile", GEOMETRY)
    result = CliRunner().invoke(
        app,
        ["rewards", "score", "-", "--expert", json.dumps(EXPERT.to_json()), "--width", "1080", "--height", "2400",
         "--format", "qwen25vl_mobile"],
        input=text,
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["rewards"]["uis1_step"] == pytest.approx(0.5)
    assert "expert_box is missing" in out["unavailable"]["rule[gta1]"]
