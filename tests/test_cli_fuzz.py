"""Fuzz every ``guiagent`` command: random and adversarial arguments never end in a traceback or a hang.

The commands are discovered from the typer app, so a command added later is fuzzed without touching this
file. In each run one parameter (or none) gets an adversarial value for its type: for ints and floats
zero, negative, huge or NaN; for paths binary junk, an empty file, a missing path, a directory, a path
under a file, a TFRecord whose length field says 2^62 with a valid CRC; for any of them junk text. The
other parameters get what their default and help text suggest (a converted store and predictions for it
where the help says "store" and "predictions", a choice such as ``qwen25vl_mobile`` where the help lists
it), so that the one bad value reaches past argument parsing. What is checked is what a user sees:

- never a Python traceback: in-process the only exception left is ``SystemExit``; through the console
  script ``Traceback (most recent call last)`` is never printed;
- never a hang: each in-process run is interrupted after ``BOUND_S``. The commands that serve until
  interrupted (``SERVERS``) run as subprocesses in their own session, stopped by PID after
  ``SERVER_RUN_S`` (serving is not a failure, a traceback before that is);
- no process left behind: children a command started are stopped by PID after each run, and only the
  commands whose job is to leave them (``LEAVES_PROCESSES``) may leave any.

Hypothesis runs derandomized (seeded from the test's name), so CI sees the same arguments on every run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import types
import typing
from pathlib import Path

import psutil
import pytest
import typer.main
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from guiagent.cli import app

TRACEBACK = "Traceback (most recent call last)"
BOUND_S = 20.0  # an in-process run still going after this long is a hang
SERVERS = {"sim adbd", "serve", "farm worker", "view", "farm dashboard"}  # run until interrupted
SERVER_RUN_S = 2.5  # a server still running after this long is serving; it is then stopped
LEAVES_PROCESSES = {"farm up"}  # starts daemons and returns (`farm down` stops them)
# Values that start programs, build environments or load the machine: never random.
SAFE_VALUES = {
    ("serve", "command"): ["/nonexistent/vllm serve", "false"],
    ("serve", "python"): ["/nonexistent/python"],
    ("serve", "cpu"): [False],  # builds the vLLM CPU venv (minutes, network)
    ("farm up", "sim"): ["0"],  # each MobileSim worker is a Python process
    ("farm up", "local"): [False, False, True],  # starting redis-server takes about a second
}
EXAMPLES = 25  # per command
SERVER_EXAMPLES = 3


# --- The command tree --------------------------------------------------------------------------------------


def _leaves(command, path=()):
    """(name, click command) of every leaf command under ``command``, names as typed (``eval aitw``)."""
    children = getattr(command, "commands", None)
    if children is None:
        yield " ".join(path), command
        return
    for name, child in children.items():
        yield from _leaves(child, (*path, name))


COMMANDS = dict(_leaves(typer.main.get_command(app)))


def test_commands_are_discovered():
    # Spot checks that discovery walks every group; the fuzz below covers every leaf it finds.
    assert {"config validate", "actions parse", "data convert", "eval aitw", "sim adbd", "serve"} <= set(COMMANDS)
    named = SERVERS | LEAVES_PROCESSES | {command for command, _ in SAFE_VALUES}
    assert named <= set(COMMANDS), f"renamed commands: update this file ({named - set(COMMANDS)})"


# --- Inputs ------------------------------------------------------------------------------------------------

INTS = ["0", "-1", "1", "2", "65535", "65536", "99999", str(2**31), str(2**62), str(2**63), str(10**30),
        str(-(10**30))]
# Ordinary values stay small: a valid latency or timeout of seconds makes a slow run, not a hang.
FLOATS = ["nan", "inf", "-inf", "-1", "0", "-0.0", "1e308", "1e-300", "0.01"]
# No NUL: a real command line cannot carry one (files can, and the junk file does).
TEXTS = ["", " ", "{", "[]", "null", "é😀", "a=b", "=", "-", "--", "0,0,1", "1,2,3,nan", "x" * 3000,
         '{"type": "click", "point": [540, 1200]}', '{"type": "click"}', '{"type": "click", "point": [1e999, 0]}',
         "http://127.0.0.1:9", "<tool_call>{}</tool_call>", "a 'b"]


@pytest.fixture(scope="module")
def store_template(tmp_path_factory) -> Path:
    """A small converted AITW store (SeeClick split, 5 episodes) that each example copies."""
    from guiagent.data import samples
    from guiagent.data.convert import convert

    src = tmp_path_factory.mktemp("src")
    json_file = samples.write_aitw_seeclick_sample(src, episodes_per_subset=1, seed=1)
    dst = tmp_path_factory.mktemp("template") / "store"
    convert("aitw_seeclick", json_file, dst, images=str(src / "aitw_images"), split="test")
    return dst


def huge_length_tfrecord(path: Path) -> Path:
    """A TFRecord whose length field says 2^62 bytes, with a valid CRC over it."""
    from guiagent.data.tfrecord import masked_crc

    path.parent.mkdir(parents=True, exist_ok=True)
    length = struct.pack("<Q", 2**62)
    path.write_bytes(length + struct.pack("<I", masked_crc(length)) + b"short")
    return path


def scratch_inputs(root: Path, store_template: Path) -> dict[str, str]:
    """A fresh directory of adversarial and real inputs for one example; name → path."""
    from PIL import Image

    from guiagent.data.store import iter_episodes
    from guiagent.images import encode_png

    root.mkdir()
    files = {name: root / file for name, file in (
        ("junk", "junk.bin"), ("empty", "empty.jsonl"), ("text", "text.txt"), ("bad_jsonl", "bad.jsonl"),
        ("preds", "preds.jsonl"), ("yaml", "config.yaml"), ("png", "screen.png"))}
    files["junk"].write_bytes(bytes(range(256)) * 4 + b"\xff\xfe\x00\x80")
    files["empty"].write_bytes(b"")
    files["text"].write_text("hello\n")
    files["bad_jsonl"].write_text('{"episode_id": "x", "step": -1, "response": 3}\n[1, 2]\n{\n')
    files["yaml"].write_text("name: [\nactions: 3\n")
    files["png"].write_bytes(encode_png(Image.new("RGB", (32, 48))))
    huge_length_tfrecord(root / "tfrecords" / "huge.tfrecord")
    store = root / "store"
    shutil.copytree(store_template, store)
    lines = [{"episode_id": t.episode_id, "step": s.index, "action": s.action.to_json()}
             for t in iter_episodes(store) for s in t.steps if s.action is not None][:6]
    lines.append({"episode_id": "no-such-episode", "step": 0, "response": "x"})
    files["preds"].write_text("".join(json.dumps(line) + "\n" for line in lines))
    (root / "dir").mkdir()
    paths = {name: str(path) for name, path in files.items()}
    paths.update(store=str(store), dir=str(root / "dir"), missing=str(root / "missing"),
                 missing_deep=str(root / "missing" / "a" / "b"), under_file=str(files["junk"] / "child"),
                 tfrecord_dir=str(root / "tfrecords"), stdin="-")
    return paths


def _base_type(annotation):
    """``Optional[int]`` → int, ``list[str]`` → str (``param.multiple`` tells lists apart)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0]) if len(args) == 1 else str
    if typing.get_origin(annotation) in (list, tuple):
        return _base_type(typing.get_args(annotation)[0])
    return annotation


