"""``guiagent data``: convert benchmarks into the episode store, inspect stores, write sample files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Convert datasets into guiagent's episode store and inspect stores.", no_args_is_help=True)

SAMPLE_KINDS = ("aitw", "aitw_seeclick", "androidcontrol", "odyssey", "uis1", "screenspot_v1", "screenspot_v2",
                "screenspot_pro", "screenspot_parquet")


@app.command("convert")
def convert_command(
    dataset: str = typer.Argument(..., help="aitw, aitw_seeclick, androidcontrol, odyssey, uis1, screenspot_v1, "
                                            "screenspot_v2 or screenspot_pro."),
    src: Path = typer.Argument(..., help="The dataset in its official format (file or directory)."),
    dst: Path = typer.Argument(..., help="Store directory to write."),
    split: Optional[str] = typer.Option(None, help="Split name; with --split-file (required for aitw, androidcontrol, odyssey) keeps only that split."),
    split_file: Optional[Path] = typer.Option(None, help="The dataset's split JSON (AITW, AndroidControl, GUI-Odyssey)."),
    images: Optional[Path] = typer.Option(None, help="Screenshot directory for JSON datasets."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip corrupt records and count them."),
    limit: Optional[int] = typer.Option(None, min=1, help="Stop after this many episodes (or samples)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing store at DST once the new "
                                                              "conversion has succeeded."),
) -> None:
    """Convert a dataset into the episode store, with a progress bar."""
    from tqdm import tqdm

    from guiagent.data.convert import convert
    from guiagent.errors import DataError

    bar = tqdm(total=limit, unit="ep", desc=f"{dataset} → {dst}", dynamic_ncols=True)

    def progress(units: int, steps: int) -> None:
        bar.update(units - bar.n)
        if steps:
            bar.set_postfix(steps=steps, refresh=False)

    try:
        manifest = convert(dataset, src, dst, split=split, split_file=str(split_file) if split_file else None,
                           images=str(images) if images else None, skip_invalid=skip_invalid, limit=limit,
                           overwrite=overwrite, progress=progress)
    except (DataError, ValueError, OSError) as exc:  # OSError: FileExistsError, an unwritable DST, ...
        bar.close()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    bar.close()
    errors = manifest.pop("skipped_errors")
    typer.echo(json.dumps(manifest, indent=2, ensure_ascii=False))
    for message in errors:
        typer.echo(f"skipped: {message}", err=True)
    if manifest["skipped_invalid"] > len(errors):
        typer.echo(f"skipped: {manifest['skipped_invalid'] - len(errors)} more, not listed", err=True)


@app.command("info")
def info_command(
    store: Path = typer.Argument(..., help="A store directory written by `guiagent data convert`."),
    actions: bool = typer.Option(False, "--actions", help="Also count action types (reads every episode)."),
) -> None:
    """Print a store's manifest (episodes, steps, samples, skipped records)."""
    from collections import Counter

    from guiagent.data.store import iter_episodes, read_manifest
    from guiagent.errors import DataError

    try:
        manifest = read_manifest(store)
        typer.echo(json.dumps(manifest, indent=2, ensure_ascii=False))
        if actions:
            counts = Counter(step.action.type.value if step.action else "none"
                             for trajectory in iter_episodes(store) for step in trajectory.steps)
            typer.echo(json.dumps({"action_types": dict(counts.most_common())}, indent=2))
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None


@app.command("sample")
def sample_command(
    kind: str = typer.Argument(..., help=", ".join(SAMPLE_KINDS)),
    dst: Path = typer.Argument(..., help="Directory to write the sample files into."),
    episodes: int = typer.Option(3, min=1, max=1000, help="Episodes (or samples per platform/app) to generate."),
    seed: int = typer.Option(0, help="Seed of the generated content."),
) -> None:
    """Write small synthetic files in a benchmark's official format (for trying `convert`)."""
    from guiagent.data import samples

    if kind not in SAMPLE_KINDS:
        typer.echo(f"error: unknown sample kind {kind!r}; choose from {', '.join(SAMPLE_KINDS)}", err=True)
        raise typer.Exit(code=1)
    try:
        if kind == "aitw":
            ids = samples.write_aitw_sample(dst / "general" / "general-00000-of-00001", episodes=episodes,
                                            seed=seed)
            samples.write_split_file(dst / "splits" / "standard.json",
                                     {"train": ids[:-1], "validation": [], "test": ids[-1:]})
        elif kind == "aitw_seeclick":
            samples.write_aitw_seeclick_sample(dst, episodes_per_subset=episodes, seed=seed)
        elif kind == "androidcontrol":
            samples.write_androidcontrol_sample(dst, episodes=episodes, seed=seed)
        elif kind == "odyssey":
            samples.write_odyssey_sample(dst, episodes=episodes, seed=seed)
        elif kind == "uis1":
            samples.write_uis1_sample(dst, episodes=episodes, seed=seed)
        elif kind == "screenspot_pro":
            samples.write_screenspot_pro_sample(dst, per_app=episodes, seed=seed)
        elif kind == "screenspot_parquet":
            samples.write_screenspot_parquet_sample(dst / "test-00000-of-00001.parquet", rows=episodes,
                                                    seed=seed)
        else:
            samples.write_screenspot_sample(dst, version=kind[-2:], per_platform=episodes, seed=seed)
    except OSError as exc:  # DST is a file, or lies under one, or cannot be written
        typer.echo(f"error: cannot write {dst}: {exc.strerror or exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"wrote {kind} sample files to {dst}")
