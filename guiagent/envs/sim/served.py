"""A MobileSim served over the real adb path: the virtual adbd, a private Debian ``adb`` server, and an
:class:`~guiagent.envs.android.adb_env.AndroidEnv` on adbutils that is reset and judged through the same
calls as the in-process :class:`~guiagent.envs.sim.env.MobileSimEnv`."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

from guiagent.envs.android.adb_env import AndroidEnv, private_adb_server
from guiagent.envs.android.config import AndroidEnvConfig
from guiagent.envs.sim.adbd import serve
from guiagent.envs.sim.apps import LAUNCHER
from guiagent.envs.sim.device import MobileSim
from guiagent.envs.sim.env import mobilesim_evaluation, mobilesim_setup
from guiagent.errors import ConfigError


@dataclass
class ServedSim:
    """What :func:`adb_served_mobilesim` yields.

    Attributes:
        sim: The simulated device (tests read its input log and state; agents never do).
        env: The adb env that drives it.
        adb_port: The private adb server's port.
    """

    sim: MobileSim
    env: AndroidEnv
    adb_port: int


@contextlib.contextmanager
def adb_served_mobilesim(sim: MobileSim | None = None, *, timeout: float = 10.0) -> Iterator[ServedSim]:
    """Serve ``sim`` (a new MobileSim by default) behind its virtual adbd and drive it through a private adb
    server on a free port. The adb server and the adbd are stopped on exit, also when start-up fails.

    Raises:
        ConfigError: the Debian ``adb`` binary is not installed (``scripts/run.sh`` installs it).
    """
    adb = shutil.which("adb")
    if adb is None:
        raise ConfigError("driving MobileSim over adb needs the Debian 'adb' binary (scripts/run.sh installs it)")
    sim = sim if sim is not None else MobileSim()
    with contextlib.ExitStack() as stack:
        port = stack.enter_context(private_adb_server(adb))
        adbd = serve(sim)
        stack.callback(adbd.close)
        config = AndroidEnvConfig(
            serial=adbd.serial,
            adb_server_port=port,
            adb_path=adb,
            start_adb_server=False,
            launcher_package=LAUNCHER,
            timeout=timeout,
            ready_timeout=2 * timeout,
            observe_a11y=True,  # the oracle plans from it; GiGPO anchors hash it
        )
        env = AndroidEnv(config, task_setup=mobilesim_setup(sim), task_evaluation=mobilesim_evaluation(sim))
        stack.callback(env.close)
        yield ServedSim(sim, env, port)