# What a path parameter's help says it wants → the inputs that fit, for the values that are meant to be valid.
PATH_HINTS = [("store", ["store"]), ("predictions", ["preds"]), ("screenshot", ["png"]), ("png", ["png"]),
              ("yaml", ["yaml"]), ("dataset", ["tfrecord_dir", "store"]), ("directory for", ["missing", "dir"]),
              ("write", ["missing", "dir"]), ("output", ["missing", "dir"])]


def _value(draw, command: str, param, paths: dict[str, str], adversarial: bool):
    """One value for ``param``: command-line text, or a bool for a flag. Adversarial values are junk, zero,
    negative, huge, NaN, missing or the wrong kind of file; the others are what the help and the default
    suggest, so that one adversarial value at a time reaches past argument parsing."""
    safe = SAFE_VALUES.get((command, param.name))
    if safe is not None:
        return draw(st.sampled_from(safe))
    if getattr(param, "is_flag", False):
        return draw(st.booleans())
    kind = _base_type(param.type_descriptor.annotation)
    help_text = (getattr(param, "help", None) or "").lower()
    default = [] if param.default is None or isinstance(param.default, (list, tuple)) else [str(param.default)]
    if not adversarial:
        if kind is Path:
            fits = [paths[name] for word, names in PATH_HINTS if word in help_text for name in names]
            return draw(st.sampled_from(fits or sorted(paths.values())))
        if default:
            return default[0]
        if kind is int:
            return draw(st.sampled_from(["1", "3", "240", "1080"]))
        if kind is float:
            return draw(st.sampled_from(["0", "0.01"]))
        return draw(st.sampled_from(sorted(set(re.findall(r"[a-z][a-z0-9_]{2,}", help_text))) or ["word"]))
    junk = st.sampled_from(TEXTS) | st.text(st.characters(blacklist_characters="\x00"), max_size=20)
    if kind is int:
        return draw(st.sampled_from(INTS) | st.integers(-1000, 5000).map(str) | junk)
    if kind is float:
        return draw(st.sampled_from(FLOATS) | st.floats(-1e6, 0.05).map(repr) | junk)
    return draw(st.sampled_from(sorted(paths.values())) | junk)


