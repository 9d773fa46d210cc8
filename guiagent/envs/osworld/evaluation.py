"""Judging an OSWorld task with its ``evaluator`` block, the way OSWorld's ``DesktopEnv.evaluate`` does.

The evaluator names metric functions (``func``, one or a list combined by ``conj``), getters that read the
VM's state (``result``: ``{"type": "vm_file", ...}`` → ``get_vm_file``) and getters of what is expected
(``expected``: ``{"type": "rule", ...}``), plus metric ``options``. The metrics and getters are OSWorld's
own (``desktop_env.evaluators``) wherever that package is importable — the worker image installs it — so a
real OSWorld task is judged by the benchmark's code. Without it, only the few kinds written here
(:data:`BUILTIN_METRICS`, :data:`BUILTIN_GETTERS`, with OSWorld's semantics: what the test desktop's tasks
and simple file/command checks need) are available, and any other kind is a :class:`ConfigError` naming it.

OSWorld's package pins old torch/transformers/Pillow and imports torch through its OCR metrics, so a worker
image keeps it in a venv of its own: :func:`judge_in_subprocess` runs this module there
(``python -m guiagent.envs.osworld.evaluation``, a JSON request on stdin, the reply in a file), and the
worker process never imports it (nor torch).

The combination follows OSWorld: ``infeasible`` succeeds only when the agent's last action was FAIL; any
other task fails when it was; a getter's FileNotFoundError scores 0; with ``conj: "and"`` the first 0 ends
the judgement with 0, with ``"or"`` the first 1 with 1; else the mean (``and``) or the max (``or``).
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from guiagent.envs.osworld.vm import VMClient
from guiagent.errors import ConfigError, DeviceError, DeviceTimeout, GuiAgentError
from guiagent.types import EpisodeStatus, Outcome

Getter = Callable[[Any, Mapping[str, Any]], Any]
Metric = Callable[..., float]


# --- the built-in kinds (OSWorld's semantics, for VMs judged without desktop_env) ----------------------------


@dataclass
class EvalContext:
    """What a built-in getter reads: the VM, the task's cache folder and the episode's actions."""

    vm: VMClient
    cache_dir: Path
    action_history: list[str] = field(default_factory=list)


def _get_vm_file(ctx: EvalContext, config: Mapping[str, Any]) -> str | None:
    """``vm_file``: copy ``path`` from the VM into the cache as ``dest``; its local path, or None if absent."""
    data = ctx.vm.get_file(config["path"])
    if data is None:
        return None
    local = ctx.cache_dir / config["dest"]
    local.write_bytes(data)
    return str(local)


def _get_rule(ctx: EvalContext, config: Mapping[str, Any]) -> Any:
    """``rule``: the expected value written in the task itself."""
    return config["rules"]


def _get_accessibility_tree(ctx: EvalContext, config: Mapping[str, Any]) -> str:
    return ctx.vm.accessibility_tree()


def _get_vm_command_line(ctx: EvalContext, config: Mapping[str, Any]) -> str | None:
    """``vm_command_line``: the stdout of ``command`` run in the VM (None when the server failed)."""
    try:
        return ctx.vm.run_command(config["command"], shell=config.get("shell", False))["output"]
    except DeviceError:
        return None


def _exact_match(result: Any, rules: Mapping[str, Any]) -> float:
    return float(result == rules["expected"])


def _check_include_exclude(result: str | None, rules: Mapping[str, Any]) -> float:
    if result is None:
        return 0.0
    include, exclude = rules.get("include", []), rules.get("exclude", [])
    return float(all(r in result for r in include) and all(r not in result for r in exclude))


def _check_json_settings(actual: str | None, expected: Mapping[str, Any], **options: Any) -> float:
    """Every key of ``expected["expected"]`` has that value in the JSON file ``actual``."""
    if not actual:
        return 0.0
    with open(actual, encoding="utf-8") as f:
        data = json.load(f)
    merged = copy.deepcopy(data)
    merged.update(expected["expected"])
    return float(data == merged)


BUILTIN_GETTERS: dict[str, Getter] = {
    "vm_file": _get_vm_file,
    "rule": _get_rule,
    "accessibility_tree": _get_accessibility_tree,
    "vm_command_line": _get_vm_command_line,
}
BUILTIN_METRICS: dict[str, Metric] = {
    "exact_match": _exact_match,
    "check_include_exclude": _check_include_exclude,
    "check_json_settings": _check_json_settings,
}


# --- OSWorld's own ---------------------------------------------------------------------------------------


def desktop_env_available() -> bool:
    """True when OSWorld's ``desktop_env`` package (its evaluators) can be imported here."""
    try:
        importlib.import_module("desktop_env.evaluators")
    except ImportError:
        return False
    return True


def _construct(cls: type, **kwargs: Any) -> Any:
    """``cls(**kwargs)`` with only the arguments its signature takes (OSWorld's controllers gained
    ``server_port`` and friends over its releases)."""
    accepted = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in kwargs.items() if k in accepted})


