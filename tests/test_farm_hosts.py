"""The farm across two hosts: workers in a second network namespace reach the broker (Redis) and the
trajectory store (S3, served by moto) on the first host by address, and one GRPO group runs across both.

The second host is a network namespace joined to this one by a veth pair; both addresses are made here
and removed at the end, also when the test fails. Nothing in the farm assumes localhost: the broker, store
and policy addresses all come from the config handed to the workers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from guiagent.envs.sim.tasks import make_task
from guiagent.farm.client import FarmClient
from guiagent.farm.config import FarmConfig
from guiagent.farm.local import LocalFarm
from guiagent.farm.specs import AgentSpec
from guiagent.net import free_port


def _can_make_namespaces() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"ga-probe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
    if made:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return made


pytestmark = [
    pytest.mark.skipif(not _can_make_namespaces(), reason="needs root and 'ip netns' (a second host)"),
    pytest.mark.timeout(300),
]


def _ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", "netns", "exec", netns, "ip", *args] if netns else ["ip", *args]
    subprocess.run(command, check=True, capture_output=True, timeout=10)


@pytest.fixture()
def second_host():
    """``(netns, address of this host, address of the second host)`` on a veth pair made for the test."""
    tag = uuid.uuid4().hex[:6]
    netns, here, there = f"ga-host-{tag}", f"gah{tag}", f"gan{tag}"
    octet = int(tag[:2], 16) % 250 + 1
    host_a, host_b = f"10.231.{octet}.1", f"10.231.{octet}.2"
    subprocess.run(["ip", "netns", "add", netns], check=True, capture_output=True, timeout=10)
    try:
        _ip("link", "add", here, "type", "veth", "peer", "name", there)
        _ip("link", "set", there, "netns", netns)
        _ip("addr", "add", f"{host_a}/30", "dev", here)
        _ip("link", "set", here, "up")
        _ip("addr", "add", f"{host_b}/30", "dev", there, netns=netns)
        _ip("link", "set", there, "up", netns=netns)
        _ip("link", "set", "lo", "up", netns=netns)
        yield netns, host_a, host_b
    finally:
        subprocess.run(["ip", "link", "del", here], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=10)


@pytest.fixture()
def s3_store(second_host):
    """An S3 endpoint (moto) on this host's veth address with an empty bucket; ``(url, options)``."""
    moto_server = pytest.importorskip("moto.server", reason="needs moto[server] (the dev extra)")
    pytest.importorskip("s3fs", reason="needs s3fs (the dev extra)")
    _, host_a, _ = second_host
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address=host_a, port=port, verbose=False)
    server.start()
    try:
        import s3fs

        options = {"endpoint_url": f"http://{host_a}:{port}", "key": "farm", "secret": "farm-secret"}
        s3fs.S3FileSystem(**{k: v for k, v in options.items() if k != "endpoint_url"},
                          client_kwargs={"endpoint_url": options["endpoint_url"]}).mkdir("trajectories")
        yield "s3://trajectories/run-1", {"endpoint_url": options["endpoint_url"], "key": options["key"],
                                          "secret": options["secret"]}
    finally:
        server.stop()


def test_a_group_runs_across_two_hosts(tmp_path, second_host, s3_store):
    netns, host_a, _ = second_host
    store_url, store_options = s3_store
    config = FarmConfig(store_url=store_url, store_options=store_options)
    with LocalFarm(tmp_path / "farm", sims=2, config=config, bind=host_a, step_latency=0.3) as farm:
        assert "127.0.0.1" not in farm.config.broker_url and host_a in farm.config.broker_url
        for i in range(2):
            farm.add_worker("sim", f"b-sim-{i}", launcher=("ip", "netns", "exec", netns), step_latency=0.3)
        farm.wait_ready(4, timeout=120)
        with FarmClient(farm.config) as client:
            handles = client.submit_group(make_task("SettingsToggleWifi", 5), AgentSpec("oracle"), 4, group="g-hosts")
            results = list(client.results(handles, timeout=180))
        assert len(results) == 4 and all(r.success for r in results), results
        env_ids = {r.env_id for r in results}
        assert any(e.startswith("b-sim-") for e in env_ids) and any(e.startswith("sim-") for e in env_ids), env_ids
        from guiagent.data.store import TrajectoryStore

        store = TrajectoryStore(store_url, store_options, create=False)
        stored = [store.get(h.episode_id, with_images=True) for h in handles]
        assert {t.env_id for t in stored} == env_ids
        assert len({t.steps[0].observation.screenshot for t in stored}) == 1  # one initial screen on both hosts