def draw_argv(draw, command: str, paths: dict[str, str]) -> list[str]:
    """Arguments for ``command``: one parameter (or none) adversarial, the others valid-looking. An optional
    parameter is present one time in three; a required one always, unless it is the adversarial one, which
    is then sometimes left out."""
    params = COMMANDS[command].params
    bad = draw(st.sampled_from([None, *range(len(params))]))
    options, arguments = [], []
    for i, param in enumerate(params):
        if i == bad:
            present = not param.required or draw(st.sampled_from([True, True, True, False]))
        else:
            present = param.required or draw(st.sampled_from([True, False, False]))
        if not present:
            continue
        for _ in range(draw(st.integers(1, 2)) if param.multiple else 1):
            value = _value(draw, command, param, paths, adversarial=i == bad)
            if param.param_type_name == "argument":
                arguments.append(value)
            elif value is True:
                options.append(param.opts[0])
            elif value is not False:
                options += [param.opts[0], value]
    # "--" keeps a positional that starts with "-" from being read as an option.
    return [*command.split(), *options, *(["--"] if any(a.startswith("-") for a in arguments) else []), *arguments]


# --- Running -----------------------------------------------------------------------------------------------


class Hang(BaseException):
    """Raised in the command by the timer; a BaseException, so no ``except Exception`` swallows it."""


def _on_alarm(signum, frame):
    raise Hang()


def stop_new_processes(before: set[int]) -> list[str]:
    """Stop, by PID, every descendant of this process that ``before`` does not list; name them."""
    new = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    names = []
    for process in new:
        try:
            names.append(f"{process.pid} {process.name()}")
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(new, timeout=10)
    for process in alive:
        process.kill()
    psutil.wait_procs(alive, timeout=10)
    return names