class OSWorldGetterEnv:
    """The attributes of OSWorld's ``DesktopEnv`` that its getters read, for a VM at ``base_url``."""

    def __init__(self, base_url: str, cache_dir: Path, action_history: list[str]):
        from desktop_env.controllers.python import PythonController
        from desktop_env.controllers.setup import SetupController

        parts = urlsplit(base_url)
        self.vm_ip = parts.hostname
        self.server_port = parts.port or 5000
        self.chromium_port, self.vnc_port, self.vlc_port = 9222, 8006, 8080  # the OSWorld image's defaults
        self.current_use_proxy = False  # read by its Chrome getters; guiagent's VMs run without OSWorld's proxy
        self.cache_dir = str(cache_dir)
        self.action_history = action_history
        self.controller = _construct(PythonController, vm_ip=self.vm_ip, server_port=self.server_port)
        self.setup_controller = _construct(SetupController, vm_ip=self.vm_ip, server_port=self.server_port,
                                           chromium_port=self.chromium_port, vlc_port=self.vlc_port,
                                           cache_dir=self.cache_dir)
        platform = getattr(self.controller, "get_vm_platform", None)
        self.vm_platform = platform() if platform else "Linux"


@dataclass
class Judge:
    """Where the metric and getter functions come from, and the object the getters are called with."""

    metrics: Callable[[str], Metric]
    getters: Callable[[str], Getter]
    env: Any
    name: str


def make_judge(kind: str, vm: VMClient, cache_dir: Path, action_history: list[str], task_id: str) -> Judge:
    """The judge of one evaluation.

    Args:
        kind: ``"osworld"`` (OSWorld's ``desktop_env`` evaluators; ConfigError when not importable),
            ``"builtin"`` (the kinds written here only) or ``"auto"`` (OSWorld's when importable, else builtin).
        vm: The VM.
        cache_dir: The task's cache folder (files getters copy from the VM).
        action_history: The episode's actions as OSWorld records them (``"FAIL"``/``"DONE"`` for TERMINATE).
        task_id: Named in errors.
    """
    if kind not in ("auto", "osworld", "builtin"):
        raise ConfigError(f"evaluator must be auto, osworld or builtin, got {kind!r}")
    if kind == "osworld" or (kind == "auto" and desktop_env_available()):
        try:
            from desktop_env.evaluators import getters, metrics
        except ImportError as exc:
            raise ConfigError(f"task {task_id}: OSWorld's evaluators are not importable here ({exc}); install "
                              "OSWorld's desktop_env package (the osworld worker image has it)") from None

        def lookup(module: Any, name: str, what: str) -> Any:
            try:
                return getattr(module, name)
            except AttributeError:
                raise ConfigError(f"task {task_id}: OSWorld's evaluators have no {what} {name!r}") from None

        env = OSWorldGetterEnv(vm.base_url, cache_dir, action_history)
        return Judge(lambda n: lookup(metrics, n, "metric"), lambda t: lookup(getters, f"get_{t}", "getter"),
                     env, "desktop_env")

    def builtin(table: Mapping[str, Any], name: str, what: str) -> Any:
        if name not in table:
            raise ConfigError(
                f"task {task_id}: evaluator {what} {name!r} needs OSWorld's desktop_env package, which is not "
                f"importable here (built in: {', '.join(sorted(table))}); run it on an osworld worker image")
        return table[name]

    return Judge(lambda n: builtin(BUILTIN_METRICS, n, "metric"), lambda t: builtin(BUILTIN_GETTERS, t, "getter"),
                 EvalContext(vm, cache_dir, action_history), "builtin")


def judge_task(evaluator: Mapping[str, Any], judge: Judge, last_action: str | None) -> float:
    """The score of the evaluator block (0..1), combined as OSWorld combines it.

    Args:
        evaluator: The task's ``evaluator`` (postconfig already run).
        judge: Metric and getter functions and the object getters read.
        last_action: ``"FAIL"``/``"DONE"`` when the agent's last action was that special action, else None.

    Raises:
        ConfigError: a metric or getter is unknown to ``judge``.
    """
    func = evaluator["func"]
    if func == "infeasible":
        return float(last_action == "FAIL")
    if last_action == "FAIL":  # the agent gave up on a feasible task
        return 0.0
    if not isinstance(func, list):
        metric = judge.metrics(func)
        result_getter = judge.getters(evaluator["result"]["type"])
        expected = evaluator.get("expected")
        expected_getter = judge.getters(expected["type"]) if expected else None
        try:
            result = result_getter(judge.env, evaluator["result"])
        except FileNotFoundError:
            return 0.0
        wanted = expected_getter(judge.env, expected) if expected_getter else None
        options = evaluator.get("options") or {}
        return float(metric(result, wanted, **options) if wanted is not None else metric(result, **options))
    conj = evaluator.get("conj", "and")
    n = len(func)
    results_cfg = evaluator.get("result") or [None] * n
    expected_cfg = evaluator.get("expected") or [None] * n
    options_cfg = evaluator.get("options") or [{}] * n
    # Resolve every name first: an unknown one is a config error even when an earlier metric would decide.
    metrics = [judge.metrics(f) for f in func]
    result_getters = [judge.getters(c["type"]) if c else None for c in results_cfg]
    expected_getters = [judge.getters(c["type"]) if c else None for c in expected_cfg]
    scores = []
    for i, metric in enumerate(metrics):
        try:
            result = result_getters[i](judge.env, results_cfg[i]) if result_getters[i] else None
        except FileNotFoundError:
            score = 0.0
        else:
            wanted = expected_getters[i](judge.env, expected_cfg[i]) if expected_getters[i] else None
            options = options_cfg[i] or {}
            score = float(metric(result, wanted, **options) if wanted is not None else metric(result, **options))
        if conj == "and" and score == 0.0:
            return 0.0
        if conj == "or" and score == 1.0:
            return 1.0
        scores.append(score)
    return sum(scores) / len(scores) if conj == "and" else max(scores)


