"""AndroidWorld's task code in its own interpreter, driven by the worker over a pipe.

android_world pins its own android_env, protobuf, numpy and pandas (and needs Python >= 3.11), which clash
with the worker's; the Android image therefore installs it in a venv of its own (``/opt/android_world``, with
guiagent beside it, no deps), and the worker talks to this module running there:

``python -m guiagent.envs.androidworld.runner serve --serial emulator-5554 [--adb-path adb] [--grpc-port 8554]``
reads one JSON request per line on stdin — ``{"op": "setup", "task": TASK}``, ``{"op": "evaluate", "task":
TASK}``, ``{"op": "close"}`` — and answers each with one line ``GUIAGENT-REPLY {json}`` on stdout (the task
code may print other lines): ``{"ok": true}``, ``{"outcome": OUTCOME}`` or ``{"error", "type"}``. The task
instance lives in this process between ``setup`` and ``evaluate``.

``python -m guiagent.envs.androidworld.runner suite --out suite.json [--seed 30] [--n-task-combinations 1]``
writes the suite (for ``guiagent eval androidworld --suite``) where android_world is installed.

:class:`RemoteAndroidWorldTasks` is the worker's side: the same ``setup``/``evaluate`` hooks as
:class:`~guiagent.envs.androidworld.AndroidWorldTasks`, with a timeout on every reply.
"""

from __future__ import annotations

import argparse
import json
import queue
import subprocess
import sys
import threading
import time
from typing import Any

from guiagent.envs import androidworld
from guiagent.errors import ConfigError, DeviceError, DeviceLost, DeviceTimeout, GuiAgentError
from guiagent.types import Outcome, Task, from_json, to_json

MARKER = "GUIAGENT-REPLY "
_ERRORS = {"ConfigError": ConfigError, "DeviceTimeout": DeviceTimeout, "DeviceLost": DeviceLost}


class RemoteAndroidWorldTasks:
    """The ``task_setup``/``task_evaluation`` hooks of an Android env, run by android_world in ``python``.

    Args:
        python: The interpreter of the venv with android_world (and guiagent).
        serial: The emulator's serial (``emulator-5554``).
        adb_path: The adb android_world uses.
        grpc_port: The emulator's gRPC port.
        family: android_world's suite family.
        timeout: Seconds a setup (``initialize_task``) or an evaluation may take.
    """

    def __init__(self, python: str, serial: str, adb_path: str = "adb", grpc_port: int = 8554,
                 family: str = androidworld.FAMILY, timeout: float = 600.0):
        self.command = [python, "-m", "guiagent.envs.androidworld.runner", "serve", "--serial", serial,
                        "--adb-path", adb_path, "--grpc-port", str(grpc_port), "--family", family]
        self.timeout = timeout
        self._process: subprocess.Popen | None = None
        self._lines: queue.Queue = queue.Queue()

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._process is None or self._process.poll() is not None:
            try:
                self._process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                 text=True, bufsize=1)
            except OSError as exc:
                raise ConfigError(f"cannot run AndroidWorld's interpreter {self.command[0]!r}: {exc}") from None
            # A thread reads its lines into a queue, so that waiting for a reply has a timeout (a select() on
            # the pipe would miss lines already in the reader's buffer).
            self._lines = queue.Queue()
            threading.Thread(target=_pump, args=(self._process.stdout, self._lines), daemon=True).start()
        process = self._process
        try:
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
        except OSError as exc:
            self._process = None
            raise DeviceLost(f"AndroidWorld's runner is gone: {exc}") from exc
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self._process = None
                process.kill()  # hung: asking it to close would wait on it again
                process.wait()
                raise DeviceTimeout(f"AndroidWorld's {request['op']} took over {self.timeout}s") from None
            if line is None:
                self._process = None
                raise DeviceLost(f"AndroidWorld's runner exited ({process.wait()}) during {request['op']}")
            if line.startswith(MARKER):
                reply = json.loads(line[len(MARKER):])
                break
            sys.stderr.write(line)  # the task code's own output, kept in the worker's log
        if "error" in reply:
            raise _ERRORS.get(reply.get("type"), DeviceError)(reply["error"])
        return reply

    def setup(self, env: Any, task: Task) -> None:
        """``task_setup``: ``initialize_task`` of the instance ``task`` names, in the runner."""
        self._call({"op": "setup", "task": task.to_json()})

    def evaluate(self, env: Any, task: Task) -> Outcome:
        """``task_evaluation``: the instance's ``is_successful``, then its ``tear_down``, in the runner."""
        return from_json(Outcome, self._call({"op": "evaluate", "task": task.to_json()})["outcome"])

    def close(self) -> None:
        """Stop the runner (it is started again by the next call)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        try:
            process.stdin.write(json.dumps({"op": "close"}) + "\n")
            process.stdin.flush()
            process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()


def _pump(stream: Any, lines: queue.Queue) -> None:
    """Copy ``stream``'s lines into ``lines``, then None at its end."""
    for line in stream:
        lines.put(line)
    lines.put(None)


def serve(args: argparse.Namespace) -> None:
    """Answer the worker's requests until ``close`` or the end of stdin."""
    tasks = androidworld.AndroidWorldTasks(
        androidworld.load_registry(args.family),
        lambda: androidworld.emulator_async_env(args.serial, args.adb_path, f"127.0.0.1:{args.grpc_port}"))
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["op"] == "close":
                break
            task = Task.from_json(request["task"])
            if request["op"] == "setup":
                tasks.setup(None, task)
                reply: dict[str, Any] = {"ok": True}
            elif request["op"] == "evaluate":
                reply = {"outcome": to_json(tasks.evaluate(None, task))}
            else:
                raise ConfigError(f"unknown request {request['op']!r}")
        except GuiAgentError as exc:
            reply = {"error": str(exc), "type": type(exc).__name__}
        except Exception as exc:  # noqa: BLE001 -- android_world's own failure goes back to the worker, typed as a device error
            reply = {"error": f"android_world {request.get('op')}: {type(exc).__name__}: {exc}", "type": "crash"}
        print(MARKER + json.dumps(reply), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m guiagent.envs.androidworld.runner",
                                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run task setup and evaluation for the worker (stdin/stdout)")
    run.add_argument("--serial", required=True, help="the emulator's serial, emulator-PORT")
    run.add_argument("--adb-path", default="adb")
    run.add_argument("--grpc-port", type=int, default=8554)
    run.add_argument("--family", default=androidworld.FAMILY)
    suite = commands.add_parser("suite", help="write the suite as JSON")
    suite.add_argument("--out", required=True)
    suite.add_argument("--seed", type=int, default=androidworld.DEFAULT_SEED)
    suite.add_argument("--n-task-combinations", type=int, default=1)
    suite.add_argument("--tasks", default=None, help="comma-separated templates (default: all)")
    suite.add_argument("--family", default=androidworld.FAMILY)
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            serve(args)
        else:
            names = [t for t in args.tasks.split(",") if t] if args.tasks else None
            tasks = androidworld.create_suite(androidworld.load_registry(args.family), seed=args.seed,
                                              n_task_combinations=args.n_task_combinations, tasks=names,
                                              family=args.family)
            androidworld.save_suite(tasks, args.out)
            print(f"wrote {len(tasks)} tasks to {args.out}", file=sys.stderr)
    except GuiAgentError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
