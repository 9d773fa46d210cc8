"""``guiagent sim``: list MobileSim tasks, play them (expert or by hand) and take screenshots."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="MobileSim, the deterministic phone simulator: tasks, runs, screenshots.",
                  no_args_is_help=True)

_WIDTH = typer.Option(1080, help="Screen width in pixels (320 to 4096).")
_HEIGHT = typer.Option(2400, help="Screen height in pixels (480 to 4096).")
_STEP_LATENCY = typer.Option(0.0, help="Seconds each input takes, to imitate a real device (0 to 10).")

_HELP_COMMANDS = """Commands (or one canonical action as JSON, e.g. {"type": "click", "point": [540, 1200]}):
  tap X Y | long X Y | swipe X1 Y1 X2 Y2 | scroll up|down|left|right | type TEXT | key NAME
  back | home | recents | enter | open APP | answer TEXT | done | quit | ui (list clickable nodes)"""


def parse_command(line: str):
    """One line typed by a person → an :class:`~guiagent.types.Action` (None for ``ui``/``help``).

    Raises:
        ValueError: the line is neither a command nor canonical action JSON.
    """
    from guiagent.types import Action

    line = line.strip()
    if line.startswith("{"):
        return Action.from_json(json.loads(line))
    words = shlex.split(line)
    if not words:
        raise ValueError("empty command")
    cmd, args = words[0].lower(), words[1:]
    rest = line.split(None, 1)[1] if len(words) > 1 else ""
    numbers = lambda n: [float(a) for a in args[:n]] if len(args) >= n else None  # noqa: E731
    if cmd == "tap" and numbers(2):
        return Action.click(*numbers(2))
    if cmd == "long" and numbers(2):
        return Action.long_press(*numbers(2))
    if cmd == "swipe" and numbers(4):
        x1, y1, x2, y2 = numbers(4)
        return Action.swipe((x1, y1), (x2, y2))
    if cmd == "scroll" and args:
        return Action.scroll(args[0].lower())
    if cmd == "type" and rest:
        return Action.type_text(rest)
    if cmd == "key" and args:
        return Action(type="key", keys=(args[0],))
    if cmd in ("back", "home", "enter"):
        return Action.system_button(cmd)
    if cmd in ("recents", "app_switch"):
        return Action.system_button("app_switch")
    if cmd == "open" and rest:
        return Action.open_app(rest)
    if cmd == "answer" and rest:
        return Action.answer(rest)
    if cmd in ("done", "quit", "exit"):
        return Action.terminate("success" if cmd == "done" else "failure")
    if cmd in ("ui", "help"):
        return None
    raise ValueError(f"not a command: {line!r}")


@app.command("tasks")
def tasks_command(seed: int = typer.Option(0, help="Seed whose instructions to show.")) -> None:
    """List the task templates with their app, step budget and the instruction for SEED."""
    from guiagent.envs.sim.apps import APPS
    from guiagent.envs.sim.tasks import TEMPLATES, make_task

    for name, template in TEMPLATES.items():
        task = make_task(name, seed)
        typer.echo(f"{name:28s} {APPS[template.app][0]:14s} max_steps={template.max_steps:<3d} {task.instruction}")


class TypedAgent:
    """A person at the terminal: one command per line from ``lines`` (``help`` lists them), ``ui`` lists the
    clickable nodes of the current screen; end of input ends the episode."""

    def __init__(self, lines, echo):
        self.lines = iter(lines)
        self.echo = echo

    def reset(self, task) -> None:
        self.echo(_HELP_COMMANDS)

    def act(self, observation, history):
        from guiagent.agent import Decision
        from guiagent.envs.sim.oracle import UIScreen
        from guiagent.types import Action

        for line in self.lines:
            try:
                action = parse_command(line)
            except (ValueError, KeyError) as exc:
                self.echo(f"  ? {exc}")
                continue
            if action is not None:
                return Decision(action)
            for n in UIScreen(observation.a11y_tree, (observation.width, observation.height)).nodes:
                if n.clickable:
                    self.echo(f"  {n.center[0]:6.0f} {n.center[1]:6.0f}  {n.text or n.desc or n.rid}")
        return Decision(Action.terminate("failure", "end of input"))


@app.command("run")
def run_command(
    template: str = typer.Argument(..., help="Task template name (see `guiagent sim tasks`)."),
    seed: int = typer.Option(0, help="Task seed."),
    out: Path = typer.Option(..., help="Directory for step_NNN.png screenshots and trajectory.json."),
    oracle: bool = typer.Option(False, "--oracle", help="Let the expert play; otherwise read actions from stdin."),
    width: int = _WIDTH,
    height: int = _HEIGHT,
    step_latency: float = _STEP_LATENCY,
) -> None:
    """Run one task through the agent loop and save every screen plus the trajectory JSON.

    Without --oracle, type one command per line (`help` lists them); `done` ends the episode.
    The success reported is the simulator's own check, not what was typed.
    """
    import dataclasses

    from guiagent.agent import OracleAgent, run_episode
    from guiagent.envs.sim.env import MobileSimEnv
    from guiagent.envs.sim.tasks import make_task
    from guiagent.types import dumps

    try:
        task = make_task(template, seed)
        env = MobileSimEnv(width=width, height=height, step_latency=step_latency, seed=seed)
    except (KeyError, ValueError) as exc:  # an unknown template; a screen size or latency out of range
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(code=2) from None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        typer.echo(f"error: cannot create --out {out}: {exc.strerror or exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"{task.task_id}: {task.instruction}")
    agent = OracleAgent() if oracle else TypedAgent(sys.stdin, typer.echo)

    def show(step) -> None:
        if step.refused is not None:
            typer.echo(f"  ! {step.refused}")
        else:
            typer.echo(f"  {step.index + 1:3d} {step.action.type.value}")

    trajectory = run_episode(env, task, agent, policy_version="expert" if oracle else "human", on_step=show)
    steps = []
    for step in trajectory.steps:  # screenshots beside the trajectory, as files
        name = f"step_{step.index:03d}.png"
        (out / name).write_bytes(step.observation.screenshot)
        steps.append(dataclasses.replace(
            step, observation=dataclasses.replace(step.observation, screenshot=None, screenshot_path=name)))
    final = f"step_{len(steps):03d}.png"
    (out / final).write_bytes(env.observe().screenshot)
    trajectory = dataclasses.replace(trajectory, steps=tuple(steps),
                                     info={**trajectory.info, "final_screenshot": final})
    (out / "trajectory.json").write_text(dumps(trajectory, indent=1), encoding="utf-8")
    success = trajectory.outcome.success
    typer.echo(f"{'SUCCESS' if success else 'FAILURE'} after {len(steps)} steps; saved to {out}")
    raise typer.Exit(code=0 if success else 1)


@app.command("screenshot")
def screenshot_command(
    out: Path = typer.Option(..., help="PNG file to write."),
    app_name: Optional[str] = typer.Option(None, "--app", help="App label or package to open first (default: home)."),
    seed: int = typer.Option(0, help="World seed."),
    width: int = _WIDTH,
    height: int = _HEIGHT,
    xml: Optional[Path] = typer.Option(None, help="Also write the uiautomator XML here."),
) -> None:
    """Save one screen of a fresh device (home screen, or APP's main screen)."""
    from guiagent.envs.sim.device import MobileSim
    from guiagent.errors import ActionError

    try:
        sim = MobileSim(width, height, seed=seed)
        if app_name:
            sim.start_app(sim.package_for(app_name))
    except (ActionError, ValueError) as exc:  # an unknown app; a screen size out of range
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(sim.screenshot_png())
        if xml is not None:
            xml.write_text(sim.dump_ui_xml(), encoding="utf-8")
    except OSError as exc:  # a directory given as the file, a path under a file, ...
        typer.echo(f"error: cannot write {exc.filename or out}: {exc.strerror or exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"{out} ({width}x{height}, {sim.current_focus()[0]})")


@app.command("adbd")
def adbd_command(
    port: int = typer.Option(0, min=0, max=65535,
                             help="adbd TCP port (0 picks a free one); with --emulator an odd port P, console on P-1."),
    template: Optional[str] = typer.Option(None, help="Task template to reset the device to (default: home screen)."),
    seed: int = typer.Option(0, help="Task/world seed."),
    host: str = typer.Option("127.0.0.1", help="Listen address; adbd has no authentication, keep it on loopback."),
    emulator: bool = typer.Option(False, "--emulator", help="Also serve the console (adb emu) and the gRPC services."),
    register: Optional[int] = typer.Option(None, min=1, max=65535,
                                           help="With --emulator: announce it to the adb server on this port."),
    width: int = _WIDTH,
    height: int = _HEIGHT,
    step_latency: float = _STEP_LATENCY,
) -> None:
    """Serve a MobileSim over the ADB protocol until interrupted; attach with `adb connect HOST:PORT`."""
    import signal
    import threading

    from guiagent.envs.sim.adbd import serve
    from guiagent.envs.sim.device import MobileSim
    from guiagent.envs.sim.emulator_grpc import serve_emulator
    from guiagent.envs.sim.tasks import make_task

    try:
        sim = MobileSim(width, height, step_latency=step_latency, seed=seed)
        sim.reset(make_task(template, seed) if template else None)
    except (KeyError, ValueError) as exc:  # an unknown template; a screen size or latency out of range
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(code=2) from None
    try:
        server = serve_emulator(sim, host=host, adb_port=port) if emulator else serve(sim, host=host, port=port)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: cannot serve on {host}:{port}: {exc}", err=True)
        raise typer.Exit(code=1) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    adbd = server.adbd if emulator else server
    typer.echo(f"adbd listening on {adbd.serial}: adb connect {adbd.serial}")
    if emulator:
        typer.echo(f"emulator serial {server.serial} (console port {server.console.port}), gRPC {server.grpc_endpoint}")
        if register is not None:
            server.register(register)
    sys.stdout.flush()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