def check_in_process(command: str, argv: list[str], cwd: Path) -> None:
    """Run ``guiagent ARGV`` in-process under a timer and check what the user would see."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    old_cwd = os.getcwd()
    os.chdir(cwd)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, BOUND_S)
    try:
        result = CliRunner().invoke(app, argv, input="", catch_exceptions=True)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        os.chdir(old_cwd)
        left = stop_new_processes(before)
    shown = "guiagent " + " ".join(map(repr, argv))
    assert not isinstance(result.exception, Hang), f"{shown}: still running after {BOUND_S} s"
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{shown}: raised {result.exception!r}\n{result.output[-2000:]}")
    assert TRACEBACK not in result.output, f"{shown}\n{result.output[-3000:]}"
    assert command in LEAVES_PROCESSES or not left, f"{shown}: left processes running: {left}"


def run_console_script(argv: list[str], cwd: Path, limit_s: float) -> str:
    """Run ``python -m guiagent ARGV`` in its own session and return its output; if it still runs after
    ``limit_s`` (a server serving), stop its process group by PID first."""
    proc = subprocess.Popen([sys.executable, "-m", "guiagent", *argv], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        # Its children may have sessions of their own (a vLLM server): note them before they are orphaned.
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:  # it ended just now
            children = []
        os.killpg(proc.pid, signal.SIGTERM)  # guiagent's servers stop what they started on SIGTERM
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        for child in psutil.wait_procs(children, timeout=5)[1]:
            child.kill()
    return out.decode("utf-8", "replace")


# --- The fuzz ----------------------------------------------------------------------------------------------


def _fuzz(max_examples: int, shrink: bool = True):
    return settings(max_examples=max_examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
                    phases=list(Phase) if shrink else [Phase.explicit, Phase.reuse, Phase.generate])


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - SERVERS))
def test_command_never_tracebacks_or_hangs(command, store_template, tmp_path):
    examples = iter(range(10**6))

    @_fuzz(EXAMPLES)
    @given(data=st.data())
    def fuzz(data):
        scratch = tmp_path / f"example{next(examples)}"
        argv = draw_argv(data.draw, command, scratch_inputs(scratch, store_template))
        check_in_process(command, argv, scratch)

    fuzz()


@pytest.mark.parametrize("command", sorted(SERVERS))
def test_server_never_tracebacks(command, store_template, tmp_path):
    examples = iter(range(10**6))

    @_fuzz(SERVER_EXAMPLES, shrink=False)  # each try is a process start-up and up to SERVER_RUN_S
    @given(data=st.data())
    def fuzz(data):
        scratch = tmp_path / f"example{next(examples)}"
        argv = draw_argv(data.draw, command, scratch_inputs(scratch, store_template))
        output = run_console_script(argv, scratch, SERVER_RUN_S)
        assert TRACEBACK not in output, f"guiagent {' '.join(map(repr, argv))}\n{output[-3000:]}"

    fuzz()


# --- The user errors of the hardening issue, through the console script ----------------------------------


def test_user_errors_are_one_line_and_a_non_zero_exit(store_template, tmp_path):
    paths = scratch_inputs(tmp_path / "inputs", store_template)
    out = str(tmp_path / "out")
    click = "<tool_call>{}</tool_call>"
    cases = {  # argv → (exit code, what the error line names)
        ("config", "validate", paths["junk"]): (1, "junk.bin"),
        ("eval", "aitw", paths["store"], "--predictions", paths["junk"], "--out", out): (1, "junk.bin, record 1"),
        ("eval", "aitw", paths["store"], "--predictions", paths["preds"], "--out", paths["text"]): (2, "--out"),
        ("eval", "aitw", paths["store"], "--predictions", paths["preds"], "--out", out, "--format", "x"):
            (2, "format"),
        ("data", "convert", "aitw", paths["tfrecord_dir"], out): (1, "huge.tfrecord, record 0: truncated"),
        ("actions", "parse", "--format", "qwen25vl_mobile", "--width", "0", click): (2, "--width"),
        ("actions", "parse", "--format", "qwen25vl_mobile", "--max-pixels", "0", click): (2, "--max-pixels"),
        ("actions", "parse", "--format", "gpt4", click): (2, "--format"),
        ("sim", "adbd", "--port", "99999"): (2, "--port"),
        ("sim", "adbd", "--width", "-1"): (2, "320x480"),
        ("serve", "model", "--port", "0"): (2, "--port"),
    }
    # Started together: each is an interpreter start-up, and the machine may have two cores.
    running = {argv: subprocess.Popen([sys.executable, "-m", "guiagent", *argv], cwd=tmp_path, text=True,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      start_new_session=True)
               for argv in cases}
    for argv, proc in running.items():
        try:
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        code, named = cases[argv]
        assert TRACEBACK not in stdout + stderr, argv
        assert proc.returncode == code, (argv, proc.returncode, stderr)
        assert named in stderr, (argv, stderr)
        if code == 1:  # guiagent's own errors are one "error:" line (code 2 may be typer's usage box)
            errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
            assert len(errors) == 1 and named in errors[0], (argv, stderr)
