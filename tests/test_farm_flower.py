"""Flower, Celery's monitor, works against a local farm with the farm's own app and settings."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from guiagent.farm.local import LocalFarm, stop_pid
from guiagent.net import free_port

pytest.importorskip("flower", reason="needs flower (the dev extra)")


@pytest.mark.timeout(180)
def test_flower_lists_the_farm_workers(tmp_path):
    with LocalFarm(tmp_path / "farm", sims=1) as farm:
        port = free_port()
        env = {**os.environ, **farm.config.environment(), "FLOWER_UNAUTHENTICATED_API": "1"}
        flower = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "guiagent.farm.app:app", "flower", f"--port={port}",
             "--address=127.0.0.1"], env=env, stdout=open(tmp_path / "flower.log", "wb"), stderr=subprocess.STDOUT)
        try:
            workers: dict = {}
            deadline = time.monotonic() + 90
            while not workers and time.monotonic() < deadline:
                try:
                    reply = httpx.get(f"http://127.0.0.1:{port}/api/workers?refresh=1", timeout=10)
                    workers = reply.json() if reply.status_code == 200 else {}
                except (httpx.HTTPError, ValueError):
                    pass
                time.sleep(0.5)
            assert list(workers) == [f"sim-0@{os.uname().nodename}"], (tmp_path / "flower.log").read_text()[-2000:]
        finally:
            stop_pid(flower.pid)
