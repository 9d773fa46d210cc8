"""Strict config loading: unknown keys name the file, the key path and the closest valid key."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from guiagent.config import dump_config, load_config
from guiagent.errors import ConfigError
from guiagent.schema import GuiAgentConfig

CONFIGS = sorted((Path(__file__).parents[1] / "configs").rglob("*.yaml"))


def test_misspelt_nested_key_names_file_path_and_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: demo\nactions:\n  max_pixles: 100000\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, GuiAgentConfig)
    message = str(info.value)
    assert str(path) in message
    assert "actions.max_pixles" in message
    assert "did you mean 'max_pixels'" in message


def test_wrong_value_type_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("seed: not-a-number\n")
    with pytest.raises(ConfigError, match=r"seed: .*integer"):
        load_config(path, GuiAgentConfig)


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, GuiAgentConfig)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", GuiAgentConfig)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(top, GuiAgentConfig)


def test_dump_then_load_is_identity(tmp_path: Path) -> None:
    config = GuiAgentConfig(name="x", seed=3)
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(config))
    assert load_config(path, GuiAgentConfig) == config


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_validate(path: Path) -> None:
    load_config(path, GuiAgentConfig)


def test_sections_of_every_subsystem_are_strict(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("android:\n  serial: emulator-5554\n  snapshot_nmae: clean\n")
    with pytest.raises(ConfigError, match=r"android\.snapshot_nmae: unknown key \(did you mean 'snapshot_name'\?\)"):
        load_config(path, GuiAgentConfig)
    path.write_text("semi_online:\n  prompt:\n    actions:\n      fromat: uis1\n")
    with pytest.raises(
        ConfigError, match=r"semi_online\.prompt\.actions\.fromat: unknown key \(did you mean 'format'\?\)"
    ):
        load_config(path, GuiAgentConfig)
    # Options are checked against the registered function's keyword arguments.
    path.write_text("algo:\n  advantage: uis1\n  advantage_options:\n    gama: 0.5\n")
    with pytest.raises(ConfigError, match=r"algo.*gama"):
        load_config(path, GuiAgentConfig)
    path.write_text("reward:\n  name: nonexistent\n")
    with pytest.raises(ConfigError, match=r"reward\.name: .*unknown reward 'nonexistent'"):
        load_config(path, GuiAgentConfig)


def test_prompt_sections_take_the_top_level_action_space(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("actions:\n  format: qwen3vl_mobile\n  factor: 32\nprompt:\n  history_images: 2\n")
    config = load_config(path, GuiAgentConfig)
    assert config.prompt.actions == config.actions == config.semi_online.prompt.actions
    assert config.actions.format == "qwen3vl_mobile" and config.prompt.history_images == 2
    # Written out and read back, the inherited sections stay one action space.
    path.write_text(dump_config(config))
    assert load_config(path, GuiAgentConfig) == config


@pytest.mark.parametrize(
    ("text", "section"),
    [
        ("actions:\n  format: uis1\nprompt:\n  actions:\n    format: uis1\n    max_pixels: 200000\n", "prompt"),
        ("actions:\n  format: uis1\nsemi_online:\n  prompt:\n    actions:\n      format: qwen25vl_mobile\n",
         "semi_online.prompt"),
    ],
)
def test_a_prompt_with_another_action_space_is_refused(tmp_path: Path, text: str, section: str) -> None:
    """A prompt stating one format/resolution while the parser reads another is the bug this guards."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"{re.escape(section)}\.actions .*differs from actions"):
        load_config(path, GuiAgentConfig)


def test_a_prompt_naming_the_same_action_space_again_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("actions:\n  format: uis1\nprompt:\n  actions:\n    format: uis1\n")
    assert load_config(path, GuiAgentConfig).prompt.actions.format == "uis1"


