"""``guiagent eval``: score predictions (a file, or a local model with ``--model``) on a converted benchmark.

Each command writes ``report.json`` and ``report.md`` into ``--out``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import typer

app = typer.Typer(
    help="Offline evaluation with each benchmark's reference protocol (reports: JSON + Markdown).",
    no_args_is_help=True,
)

_DATA = typer.Argument(
    ..., help="A converted store (guiagent data convert), or a directory of split stores with --split."
)
_PREDICTIONS = typer.Option(
    None, "--predictions", help="Predictions JSONL (format: guiagent/eval/predictions.py)."
)
_MODEL = typer.Option(
    None,
    "--model",
    help="Instead of --predictions: a Hugging Face model directory run greedily "
    "in-process (guiagent.policy local backend); its answers are written to OUT/predictions.jsonl.",
)
_MAX_TOKENS = typer.Option(256, "--max-tokens", help="With --model: most tokens per answer.")
_OUT = typer.Option(..., "--out", help="Directory for report.json and report.md.")
_SPLIT = typer.Option(
    None, "--split", help="Split to evaluate: DATA/<split> if that is a store, else DATA's split must match."
)
_SKIP = typer.Option(
    False, "--skip-invalid", help="Skip invalid prediction lines (listed with the reason on stderr and in the "
    "report) instead of failing."
)
_FORMAT = typer.Option("qwen25vl_mobile", "--format", help="Model output format of 'response' text.")
_FACTOR = typer.Option(
    28, "--factor", help="smart_resize patch multiple of the model (28 Qwen2.5-VL, 32 Qwen3-VL)."
)
_MIN_PIXELS = typer.Option(
    3136, "--min-pixels", help="smart_resize min_pixels used when the model saw the screenshot."
)
_MAX_PIXELS = typer.Option(
    12845056, "--max-pixels", help="smart_resize max_pixels used when the model saw the screenshot."
)


def _run(
    benchmark: str,
    data: Path,
    predictions: Optional[Path],
    out: Path,
    split: Optional[str],
    skip_invalid: bool,
    fmt: str,
    factor: int,
    min_pixels: int,
    max_pixels: int,
    model: Optional[Path] = None,
    produce: Optional[Callable] = None,
    max_tokens: int = 256,
    **options,
) -> None:
    """Resolve the store, get predictions (the file, or ``produce(root, predictor, space)`` with ``--model``),
    score them and write the reports."""
    from guiagent.actions import ActionSpaceConfig
    from guiagent.config import parse_config
    from guiagent.data.store import read_manifest
    from guiagent.errors import ConfigError, GuiAgentError
    from guiagent.eval import evaluate, protocol_module
    from guiagent.eval.predictions import load_predictions, read_benchmark_manifest, write_predictions
    from guiagent.eval.report import LISTED_LINES, write_report

    if (predictions is None) == (model is None):
        typer.echo("error: give exactly one of --predictions and --model", err=True)
        raise typer.Exit(code=2)
    if out.exists() and not out.is_dir():
        typer.echo(f"error: --out {out} is a file; give a directory for report.json and report.md", err=True)
        raise typer.Exit(code=2)
    try:
        options_given = {"format": fmt, "factor": factor, "min_pixels": min_pixels, "max_pixels": max_pixels}
        space = parse_config(options_given, ActionSpaceConfig, "--format/--factor/--min-pixels/--max-pixels")
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    try:
        root = data
        if split is not None:
            if (data / split / "manifest.json").exists():
                root = data / split
            elif read_manifest(data).get("split") != split:
                raise GuiAgentError(
                    f"{data} holds split {read_manifest(data).get('split')!r} and has no sub-store {split!r}"
                )
        if model is not None:
            from guiagent.eval.model import PolicyPredictor
            from guiagent.policy.local import LocalPolicy

            # Fail on a bad store, or one of another benchmark, before loading a model.
            read_benchmark_manifest(root, benchmark, protocol_module(benchmark).DATASETS)
            predictor = PolicyPredictor(LocalPolicy.from_pretrained(model), space, max_tokens)
            out.mkdir(parents=True, exist_ok=True)
            predictions = out / "predictions.jsonl"
            written = write_predictions(predictions, produce(root, predictor, space))
            typer.echo(f"{model}: {written} answers written to {predictions}")
        preds = load_predictions(predictions, skip_invalid=skip_invalid)
        report = evaluate(benchmark, root, preds, space, **options)
        if model is not None:
            report["model"] = str(model)
        json_path, md_path = write_report(report, out)
    except (GuiAgentError, OSError) as exc:  # OSError: --out (or a directory above it) cannot be written
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    for line, error in preds.skipped[:LISTED_LINES]:
        typer.echo(f"skipped: {preds.path} line {line}: {error}", err=True)
    if len(preds.skipped) > LISTED_LINES:
        typer.echo(f"skipped: {len(preds.skipped) - LISTED_LINES} more lines, listed in {json_path}", err=True)
    typer.echo(md_path.read_text(encoding="utf-8"), nl=False)
    typer.echo(f"wrote {json_path} and {md_path}")


@app.command("aitw")
def eval_aitw(
    data: Path = _DATA,
    predictions: Optional[Path] = _PREDICTIONS,
    out: Path = _OUT,
    split: Optional[str] = _SPLIT,
    skip_invalid: bool = _SKIP,
    fmt: str = _FORMAT,
    factor: int = _FACTOR,
    min_pixels: int = _MIN_PIXELS,
    max_pixels: int = _MAX_PIXELS,
    strict_text: bool = typer.Option(
        False, "--strict-text", help="Text accuracy counts TYPE predictions only (SeeClick counts any)."
    ),
) -> None:
    """AITW: the reference check_actions_match (float32) and SeeClick's per-subset metrics."""
    _run(
        "aitw",
        data,
        predictions,
        out,
        split,
        skip_invalid,
        fmt,
        factor,
        min_pixels,
        max_pixels,
        strict_text=strict_text,
    )


