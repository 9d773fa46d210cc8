"""AndroidWorld, run with its own code on the emulator an ``android`` farm worker owns.

The benchmark's tasks are its own ``TaskEval`` classes from its registry (``android_world.registry``):
their ``generate_random_params`` fixes an instance, ``initialize_task(env)`` sets the emulator up,
``is_successful(env)`` judges it (a float, 1.0 done) and ``tear_down(env)`` cleans up — all against
android_world's own ``AsyncEnv`` connected to the worker's emulator. Nothing of its checks is re-implemented.

The protocol reproduced (android_world's ``run.py`` and ``suite_utils``):

- the suite is every task of the family (``android_world``: 116 templates), ``n_task_combinations``
  instances each, instance ``i`` of template ``name`` seeded with
  ``sha256(f"{seed}_{name}_{i}") mod 2**32`` from the task seed (default **30**): ``random.seed`` that, then
  ``generate_random_params()``, then ``params["seed"] = instance seed``;
- the step budget is ``int(10 * complexity)``;
- success only when the agent declared the task done **and** ``is_successful`` holds (``run_episode`` with
  ``require_done=True``); a task is a success when ``is_successful`` is above 0.5, as android_world reports it,
  and its reward is that value;
- the aggregate is the mean over task templates of each template's success rate
  (:func:`guiagent.eval.online.online_metrics`' ``template_success_rate``).

android_world is imported only where it is installed: every function here takes the registry as a
parameter, and :func:`load_registry` imports it. Its pinned dependencies clash with guiagent's, so the Android
worker image keeps it in a venv of its own and the worker drives it there through
:mod:`guiagent.envs.androidworld.runner` (:func:`worker_tasks` picks the one or the other).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from guiagent.errors import ConfigError, DataError
from guiagent.types import EpisodeStatus, Outcome, Task

DEFAULT_SEED = 30  # run.py's --task_random_seed
FAMILY = "android_world"  # run.py's --suite_family: the whole suite
PREFIX = "AndroidWorld"


def load_registry(family: str = FAMILY) -> Mapping[str, Any]:
    """android_world's task registry of ``family`` (task name → ``TaskEval`` class).

    Raises:
        ConfigError: android_world is not installed here, or the family is unknown.
    """
    try:
        from android_world import registry
    except ImportError as exc:
        raise ConfigError(f"AndroidWorld needs the android_world package ({exc}); it is installed in the android "
                          "worker image (emulators/android.Dockerfile)") from None
    try:
        return registry.TaskRegistry().get_registry(family=family)
    except ValueError as exc:
        raise ConfigError(f"android_world: {exc}") from None


def instance_seed(seed: int, name: str, index: int) -> int:
    """The seed of instance ``index`` of template ``name`` in a suite seeded with ``seed`` (android_world's
    ``create_suite``)."""
    return int(hashlib.sha256(f"{seed}_{name}_{index}".encode()).hexdigest(), 16) % (2**32)


def step_budget(complexity: float) -> int:
    """android_world's step budget for a task of ``complexity`` (``suite_utils._allocate_step_budget``)."""
    if complexity is None:
        raise ConfigError("an AndroidWorld task without a complexity has no step budget")
    return int(10 * complexity)


def instantiate(task_class: Any, seed: int, env: Any = None) -> Any:
    """An instance of ``task_class`` with the parameters ``seed`` gives (android_world's ``_instantiate_task``)."""
    set_device_time = getattr(task_class, "set_device_time", None)
    if set_device_time is not None:
        set_device_time(env)
    random.seed(seed)
    params = task_class.generate_random_params()
    params["seed"] = seed
    return task_class(params)


def create_suite(registry: Mapping[str, Any], *, seed: int = DEFAULT_SEED, n_task_combinations: int = 1,
                 tasks: Sequence[str] | None = None, family: str = FAMILY) -> list[Task]:
    """The AndroidWorld suite as guiagent tasks, sorted by template name.

    Args:
        registry: Task name → ``TaskEval`` class (:func:`load_registry`, or a fake with the same interface).
        seed: The task seed (run.py's default 30).
        n_task_combinations: Instances per template.
        tasks: Only these templates (None: all).
        family: Recorded in each task's params, so the worker loads the same registry.

    Returns:
        One :class:`Task` per instance: ``task_id`` ``AndroidWorld/<name>/<i>``, the instance's goal as its
        instruction, the instance seed as its seed, its step budget as ``max_steps``.

    Raises:
        ConfigError: an unknown template name in ``tasks``.
    """
    if tasks is not None:
        unknown = sorted(set(tasks) - set(registry))
        if unknown:
            raise ConfigError(f"unknown AndroidWorld task(s) {', '.join(unknown)} (family {family})")
    suite = []
    for name in sorted(tasks if tasks is not None else registry):
        for index in range(n_task_combinations):
            task_seed = instance_seed(seed, name, index)
            instance = instantiate(registry[name], task_seed)
            suite.append(Task(task_id=f"{PREFIX}/{name}/{index}", instruction=instance.goal, seed=task_seed,
                              env="android", template=name, max_steps=step_budget(instance.complexity),
                              params={"family": family, "suite_seed": seed, "instance": index}))
    return suite


