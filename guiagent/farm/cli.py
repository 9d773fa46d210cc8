"""``guiagent farm``: start, inspect and stop a farm of device workers."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="The environment farm: device workers on Celery + Redis.", no_args_is_help=True)

_DIR = typer.Option(Path("runs/farm"), "--dir", help="Where a local farm keeps its state file, logs and store.")


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=code)


@app.command("up")
def up(
    local: bool = typer.Option(False, "--local", help="Start Redis and the workers on this machine."),
    sim: int = typer.Option(2, "--sim", min=0, max=512, help="MobileSim device workers to start."),
    web: int = typer.Option(0, "--web", min=0, max=64,
                            help="MiniWoB++ device workers to start (headless Chromium each; ~2 per 2 cores)."),
    step_latency: float = typer.Option(0.0, "--step-latency", min=0.0, help="Seconds each simulated input takes."),
    directory: Path = _DIR,
) -> None:
    """Start a local farm (redis-server + N MobileSim and M MiniWoB++ workers) and return; `farm down` stops it.

    On GPU/KVM hosts the farm runs from docker-compose.yml instead (see emulators/README.md).
    """
    from guiagent.errors import GuiAgentError
    from guiagent.farm.local import STATE_FILE, LocalFarm

    if not local:
        _fail("only --local is started from here; on GPU/KVM hosts run 'docker compose up' (docker-compose.yml)", 2)
    if (directory / STATE_FILE).exists():
        _fail(f"a farm already runs from {directory} ({directory / STATE_FILE}); 'guiagent farm down --dir "
              f"{directory}' first")
    farm = LocalFarm(directory, sims=sim, webs=web, step_latency=step_latency or None)
    try:
        config = farm.start()
    except GuiAgentError as exc:
        farm.stop()
        _fail(str(exc))
    typer.echo(f"farm up: {sim} MobileSim and {web} MiniWoB++ workers, broker "
               f"{config.broker_url.split('@')[-1]} (password in "
               f"{directory / STATE_FILE}), store {config.store_url}")
    typer.echo(f"flower:  GUIAGENT_FARM_CONFIG=\"$(jq -c .config {directory / STATE_FILE})\" "
               "celery -A guiagent.farm.app:app flower --address=127.0.0.1")


@app.command("status")
def status(directory: Path = _DIR, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Devices (health, current task and step, counters), queue depth and throughput of a local farm."""
    from guiagent.errors import GuiAgentError
    from guiagent.farm.client import FarmClient
    from guiagent.farm.config import FarmConfig
    from guiagent.farm.local import read_state

    try:
        state = read_state(directory)
        config = FarmConfig.model_validate(state["config"])
        with FarmClient(config, check_workers=False) as client:
            devices, depths, answering = client.device_status(), client.queue_depths(), client.workers()
    except GuiAgentError as exc:
        _fail(str(exc))
    except Exception as exc:  # the broker is down: say so in one line
        _fail(f"cannot reach the farm's broker: {type(exc).__name__}: {exc}")
    now = time.time()
    if as_json:
        typer.echo(json.dumps({"devices": devices, "queues": depths, "answering": sorted(answering)}, indent=2))
        return
    typer.echo(f"{'worker':<28} {'state':<14} {'task':<34} {'step':>4} {'episodes':>8} {'steps':>6} "
               f"{'steps/min':>9} {'recov':>5} {'quar':>4}  last error")
    for host, d in devices.items():
        minutes = max((now - d.get("started", now)) / 60, 1e-9)
        alive = host in answering and now - d.get("heartbeat", 0) < 3600
        typer.echo(f"{host:<28} {d['state'] if alive else 'not answering':<14} {d.get('task') or '-':<34} "
                   f"{d.get('step') if d.get('step') is not None else '-':>4} {d['episodes']:>8} {d['steps']:>6} "
                   f"{d['steps'] / minutes:>9.1f} {d['recoveries']:>5} {d['quarantines']:>4}  "
                   f"{d.get('last_error') or ''}")
    typer.echo("queues: " + ", ".join(f"{kind} {n}" for kind, n in depths.items()))


@app.command("down")
def down(directory: Path = _DIR) -> None:
    """Stop exactly the processes `guiagent farm up --local --dir DIR` started."""
    from guiagent.errors import GuiAgentError
    from guiagent.farm.local import stop_recorded

    try:
        pids = stop_recorded(directory)
    except GuiAgentError as exc:
        _fail(str(exc))
    typer.echo(f"farm down: stopped {len(pids)} processes ({', '.join(map(str, pids))})")


@app.command("worker")
def worker(
    kind: str = typer.Option(..., "--kind", help="Device kind: sim, android, osworld, web."),
    device_id: str = typer.Option(..., "--device-id", help="Stable device id, e.g. sim-3."),
    extra: Optional[list[str]] = typer.Argument(None, help="More worker options (see python -m guiagent.farm.worker -h)."),
) -> None:
    """Run one device worker in the foreground (what compose and `farm up` start)."""
    from guiagent.farm.worker import main

    main(["--kind", kind, "--device-id", device_id, *(extra or [])])


@app.command("dashboard")
def dashboard(
    directory: Path = _DIR,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback unless told otherwise)."),
    port: int = typer.Option(8001, "--port", min=1, max=65535, help="Port to listen on."),
    interval: float = typer.Option(1.0, "--interval", min=0.1, help="Seconds between updates of the page."),
) -> None:
    """A live page of the farm: each device's latest screen, health, task, step, throughput and errors."""
    from guiagent.errors import GuiAgentError
    from guiagent.ui.dashboard import serve_dashboard

    typer.echo(f"farm dashboard: http://{host}:{port}/  (Ctrl-C stops it)")
    try:
        serve_dashboard(directory, host=host, port=port, interval=interval)
    except GuiAgentError as exc:
        _fail(str(exc))