@app.command("androidcontrol")
def eval_androidcontrol(
    data: Path = _DATA,
    predictions: Optional[Path] = _PREDICTIONS,
    out: Path = _OUT,
    split: Optional[str] = _SPLIT,
    skip_invalid: bool = _SKIP,
    fmt: str = _FORMAT,
    factor: int = _FACTOR,
    min_pixels: int = _MIN_PIXELS,
    max_pixels: int = _MAX_PIXELS,
    model: Optional[Path] = _MODEL,
    max_tokens: int = _MAX_TOKENS,
    level: str = typer.Option("high", "--level", help="With --model: high, low or both."),
    max_episodes: Optional[int] = typer.Option(
        None, "--max-episodes", min=1, help="With --model: stop after this many episodes."
    ),
) -> None:
    """AndroidControl (or UI-S1 jsonl): type / grounding / step SR per level and SOP, UI-S1's matcher.

    With --model the policy runs the SOP way (own history, expert screens, greedy, stop at the first
    mismatch).
    """
    if level not in ("high", "low", "both"):
        typer.echo(f"error: --level must be high, low or both, got {level!r}", err=True)
        raise typer.Exit(code=2)

    def produce(root, predictor, space):
        from guiagent.eval.androidcontrol import run_sop

        for lvl in ("high", "low") if level == "both" else (level,):
            yield from run_sop(root, predictor, space, level=lvl, max_episodes=max_episodes)

    _run(
        "androidcontrol",
        data,
        predictions,
        out,
        split,
        skip_invalid,
        fmt,
        factor,
        min_pixels,
        max_pixels,
        model=model,
        produce=produce,
        max_tokens=max_tokens,
    )


@app.command("screenspot")
def eval_screenspot(
    data: Path = _DATA,
    predictions: Optional[Path] = _PREDICTIONS,
    out: Path = _OUT,
    split: Optional[str] = _SPLIT,
    skip_invalid: bool = _SKIP,
    fmt: str = _FORMAT,
    factor: int = _FACTOR,
    min_pixels: int = _MIN_PIXELS,
    max_pixels: int = _MAX_PIXELS,
    model: Optional[Path] = _MODEL,
    max_tokens: int = _MAX_TOKENS,
    limit: Optional[int] = typer.Option(
        None, "--limit", min=1, help="With --model: ask about this many samples only."
    ),
) -> None:
    """ScreenSpot v1 / v2 / Pro: point in box (edges included), by platform, source, group, text/icon."""

    def produce(root, predictor, space):
        from guiagent.eval.model import grounding_predictions

        return grounding_predictions(root, predictor, limit)

    _run(
        "screenspot",
        data,
        predictions,
        out,
        split,
        skip_invalid,
        fmt,
        factor,
        min_pixels,
        max_pixels,
        model=model,
        produce=produce,
        max_tokens=max_tokens,
    )


@app.command("odyssey")
def eval_odyssey(
    data: Path = _DATA,
    predictions: Optional[Path] = _PREDICTIONS,
    out: Path = _OUT,
    split: Optional[str] = _SPLIT,
    skip_invalid: bool = _SKIP,
    fmt: str = _FORMAT,
    factor: int = _FACTOR,
    min_pixels: int = _MIN_PIXELS,
    max_pixels: int = _MAX_PIXELS,
) -> None:
    """GUI-Odyssey: AMS, SR, type and text accuracy with the reference's matcher."""
    _run("odyssey", data, predictions, out, split, skip_invalid, fmt, factor, min_pixels, max_pixels)