def task_cache_dir(root: str | os.PathLike, task_id: str) -> Path:
    """The cache folder of one task (files copied from the VM for judging), created."""
    path = Path(root) / task_id.replace("/", "_")
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- OSWorld's evaluators in their own interpreter ---------------------------------------------------------------

_REPLY_ERRORS = {"ConfigError": ConfigError, "DeviceError": DeviceError, "DeviceTimeout": DeviceTimeout}


def verdict(score: float, judge: str) -> Outcome:
    """A score as an outcome: success only at 1.0 (OSWorld counts a task solved when its evaluator gives 1)."""
    return Outcome(EpisodeStatus.SUCCESS if score >= 1.0 else EpisodeStatus.FAILURE, reward=score,
                   message=f"judged by {judge}")


def judge_in_subprocess(python: str, request: dict[str, Any], timeout: float) -> Outcome:
    """Judge with OSWorld's evaluators in the interpreter ``python`` (a venv with desktop_env and guiagent).

    Args:
        python: That interpreter.
        request: ``evaluator``, ``vm_url``, ``cache_dir``, ``actions``, ``last_action``, ``task_id``, ``kind``.
        timeout: Seconds the judgement may take.

    Returns:
        The verdict; an ``error`` outcome naming the exception when a metric or getter crashed (it judged
        nothing, and no score stands in for that).

    Raises:
        ConfigError: the interpreter cannot run, or the judge found the evaluator unknown to it.
        DeviceTimeout: it took longer than ``timeout``.
        DeviceError: it could not reach the VM, or died without a verdict.
    """
    reply_path = Path(request["cache_dir"]) / "judge-reply.json"
    reply_path.unlink(missing_ok=True)
    try:
        done = subprocess.run([python, "-m", "guiagent.envs.osworld.evaluation"],
                              input=json.dumps({**request, "reply": str(reply_path)}), capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DeviceTimeout(f"task {request['task_id']}: OSWorld's evaluator took over {timeout}s") from exc
    except OSError as exc:
        raise ConfigError(f"cannot run OSWorld's evaluator interpreter {python!r}: {exc}") from None
    try:
        reply = json.loads(reply_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DeviceError(f"task {request['task_id']}: OSWorld's evaluator ({python}) exited {done.returncode} "
                          f"without a verdict: {done.stderr[-500:]}") from None
    if reply.get("type") == "crash":
        return Outcome(EpisodeStatus.ERROR, message=reply["error"])
    if "error" in reply:
        raise _REPLY_ERRORS.get(reply.get("type"), DeviceError)(reply["error"])
    return verdict(float(reply["score"]), reply["judge"])


def main() -> None:
    """The judge process: a JSON request on stdin (see :func:`judge_in_subprocess`), the reply written to the
    request's ``reply`` path as ``{"score", "judge"}`` or ``{"error", "type"}``. Metrics print to stdout,
    so the reply goes to a file."""
    request = json.load(sys.stdin)
    vm = VMClient(request["vm_url"], timeout=float(request.get("timeout", 30.0)), name=request.get("env_id"))
    try:
        judge = make_judge(request.get("kind", "osworld"), vm, Path(request["cache_dir"]), request["actions"],
                           request["task_id"])
        reply = {"score": judge_task(request["evaluator"], judge, request.get("last_action")), "judge": judge.name}
    except GuiAgentError as exc:
        reply = {"error": str(exc), "type": type(exc).__name__}
    except Exception as exc:  # noqa: BLE001 -- a crashed checker is reported to the worker, not lost
        reply = {"error": f"OSWorld's evaluator failed: {type(exc).__name__}: {exc}", "type": "crash"}
    finally:
        vm.close()
    Path(request["reply"]).write_text(json.dumps(reply), encoding="utf-8")


if __name__ == "__main__":
    main()
