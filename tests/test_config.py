"""Strict config loading: unknown keys name the file, the key path and the closest valid key."""

from __future__ import annotations

import re
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