# --- Hardening: typed options, and YAML read strictly -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("algo:\n  advantage: uis1\n  advantage_options:\n    gamma: not-a-number\n",
         r"algo\.advantage_options\.gamma: Input should be a valid number"),
        ("algo:\n  advantage: gigpo\n  advantage_options:\n    norm: median\n",
         r"algo\.advantage_options\.norm: Input should be 'std' or 'mean'"),
        ("algo:\n  loss_options:\n    dual_clip: [3]\n",
         r"algo\.loss_options\.dual_clip: Input should be a valid number"),
        ("reward:\n  name: task_success\n  options:\n    success: lots\n",
         r"reward\.options\.success: Input should be a valid number"),
        # A model-typed option is checked inside too, with the closest key of a misspelt one.
        ("reward:\n  name: rule\n  options:\n    config:\n      format_weigth: 1\n",
         r"reward\.options\.config\.format_weigth: unknown key \(did you mean 'format_weight'\?\)"),
        ("reward:\n  name: rule\n  options:\n    config:\n      args_weight: heavy\n",
         r"reward\.options\.config\.args_weight: Input should be a valid number"),
        ("reward:\n  name: uis1_step\n  options:\n    varient: code\n",
         r"reward\.options: unknown option\(s\) varient \(did you mean 'variant'\?\); valid: variant, "),
    ],
)
def test_options_are_typed_by_the_registered_function(tmp_path: Path, text: str, where: str) -> None:
    """Before: any value passed validation and the run failed when the trainer first called the function."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: {where}"):
        load_config(path, GuiAgentConfig)


def test_options_come_out_as_the_function_types_them(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("algo:\n  advantage: uis1\n  advantage_options:\n    gamma: 1\n    norm: mean\n"
                    "reward:\n  name: rule\n  options:\n    config: {format_weight: 0.5}\n")
    config = load_config(path, GuiAgentConfig)
    assert config.algo.advantage_options == {"gamma": 1.0, "norm": "mean"}
    assert type(config.algo.advantage_options["gamma"]) is float
    assert config.reward.options["config"].format_weight == 0.5  # a RuleRewardConfig, checked once
    path.write_text(dump_config(config))
    assert load_config(path, GuiAgentConfig) == config


def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    """Nine levels of nine aliases: 9**9 strings once expanded. Before, the file loaded, and the first
    thing that walked the options (dump_config, a JSON log of the config) never finished."""
    lines = ["reward:", "  name: rule", "  options:", f"    config: &a0 [{', '.join(['lol'] * 9)}]"]
    lines += [f"    preset{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    file = re.escape(str(path))
    with pytest.raises(ConfigError, match=rf"^{file}: more than \d+ values once its aliases are expanded"):
        load_config(path, GuiAgentConfig)
    assert time.monotonic() - start < 5
    path.write_text("reward:\n  options: &loop\n    config: *loop\n")
    with pytest.raises(ConfigError, match=rf"^{file}: line 2: an anchored value holds an alias of itself"):
        load_config(path, GuiAgentConfig)


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    """Before, YAML kept the later key silently: the first `algo` section below was thrown away."""
    path = tmp_path / "c.yaml"
    path.write_text("algo:\n  advantage: gigpo\nseed: 1\nalgo:\n  loss: ppo_clip\n")
    file = re.escape(str(path))
    with pytest.raises(ConfigError, match=rf"^{file}: line 4: duplicate key 'algo' \(first given on line 1"):
        load_config(path, GuiAgentConfig)
    path.write_text("algo:\n  advantage_options:\n    norm: mean\n    norm: std\n")
    with pytest.raises(ConfigError, match=r"line 4: duplicate key 'norm' \(first given on line 3\)"):
        load_config(path, GuiAgentConfig)
    # A merge key's keys are meant to be overridden: that is not a duplicate.
    path.write_text("algo:\n  advantage_options: {<<: {norm: mean, epsilon: 0.01}, epsilon: 0.001}\n")
    assert load_config(path, GuiAgentConfig).algo.advantage_options == {"norm": "mean", "epsilon": 0.001}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"not a UTF-8 text file \(byte 0 is 0x89\)"),
        (b"seed: 1\nname: \xff\xfe\n", r"not a UTF-8 text file \(byte 14 is 0xff\)"),
        (b"seed: 1\x00\x01\x02", r"not valid YAML: unacceptable character"),
    ],
)
def test_a_binary_file_is_one_config_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: {message}"):
        load_config(path, GuiAgentConfig)
