"""Web environments: MiniWoB++ in headless Debian Chromium (:class:`~guiagent.envs.web.miniwob.MiniWoBEnv`).

Nothing heavy is imported here: the browser's reaper process (:mod:`guiagent.envs.web.reaper`) starts
through this package and must stay small.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guiagent.envs.base import Env
    from guiagent.types import Task

# The web worker's options (``--env-options``) the env takes; the farm worker adds its generic ones
# (width, height, step_latency, faults, device_config), which a browser has no use for.
ENV_OPTIONS = ("reward", "episode_seconds", "chrome_binary", "chromedriver", "timeout", "task", "fresh_page")


def build_farm_env(device_id: str, options: dict[str, Any], restart: int = 0) -> Env:
    """A farm ``web`` worker's device: one :class:`~guiagent.envs.web.miniwob.MiniWoBEnv` (a fresh browser on
    every restart), configured by the worker's ``--env-options`` (``reward``, ``episode_seconds``,
    ``chrome_binary``, ``chromedriver``, ``timeout``, ``task``, ``fresh_page``)."""
    from guiagent.envs.web.miniwob import MiniWoBEnv

    return MiniWoBEnv(device_id, **{k: v for k, v in options.items() if k in ENV_OPTIONS and v is not None})


def miniwob_tasks(names: Any, seeds: Any = (0,), max_steps: int = 15) -> list[Task]:
    """See :func:`guiagent.envs.web.miniwob.miniwob_tasks`."""
    from guiagent.envs.web.miniwob import miniwob_tasks as tasks

    return tasks(names, seeds, max_steps)
