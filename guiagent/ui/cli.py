"""``guiagent view``: the trajectory viewer of a run directory or a trajectory store."""

from __future__ import annotations

from pathlib import Path

import typer


def view(
    run_or_store: str = typer.Argument(..., help="A run directory (its store is RUN/store/) or a trajectory store."),
    static: Path | None = typer.Option(
        None, "--static", help="Write the pages as static files into this folder instead of serving them."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback unless told otherwise)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
) -> None:
    """Browse trajectories: each step's screenshot with its action drawn on it, filters, GRPO groups."""
    from guiagent.errors import DataError
    from guiagent.ui.viewer import create_app, open_store, serve, write_static

    try:
        store = open_store(run_or_store)
        if static is not None:
            rows = write_static(store, static)
            typer.echo(f"wrote {len(rows)} episodes: {static / 'index.html'}")
            return
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"viewer of {store.url}: http://{host}:{port}/  (Ctrl-C stops it)")
    serve(create_app(store), host=host, port=port)
