"""The ``guiagent`` command line.

Each area owns its sub-command group in its own module (``guiagent/<area>/cli.py``) and keeps heavy
imports (torch, transformers, adbutils) inside the command functions, so ``guiagent --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from guiagent import __version__
from guiagent.algos.cli import app as algos_app
from guiagent.data.cli import app as data_app
from guiagent.envs.sim.cli import app as sim_app
from guiagent.eval.cli import app as eval_app
from guiagent.farm.cli import app as farm_app
from guiagent.policy.cli import app as policy_app
from guiagent.policy.cli import serve as serve_command
from guiagent.rewards.cli import app as rewards_app
from guiagent.trainer.cli import train_command
from guiagent.ui.cli import view as view_command

app = typer.Typer(
    name="guiagent",
    help="Train and evaluate vision-language GUI agents on phones and desktops.",
    no_args_is_help=True,
    add_completion=False,
)
config_app = typer.Typer(help="Check configuration files.", no_args_is_help=True)
actions_app = typer.Typer(help="Parse and convert actions in model output formats.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(actions_app, name="actions")
app.add_typer(algos_app, name="algos")
app.add_typer(eval_app, name="eval")
app.add_typer(policy_app, name="policy")
app.command("serve")(serve_command)
app.add_typer(data_app, name="data")
app.add_typer(rewards_app, name="rewards")
app.add_typer(sim_app, name="sim")
app.add_typer(farm_app, name="farm")
app.command("train")(train_command)
app.command("view")(view_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"guiagent {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """guiagent: environment farm, RL trainer and reproducible evaluation for GUI agents."""


@config_app.command("validate")
def config_validate(file: Path = typer.Argument(..., help="YAML config file to check.")) -> None:
    """Validate a config file strictly; unknown keys are reported with the closest valid key."""
    from guiagent.config import dump_config, load_config
    from guiagent.errors import ConfigError
    from guiagent.schema import GuiAgentConfig

    try:
        config = load_config(file, GuiAgentConfig)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"{file}: valid")
    typer.echo(dump_config(config), nl=False)


@actions_app.command("parse")
def actions_parse(
    text: str | None = typer.Argument(None, help="Model output; read from stdin when omitted."),
    fmt: str = typer.Option(
        ..., "--format", help="qwen25vl_mobile, qwen25vl_computer, qwen3vl_mobile, qwen3vl_computer or uis1."
    ),
    width: int = typer.Option(1080, min=1, help="Screenshot width the model saw, device pixels."),
    height: int = typer.Option(2400, min=1, help="Screenshot height the model saw, device pixels."),
    max_pixels: int | None = typer.Option(
        None, min=1, help="The processor's max_pixels (default: qwen_vl_utils')."
    ),
) -> None:
    """Parse model text into the canonical action (JSON, device pixels); exit 1 with the reason on failure."""
    import json
    import sys

    from guiagent.actions.formats import ActionFormat, ParseFailure, model_geometry_for, parse_action

    if fmt not in {f.value for f in ActionFormat}:
        choices = [f.value for f in ActionFormat]
        raise typer.BadParameter(f"unknown format {fmt!r}; choose from {choices}", param_hint="--format")
    try:
        geometry = model_geometry_for(fmt, width, height, max_pixels=max_pixels)
    except ValueError as exc:  # bounds no image can meet, or an aspect ratio beyond smart_resize's 200
        raise typer.BadParameter(str(exc), param_hint="--width/--height/--max-pixels") from None
    result = parse_action(sys.stdin.read() if text is None else text, fmt, geometry)
    if isinstance(result, ParseFailure):
        typer.echo(json.dumps({"parse_failure": {"reason": result.reason, "detail": result.detail}}))
        raise typer.Exit(code=1)
    typer.echo(json.dumps(result.to_json(), ensure_ascii=False))
