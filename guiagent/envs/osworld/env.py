"""An OSWorld desktop VM as an :class:`~guiagent.envs.base.Env`.

One env drives one VM through its HTTP server (:class:`~guiagent.envs.osworld.vm.VMClient`) and, when the
VM's QEMU monitor is reachable, through it too (:class:`~guiagent.envs.osworld.vm.QemuMonitor`):

- **reset**: resume the guest, restore the clean snapshot (``loadvm``; saved once with ``savevm`` when the
  disk has none), wait until the server answers with a screenshot that decodes, then run the task's setup
  steps (its ``config``) through the ``/setup/*`` endpoints.
- **observe**: screenshot + accessibility tree, then **pause** the guest (``stop``) while the model thinks,
  so the desktop's idle timer does not lock the screen between steps; **execute** resumes it first.
- **execute**: a canonical action becomes pyautogui code (:func:`~guiagent.actions.convert.to_osworld_pyautogui`)
  run by the VM's Python; :meth:`OSWorldEnv.execute_code` takes an agent's raw pyautogui code and
  :meth:`OSWorldEnv.execute_computer13` OSWorld's ``computer_13`` dicts, both checked first
  (:func:`~guiagent.envs.osworld.code.check_pyautogui`): nothing an agent writes runs on the host, and the VM
  runs only code re-written from the checked actions.
- **evaluate**: the evaluator's ``postconfig`` steps, then its metrics (:mod:`~guiagent.envs.osworld.evaluation`).
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from guiagent.actions.convert import from_computer13, to_osworld_pyautogui
from guiagent.config import StrictModel
from guiagent.envs.base import Env
from guiagent.envs.osworld.code import check_pyautogui
from guiagent.envs.osworld.evaluation import (
    judge_in_subprocess,
    judge_task,
    make_judge,
    task_cache_dir,
    verdict,
)
from guiagent.envs.osworld.vm import QemuMonitor, VMClient, with_deadline
from guiagent.errors import ConfigError, DeviceError, DeviceNotReady
from guiagent.types import Action, ActionType, EpisodeStatus, Observation, Outcome, Task, TerminateStatus

log = logging.getLogger(__name__)


class OSWorldEnvConfig(StrictModel):
    """How to reach and drive one OSWorld VM."""

    vm_url: str = Field(..., description="Base URL of the VM's OSWorld server, e.g. http://20.20.20.21:5000.")
    monitor: str | None = Field(None, description="HOST:PORT of the VM's QEMU monitor (HMP, telnet chardev); None: no pause and no snapshot reset.")
    snapshot: str | None = Field("guiagent-init", description="Snapshot reset() restores through the monitor (saved once when the disk has none); None: no restore.")
    timeout: float = Field(30.0, gt=0, description="Seconds each HTTP request to the VM may take.")
    retries: int = Field(2, ge=0, description="Extra attempts of a read (screenshot, a11y tree) after a timeout or a dropped connection.")
    retry_interval: float = Field(1.0, ge=0, description="Seconds between those attempts.")
    ready_timeout: float = Field(300.0, gt=0, description="Seconds reset() waits for the VM's server to serve a screenshot.")
    monitor_timeout: float = Field(60.0, gt=0, description="Seconds a monitor command (loadvm) may take.")
    pause_while_thinking: bool = Field(True, description="Pause the guest after each observation and resume it before the next action (needs monitor).")
    observe_a11y: bool = Field(True, description="Attach the accessibility tree to every observation.")
    settle_s: float = Field(0.5, ge=0, description="Seconds the guest runs after each action before it is observed (apps redraw).")
    wait_s: float = Field(1.0, ge=0, description="Seconds a WAIT without a duration lasts.")
    evaluator: Literal["auto", "osworld", "builtin"] = Field("auto", description="Metrics and getters: OSWorld's desktop_env (osworld), the built-in few (builtin), or OSWorld's when importable (auto).")
    osworld_python: str | None = Field(None, description="Python of a venv with OSWorld's desktop_env that judges out of process (the osworld image: /opt/osworld/bin/python); None: $GUIAGENT_OSWORLD_PYTHON, else in this process.")
    evaluate_timeout: float = Field(600.0, gt=0, description="Seconds an out-of-process judgement may take.")
    cache_dir: str | None = Field(None, description="Where files for setup and judging are cached; None: a temporary folder.")
    screen_width: int = Field(1920, gt=0, description="Screen width until the first screenshot tells (OSWorld's VMs: 1920).")
    screen_height: int = Field(1080, gt=0, description="Screen height until the first screenshot tells (OSWorld's VMs: 1080).")
    download_timeout: float = Field(300.0, gt=0, description="Seconds a setup step's download may take.")


PYTHON_VAR = "GUIAGENT_OSWORLD_PYTHON"  # the osworld image sets it to its desktop_env venv's Python

# The setup step types this client runs itself (OSWorld's SetupController._<type>_setup); others go to
# OSWorld's own SetupController when desktop_env is importable.
SETUP_STEPS = ("download", "upload_file", "open", "launch", "execute", "command", "sleep", "activate_window",
               "close_window", "change_wallpaper")


class OSWorldEnv(Env):
    """One OSWorld VM.

    Args:
        config: Where the VM is and how to drive it.
        env_id: The device id recorded in trajectories (default: the VM's URL).

    Attributes:
        counters: ``pauses``, ``resumes``, ``restores``, ``setup_steps`` plus the HTTP client's ``retries``,
            ``timeouts``, ``lost``.
    """

    def __init__(self, config: OSWorldEnvConfig, env_id: str | None = None):
        self.config = config
        self.env_id = env_id or config.vm_url
        self.vm = VMClient(config.vm_url, timeout=config.timeout, retries=config.retries,
                           retry_interval=config.retry_interval, name=self.env_id)
        self.monitor = (QemuMonitor(config.monitor, timeout=config.monitor_timeout, name=self.env_id)
                        if config.monitor else None)
        self.counters = {"pauses": 0, "resumes": 0, "restores": 0, "setup_steps": 0}
        self._paused = False
        self._size: tuple[int, int] | None = None  # of the last screenshot
        self._instruction = ""
        self._actions: list[str] = []  # OSWorld's action history: the code sent, "DONE"/"FAIL"/"WAIT"
        self._own_cache = config.cache_dir is None  # a temporary folder of ours, removed on close
        self._cache_root = Path(config.cache_dir or tempfile.mkdtemp(prefix="guiagent-osworld-"))

    # --- pause / resume ---------------------------------------------------------------------------------
    def pause(self) -> None:
        """Freeze the guest while nothing needs it (the model is thinking)."""
        if self.monitor is not None and self.config.pause_while_thinking and not self._paused:
            self.monitor.pause()
            self._paused = True
            self.counters["pauses"] += 1

    def resume(self) -> None:
        """Let the guest run (before anything talks to its server: a frozen guest answers nothing)."""
        if self.monitor is not None and self._paused:
            self.monitor.resume()
            self._paused = False
            self.counters["resumes"] += 1

    # --- Env --------------------------------------------------------------------------------------------
    @property
    def screen_size(self) -> tuple[int, int]:
        """The size of the last screenshot; before the first one, the configured size (no device call: the
        farm reads this to publish a device's status, also while the VM is down)."""
        return self._size or (self.config.screen_width, self.config.screen_height)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the VM's server serves a screenshot that decodes.

        Raises:
            DeviceNotReady: not within ``timeout`` (default ``config.ready_timeout``), naming the last problem.
        """
        def screenshot_decodes() -> None:
            png = self.vm.screenshot()
            try:
                from PIL import Image

                with Image.open(io.BytesIO(png)) as image:
                    image.load()
            except OSError as exc:
                raise DeviceNotReady(f"{self.env_id}: the screenshot does not decode: {exc}") from exc

        try:
            with_deadline(f"{self.env_id}: VM server not ready", timeout or self.config.ready_timeout,
                          screenshot_decodes, interval=min(1.0, self.config.retry_interval or 0.2))
        except DeviceError as exc:
            raise DeviceNotReady(str(exc)) from exc

    def restore(self) -> None:
        """Restore the clean snapshot through the monitor. A fresh VM's disk has none: it is saved at the first
        reset, when the VM is still as it booted."""
        if self.monitor is None or not self.config.snapshot:
            return
        self.resume()
        name = self.config.snapshot
        if name in self.monitor.snapshots():
            self.monitor.load(name)
            self.counters["restores"] += 1
        else:
            self.wait_ready()
            self.monitor.save(name)
            log.info("%s: saved the clean snapshot %s", self.env_id, name)

    def reset(self, task: Task | None = None) -> Observation:
        if self.monitor is not None:
            # Unconditionally: a VM left frozen by an earlier env (a worker that died mid-step) must run again;
            # and within the ready timeout: a VM that is still booting has no monitor yet.
            with_deadline(f"{self.env_id}: QEMU monitor", self.config.ready_timeout, self.monitor.resume,
                          interval=min(1.0, self.config.retry_interval or 0.2))
            self._paused = False
        self.restore()
        self.wait_ready()
        self.answer = None
        self._actions = []
        self._instruction = task.instruction if task is not None else ""
        if task is not None:
            self.run_setup(task.params.get("config", []), task, "config")
        return self.observe()

    def observe(self) -> Observation:
        self.resume()
        png = self.vm.screenshot()
        tree = self.vm.accessibility_tree() if self.config.observe_a11y else None
        self.pause()
        from PIL import Image

        try:
            with Image.open(io.BytesIO(png)) as image:
                width, height = image.size
        except OSError as exc:
            raise DeviceNotReady(f"{self.env_id}: the screenshot does not decode: {exc}") from exc
        self._size = (width, height)
        return Observation(width=width, height=height, screenshot=png, a11y_tree=tree,
                           instruction=self._instruction)

    def execute(self, action: Action) -> None:
        kind = action.type
        if kind is ActionType.ANSWER:
            self.answer = action.text
            return
        if kind is ActionType.TERMINATE:
            self._actions.append("DONE" if action.status is TerminateStatus.SUCCESS else "FAIL")
            return
        self.check_on_screen(action)
        code = to_osworld_pyautogui(action)  # ActionError for what a desktop has no equivalent of (SWIPE, BACK)
        self.resume()
        if kind is ActionType.WAIT:
            time.sleep(action.duration if action.duration is not None else self.config.wait_s)
            self._actions.append("WAIT")
            return
        self.vm.run_pyautogui(code)
        self._actions.append(code)
        if self.config.settle_s:
            time.sleep(self.config.settle_s)

    def execute_code(self, code: str) -> None:
        """Run an agent's pyautogui ``code`` (OSWorld's ``pyautogui`` action space) after the allow-list check.

        Raises:
            ActionError: the code does anything but known pyautogui calls with literal arguments, or acts
                off the screen; nothing was sent to the VM.
        """
        actions = check_pyautogui(code)
        for action in actions:  # every action is checked before the first one runs
            if action.type not in (ActionType.ANSWER, ActionType.TERMINATE):
                self.check_on_screen(action)
                to_osworld_pyautogui(action)
        for action in actions:
            self.execute(action)

    def execute_computer13(self, record: Any) -> None:
        """Run one OSWorld ``computer_13`` action (a dict, ``"WAIT"``/``"DONE"``/``"FAIL"``, or the two-record
        forms for a drag or an anchored scroll).

        Raises:
            ActionError: not a valid computer_13 action.
        """
        self.execute(from_computer13(record))

    def evaluate(self, task: Task) -> Outcome:
        evaluator = task.params.get("evaluator")
        if not isinstance(evaluator, dict):
            raise ConfigError(f"task {task.task_id} has no OSWorld evaluator in its params (load it with "
                              "load_osworld_tasks)")
        self.resume()
        self.run_setup(evaluator.get("postconfig", []), task, "evaluator.postconfig")
        cache = task_cache_dir(self._cache_root, task.task_id)
        last = self._actions[-1] if self._actions and self._actions[-1] in ("DONE", "FAIL") else None
        python = self.config.osworld_python or os.environ.get(PYTHON_VAR)
        if python and self.config.evaluator != "builtin":
            request = {"evaluator": evaluator, "vm_url": self.vm.base_url, "cache_dir": str(cache),
                       "actions": list(self._actions), "last_action": last, "task_id": task.task_id,
                       "env_id": self.env_id, "timeout": self.config.timeout, "kind": "osworld"}
            return judge_in_subprocess(python, request, self.config.evaluate_timeout)
        judge = make_judge(self.config.evaluator, self.vm, cache, list(self._actions), task.task_id)
        try:
            return verdict(judge_task(evaluator, judge, last), judge.name)
        except (ConfigError, DeviceError):
            raise
        except Exception as exc:  # noqa: BLE001 -- a checker that crashed judged nothing: an error, not a score
            return Outcome(EpisodeStatus.ERROR, message=f"{judge.name} evaluator failed: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        try:
            self.resume()  # never leave a VM frozen behind
        except DeviceError:
            log.debug("%s: could not resume the VM on close", self.env_id, exc_info=True)
        self.vm.close()
        if self._own_cache:
            shutil.rmtree(self._cache_root, ignore_errors=True)

    # --- task setup ---------------------------------------------------------------------------------------
    def run_setup(self, steps: list[dict[str, Any]], task: Task, where: str) -> None:
        """Run a task's setup steps (``config`` or the evaluator's ``postconfig``) in order.

        Raises:
            ConfigError: a step of an unknown type (when desktop_env is not importable to run it) or a step the
                VM refused (a missing file, an unknown window), naming the task and the step.
            DeviceError: the VM failed.
        """
        for i, step in enumerate(steps):
            kind, params = step["type"], dict(step.get("parameters", {}))
            label = f"task {task.task_id}: {where}[{i}] ({kind})"
            try:
                self._setup_step(kind, params, task, label)
            except (DeviceError, ConfigError):
                raise
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"{label}: bad parameters {params!r}: {exc}") from None
            self.counters["setup_steps"] += 1

    def _setup_step(self, kind: str, params: dict[str, Any], task: Task, label: str) -> None:
        vm = self.vm
        if kind in ("execute", "command"):
            self._execute_until(params, label)
        elif kind == "launch":
            vm.setup("launch", {"command": params["command"], "shell": params.get("shell", False)})
        elif kind == "open":
            self._refusable(label, lambda: vm.setup("open_file", {"path": params["path"]}))
        elif kind in ("activate_window", "close_window"):
            payload = {"window_name": params["window_name"], "strict": params.get("strict", False),
                       "by_class": params.get("by_class", False)}
            self._refusable(label, lambda: vm.setup(kind, payload))
        elif kind == "change_wallpaper":
            self._refusable(label, lambda: vm.setup("change_wallpaper", {"path": params["path"]}))
        elif kind == "sleep":
            time.sleep(float(params["seconds"]))
        elif kind == "upload_file":
            for f in params["files"]:
                local = Path(f["local_path"])
                if not local.is_absolute():  # relative to the task file, where a task's data lives
                    local = Path(task.params.get("file", ".")).parent / local
                try:
                    data = local.read_bytes()
                except OSError as exc:
                    raise ConfigError(f"{label}: cannot read {local}: {exc.strerror}") from None
                vm.upload(f["path"], data)
        elif kind == "download":
            for f in params["files"]:
                vm.upload(f["path"], self._download(f["url"], label))
        else:
            self._osworld_setup(kind, params, label)

    def _refusable(self, label: str, call) -> None:
        try:
            call()
        except DeviceError as exc:
            if " answered 4" in str(exc):  # the VM refused the step (404: no such file or window)
                raise ConfigError(f"{label}: {exc}") from None
            raise

    def _execute_until(self, params: dict[str, Any], label: str) -> None:
        """OSWorld's ``execute`` step: run the command; with ``until``, again (at most 5 failures, 0.3 s apart)
        until its return code or output matches."""
        until = params.get("until") or {}
        failures = 0
        while True:
            try:
                reply = self.vm.run_command(params["command"], params.get("shell", False), setup=True)
            except DeviceError:
                reply = None
                failures += 1
            if not until:
                if reply is None:
                    raise ConfigError(f"{label}: the VM could not run {params['command']!r}")
                return
            if reply is not None and (("returncode" in until and reply.get("returncode") == until["returncode"])
                                      or ("stdout" in until and until["stdout"] in reply.get("output", ""))
                                      or ("stderr" in until and until["stderr"] in reply.get("error", ""))):
                return
            if failures >= 5:
                raise ConfigError(f"{label}: {params['command']!r} never met {until} (5 failures)")
            time.sleep(0.3)

    def _download(self, url: str, label: str) -> bytes:
        """The file at ``url``, cached by URL (tasks share their data files)."""
        cache = self._cache_root / "downloads" / uuid.uuid5(uuid.NAMESPACE_URL, url).hex
        if cache.exists():
            return cache.read_bytes()
        try:
            with urllib.request.urlopen(url, timeout=self.config.download_timeout) as response:
                data = response.read()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{label}: cannot download {url}: {exc}") from None
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(data)
        partial.replace(cache)
        return data

    def _osworld_setup(self, kind: str, params: dict[str, Any], label: str) -> None:
        """A setup step this client does not run itself (chrome_open_tabs, googledrive, ...): OSWorld's own
        SetupController runs it when desktop_env is importable."""
        from guiagent.envs.osworld.evaluation import OSWorldGetterEnv

        try:
            osworld = OSWorldGetterEnv(self.vm.base_url, self._cache_root, list(self._actions))
        except ImportError:
            raise ConfigError(f"{label}: this setup step needs OSWorld's desktop_env package, which is not "
                              f"importable here (built in: {', '.join(SETUP_STEPS)})") from None
        osworld.setup_controller.setup([{"type": kind, "parameters": params}])
