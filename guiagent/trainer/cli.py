"""``guiagent train CONFIG``: run the training loop of a config file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def train_command(
    config_path: Path = typer.Argument(..., help="A config file with a trainer section (configs/recipes/*.yaml)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: OUTPUT_DIR/NAME from the config)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its newest checkpoint."),
    steps: Optional[int] = typer.Option(None, "--steps", min=0, help="Override trainer.steps."),
) -> None:
    """Train: SFT warm-up, then rollout → reward → advantage → update → sync_weights → evaluate → checkpoint."""
    from guiagent.config import load_config
    from guiagent.errors import GuiAgentError
    from guiagent.schema import GuiAgentConfig
    from guiagent.trainer.loop import stop_on_sigterm, train

    stop_on_sigterm()
    try:
        config = load_config(config_path, GuiAgentConfig)
        if config.trainer is None:
            raise typer.BadParameter(f"{config_path} has no trainer section")
        if steps is not None:
            config = config.model_copy(update={"trainer": config.trainer.model_copy(update={"steps": steps})})
        run_dir = out or Path(config.output_dir) / config.name
        summary = train(config, run_dir, resume=resume)
        from guiagent.ui.report import write_report

        report = write_report(run_dir)
    except GuiAgentError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    final = summary.get("final_eval") or {}
    typer.echo(f"done: {summary['steps_done']} updates in {summary['seconds']} s; held-out success "
               f"{final.get('success')}, SOP {final.get('sop')}; report {report}")