class AndroidWorldTasks:
    """The ``task_setup``/``task_evaluation`` hooks of an Android env that runs AndroidWorld tasks.

    Args:
        registry: Task name → ``TaskEval`` class.
        async_env: android_world's env connected to the same emulator (``env_launcher.load_and_setup_env``), or
            a callable that builds it on first use (it connects to the emulator: not at worker start).

    Attributes:
        current: The task instance the device is set up for (None between episodes).
    """

    def __init__(self, registry: Mapping[str, Any], async_env: Any):
        self.registry = registry
        self._async_env = async_env
        self.current: tuple[str, Any] | None = None

    @property
    def async_env(self) -> Any:
        if callable(self._async_env):
            self._async_env = self._async_env()
        return self._async_env

    def setup(self, env: Any, task: Task) -> None:
        """``task_setup``: tear down the previous instance if it was not judged, instantiate this one from its
        seed, check it is the instance the suite described, and ``initialize_task`` it.

        Raises:
            ConfigError: an unknown template, or an instance whose goal differs from the task's instruction
                (the worker's android_world is not the version that built the suite).
        """
        if self.current is not None:
            self.current[1].tear_down(self.async_env)
            self.current = None
        task_class = self.registry.get(task.template)
        if task_class is None:
            raise ConfigError(f"{task.task_id}: AndroidWorld has no task {task.template!r} here")
        instance = instantiate(task_class, task.seed, self.async_env)
        if task.instruction and instance.goal != task.instruction:
            raise ConfigError(f"{task.task_id}: seed {task.seed} gives the goal {instance.goal!r} here, not "
                              f"{task.instruction!r}: build the suite with this worker's android_world version")
        instance.initialize_task(self.async_env)
        self.current = (task.task_id, instance)

    def evaluate(self, env: Any, task: Task) -> Outcome:
        """``task_evaluation``: the instance's own ``is_successful``, then its ``tear_down``.

        Raises:
            ConfigError: the device was not set up for ``task``.
        """
        if self.current is None or self.current[0] != task.task_id:
            raise ConfigError(f"{task.task_id}: the device was not set up for this task (reset it with the task)")
        instance = self.current[1]
        try:
            score = float(instance.is_successful(self.async_env))
        finally:
            instance.tear_down(self.async_env)
            self.current = None
        status = EpisodeStatus.SUCCESS if score > 0.5 else EpisodeStatus.FAILURE
        return Outcome(status, reward=score, message=f"is_successful={score:g}")


PYTHON_VAR = "GUIAGENT_ANDROIDWORLD_PYTHON"  # the android image sets it to android_world's venv's Python


def worker_tasks(serial: str, adb_path: str, grpc_endpoint: str | None, family: str = FAMILY,
                 python: str | None = None) -> Any:
    """The AndroidWorld hooks of an ``android`` worker's emulator: android_world in its own interpreter
    (``python``, default ``$GUIAGENT_ANDROIDWORLD_PYTHON``; :mod:`guiagent.envs.androidworld.runner`), else in
    this one (then the registry is loaded here, so a worker without android_world fails at start).

    Returns:
        An object with the ``setup(env, task)`` and ``evaluate(env, task)`` hooks.

    Raises:
        ConfigError: (in process) android_world is not installed. A serial that is not an emulator's fails at
            the first task setup (android_world connects by the console port).
    """
    grpc_port = int(grpc_endpoint.rsplit(":", 1)[1]) if grpc_endpoint else 8554
    python = python or os.environ.get(PYTHON_VAR)
    if python:
        from guiagent.envs.androidworld.runner import RemoteAndroidWorldTasks

        return RemoteAndroidWorldTasks(python, serial, adb_path, grpc_port, family)
    return AndroidWorldTasks(load_registry(family),
                             lambda: emulator_async_env(serial, adb_path, f"127.0.0.1:{grpc_port}"))


def emulator_async_env(serial: str, adb_path: str, grpc_endpoint: str | None) -> Any:
    """android_world's env for the emulator ``emulator-PORT`` (its console port), through its own launcher.

    Raises:
        ConfigError: the serial is not an emulator's, or android_world is not installed.
    """
    if not serial.startswith("emulator-") or not serial.split("-", 1)[1].isdigit():
        raise ConfigError(f"AndroidWorld drives an emulator by its console port: serial emulator-PORT, got {serial!r}")
    try:
        from android_world.env import env_launcher
    except ImportError as exc:
        raise ConfigError(f"AndroidWorld needs the android_world package ({exc})") from None
    grpc_port = int(grpc_endpoint.rsplit(":", 1)[1]) if grpc_endpoint else 8554
    return env_launcher.load_and_setup_env(console_port=int(serial.split("-", 1)[1]), emulator_setup=False,
                                           freeze_datetime=True, adb_path=adb_path, grpc_port=grpc_port)


def save_suite(tasks: Sequence[Task], path: str | Path) -> None:
    """Write a suite as a JSON list of tasks, for a driver without android_world to evaluate it."""
    Path(path).write_text(json.dumps([t.to_json() for t in tasks], indent=1), encoding="utf-8")


def load_suite(path: str | Path) -> list[Task]:
    """Read a suite written by :func:`save_suite`.

    Raises:
        DataError: not a JSON list of tasks (names the file and the record).
    """
    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"not a readable JSON suite: {exc}", file=str(path)) from None
    if not isinstance(records, list) or not records:
        raise DataError("a suite is a non-empty JSON list of tasks", file=str(path))
    tasks = []
    for i, record in enumerate(records):
        try:
            tasks.append(Task.from_json(record))
        except (ValueError, TypeError, KeyError) as exc:
            raise DataError(f"not a task: {exc}", file=str(path), record=i) from None
    return tasks
