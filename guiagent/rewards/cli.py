"""``guiagent rewards``: score one model response against an expert step with every built-in reward."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

app = typer.Typer(
    help="Score model responses with the training rewards (UI-S1, rule presets, HAR).", no_args_is_help=True
)


@app.command("score")
def score(
    response: Path = typer.Argument(
        ..., help="File holding the model's raw response text ('-' reads stdin)."
    ),
    expert: str = typer.Option(
        ...,
        "--expert",
        help='Expert action as canonical JSON, e.g. \'{"type": "click", "point": [540, 1200]}\'.',
    ),
    width: int = typer.Option(..., "--width", help="Screenshot width in device pixels."),
    height: int = typer.Option(..., "--height", help="Screenshot height in device pixels."),
    box: str | None = typer.Option(None, "--box", help="Expert target box 'x1,y1,x2,y2' in device pixels."),
    fmt: str = typer.Option(
        "uis1", "--format", help="Model output format (uis1, qwen25vl_mobile, qwen3vl_mobile, ...)."
    ),
    factor: int = typer.Option(
        28, "--factor", help="smart_resize patch multiple (28 Qwen2.5-VL, 32 Qwen3-VL)."
    ),
    min_pixels: int | None = typer.Option(
        None, "--min-pixels", help="smart_resize min_pixels the model saw."
    ),
    max_pixels: int | None = typer.Option(
        None, "--max-pixels", help="smart_resize max_pixels the model saw."
    ),
    history: list[str] = typer.Option(
        [], "--history", help="A previous action summary (repeat, oldest first) for HAR."
    ),
) -> None:
    """Print JSON: the parsed action, the rule memory judge's verdict and every reward's value."""
    from guiagent.actions import model_geometry
    from guiagent.errors import GuiAgentError
    from guiagent.rewards import (
        RULE_PRESETS,
        RuleMemoryJudge,
        format_has_think,
        get_reward,
        parse_response,
        sample_from_response,
    )
    from guiagent.types import Action

    try:
        text = sys.stdin.read() if str(response) == "-" else response.read_text(encoding="utf-8")
        expert_action = Action.from_json(json.loads(expert))
        target = tuple(float(v) for v in box.split(",")) if box else None
        geometry = model_geometry(width, height, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
        parsed = parse_response(text, fmt, geometry)
        memory = RuleMemoryJudge().judge(parsed.think or "", history)
        sample = sample_from_response(
            parsed,
            (width, height),
            expert=expert_action,
            expert_box=target,
            history=history,
            memory_used=memory,
        )
    except (OSError, ValueError, TypeError, GuiAgentError) as exc:  # TypeError: expert JSON lacks fields
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    think = format_has_think(fmt)  # for formats without a think block, fmt means "it parsed"
    rewards = {
        "uis1_step": lambda: get_reward("uis1_step")(sample, require_think=think),
        "uis1_step[code]": lambda: get_reward("uis1_step")(sample, variant="code", require_think=think),
        **{f"rule[{name}]": (lambda name=name: get_reward("rule")(sample, preset=name)) for name in sorted(RULE_PRESETS)},
        "har": lambda: get_reward("har")(sample),
    }
    scores: dict[str, float] = {}
    unavailable: dict[str, str] = {}
    for name, score in rewards.items():
        try:
            scores[name] = round(score(), 6)
        except GuiAgentError as exc:  # e.g. a box-based preset without --box: say so, score the rest
            unavailable[name] = str(exc)
    result = {
        "action": {k: v for k, v in parsed.action.to_json().items() if v is not None}
        if parsed.action
        else None,
        "parse_error": parsed.failure,
        "think": parsed.think,
        "memory_used": memory,
        "rewards": scores,
        "unavailable": unavailable,
    }
    typer.echo(json.dumps(result, indent=2))
