"""OSWorld desktop VMs: the client of the VM's server, its tasks and its evaluators, and a test VM.

``guiagent.envs.osworld.testvm`` is a small scripted desktop behind the same HTTP API (and a QEMU-style
monitor), for tests and laptops: ``python -m guiagent.envs.osworld.testvm --port 5000``.
"""

from __future__ import annotations

import os
from typing import Any

from guiagent.envs.osworld.tasks import load_osworld_tasks

__all__ = ["OSWorldEnv", "OSWorldEnvConfig", "build_farm_env", "load_osworld_tasks"]


def __getattr__(name: str) -> Any:
    # The env (pydantic, Pillow) is imported on use: OSWorld's judge runs this package's evaluation module in
    # desktop_env's own interpreter, which has neither (see guiagent.envs.osworld.evaluation).
    if name in ("OSWorldEnv", "OSWorldEnvConfig"):
        from guiagent.envs.osworld import env

        return getattr(env, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

URL_VAR = "GUIAGENT_OSWORLD_URL"
MONITOR_VAR = "GUIAGENT_OSWORLD_MONITOR"
# Options every farm worker passes whatever its kind (guiagent.farm.worker.main); an osworld env has no use
# for them.
_WORKER_OPTIONS = ("width", "height", "step_latency", "faults", "device_config")


def build_farm_env(device_id: str, options: dict, restart: int = 0) -> Any:
    """A farm ``osworld`` worker's :class:`OSWorldEnv` from ``--env-options`` (:class:`OSWorldEnvConfig` fields, e.g.
    ``{"vm_url": "http://20.20.20.21:5000", "monitor": "127.0.0.1:7100"}``); ``vm_url`` defaults to
    ``$GUIAGENT_OSWORLD_URL``, which the osworld image's entrypoint exports once the VM answers, and
    ``monitor`` to ``$GUIAGENT_OSWORLD_MONITOR`` (compose's ``OSWORLD_MONITOR``).

    Raises:
        ConfigError: no VM URL, or an unknown or invalid option (named).
    """
    from guiagent.config import parse_config
    from guiagent.envs.osworld.env import OSWorldEnv, OSWorldEnvConfig

    values = {k: v for k, v in options.items() if k not in _WORKER_OPTIONS}
    for key, var in (("vm_url", URL_VAR), ("monitor", MONITOR_VAR)):
        if not values.get(key) and os.environ.get(var):
            values[key] = os.environ[var]
    config = parse_config(values, OSWorldEnvConfig, source=f"{device_id}: osworld --env-options")
    return OSWorldEnv(config, env_id=device_id)
