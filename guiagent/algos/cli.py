"""``guiagent algos``: list the registered algorithms and inspect advantages on recorded rollouts."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional, get_args

import typer

app = typer.Typer(help="Advantage estimators and policy losses: list them, inspect advantages on rollouts.",
                  no_args_is_help=True)


def _option_value(text: str):
    """``gamma=0.9`` → 0.9, ``norm=mean`` → "mean", ``dual_clip=null`` → None (JSON first, else the string)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@app.command("list")
def list_algorithms() -> None:
    """Print every registered advantage estimator and loss with its options and their defaults."""
    import inspect

    from guiagent.algos.registry import advantage_names, get_advantage, get_loss, loss_names

    for kind, names, get in (("advantage", advantage_names(), get_advantage), ("loss", loss_names(), get_loss)):
        for name in names:
            fn = get(name)
            summary = (inspect.getdoc(fn) or "").splitlines()[0]
            options = ", ".join(f"{p.name}={p.default!r}" for p in inspect.signature(fn).parameters.values()
                                if p.kind is inspect.Parameter.KEYWORD_ONLY)
            typer.echo(f"{kind:<9}  {name:<8}  {summary}")
            typer.echo(f"{'':<9}  {'':<8}  options: {options or '-'}")


@app.command("advantages")
def advantages(
    store: Path = typer.Argument(..., help="Episode store of rewarded rollouts (episodes.jsonl with Step.reward set)."),
    estimator: str = typer.Option("grpo", "--estimator", "-e", help="Registered advantage estimator."),
    option: list[str] = typer.Option([], "--option", "-o", help="Estimator option KEY=VALUE (repeat), e.g. gamma=0.9."),
    anchors: str = typer.Option("none", "--anchors", help="Anchor keys for GiGPO: none, auto (tree hash where every "
                                "step of a group has a tree, else screenshot), a11y (tree hash) or phash (screenshot)."),
    phash_distance: int = typer.Option(4, "--phash-distance", help="Largest Hamming distance of one anchor state (phash)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the per-step rows to this JSON file."),
) -> None:
    """Group the store's trajectories by (task_id, seed), compute advantages, print one row per step."""
    from guiagent.algos.anchors import AnchorSource, anchor_ids
    from guiagent.algos.batch import AdvantageBatch
    from guiagent.algos.registry import check_options, get_advantage
    from guiagent.data.store import iter_episodes
    from guiagent.errors import GuiAgentError

    try:
        options = {}
        for item in option:
            key, sep, value = item.partition("=")
            if not sep:
                raise typer.BadParameter(f"--option needs KEY=VALUE, got {item!r}")
            options[key] = _option_value(value)
        fn = get_advantage(estimator)
        check_options(fn, options, "--option")
        groups: dict[tuple[str, int], list] = {}
        for traj in iter_episodes(store):
            groups.setdefault((traj.task_id, traj.seed), []).append(traj)
        steps = [(g, traj, step) for g, trajs in enumerate(groups.values()) for traj in trajs for step in traj.steps]
        batch = AdvantageBatch.from_trajectories(list(groups.values()))  # rows: group → trajectory → step
        if anchors != "none":
            sources = get_args(AnchorSource)
            if anchors not in sources:
                raise typer.BadParameter(f"--anchors must be none, {', '.join(sources)}, got {anchors!r}")
            ids = anchor_ids(list(groups.values()), source=anchors, phash_distance=phash_distance,
                             image_root=store)
            batch = dataclasses.replace(batch, anchor_ids=ids)
        values = fn(batch, **options)
    except GuiAgentError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None

    rows = [{"group": g, "task_id": t.task_id, "episode_id": t.episode_id, "step": s.index,
             "reward": float(batch.rewards[i]), "trained": bool(batch.mask[i]), "advantage": float(values[i])}
            for i, (g, t, s) in enumerate(steps)]
    typer.echo(f"{'group':>5}  {'episode':<24} {'step':>4}  {'reward':>7}  {'advantage':>9}")
    for r in rows:
        adv = f"{r['advantage']:9.4f}" if r["trained"] else f"{'context':>9}"
        typer.echo(f"{r['group']:>5}  {r['episode_id'][:24]:<24} {r['step']:>4}  {r['reward']:7.3f}  {adv}")
    if json_out is not None:
        json_out.write_text(json.dumps({"estimator": estimator, "options": options, "rows": rows}, indent=1))
