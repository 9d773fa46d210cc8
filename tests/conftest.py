"""Shared test configuration.

Tests that need hardware or services this machine may lack carry a marker and skip with the reason:
``gpu`` (a CUDA device), ``kvm`` (a /dev/kvm that can run guests), ``docker`` (a Docker engine),
``appium`` (an Appium server at $APPIUM_URL with a device attached).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

# Idle OpenMP threads sleep instead of spinning: with several torch processes on 2 cores (trainer, vLLM,
# workers, parallel tests) spinning threads made forward/backward passes 20-40x slower. Set before torch
# is imported here or in any subprocess the tests start.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

def _has_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # a broken CUDA install means "no usable GPU" here
        return False


def _has_kvm() -> bool:
    return os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK) and os.environ.get("GUIAGENT_KVM") == "1"


def _has_docker() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


_REQUIREMENTS = {
    "gpu": (_has_gpu, "needs a CUDA GPU"),
    # /dev/kvm can exist yet be unable to run guests (nested virtualisation): opt in explicitly.
    "kvm": (_has_kvm, "needs /dev/kvm able to run emulators/VMs (set GUIAGENT_KVM=1 where it can)"),
    "docker": (_has_docker, "needs a running Docker engine that can pull images"),
    "appium": (lambda: bool(os.environ.get("APPIUM_URL")), "needs an Appium server with a device (set APPIUM_URL)"),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    available: dict[str, bool] = {}
    for item in items:
        for name, (probe, reason) in _REQUIREMENTS.items():
            if item.get_closest_marker(name) is None:
                continue
            if name not in available:
                available[name] = probe()
            if not available[name]:
                item.add_marker(pytest.mark.skip(reason=reason))


# --- policy: the tiny Qwen2.5-VL and a vLLM CPU server, built/started once per test session ---------------


@pytest.fixture(scope="session")
def tiny_qwen25vl(tmp_path_factory: pytest.TempPathFactory):
    """Directory of a tiny random Qwen2.5-VL (seed 0) with tokenizer, processor and chat template (~5 s)."""
    from guiagent.policy.tiny import build_tiny_qwen25vl

    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny-qwen25vl"), seed=0)


@pytest.fixture(scope="session")
def vllm_server(tiny_qwen25vl, tmp_path_factory: pytest.TempPathFactory):
    """A vLLM CPU server serving the tiny model (LoRA + dev endpoints on), stopped at session end.

    The first run builds the vLLM CPU venv with scripts/setup_vllm_cpu.sh (~1.5 min, cached afterwards);
    start-up takes 40-110 s on 2 cores.
    """
    from guiagent.policy.serve import cpu_server

    # 1 GiB of KV cache holds ~500k tokens of the tiny model; the server then takes ~3.5 GB in all.
    server = cpu_server(tiny_qwen25vl, tmp_path_factory.mktemp("vllm-logs") / "server.log", max_lora_rank=16,
                        max_loras=2, kv_cache_space_gib=1)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def policy_screenshots():
    """Three distinct synthetic phone screenshots (PIL, RGB): 270x600, 270x600 and 360x640.

    Small on purpose: ~200-300 image tokens each keeps tiny-model generation fast on 2 shared cores.
    """
    from PIL import Image, ImageDraw

    shots = []
    for i, size in enumerate([(270, 600), (270, 600), (360, 640)]):
        image = Image.new("RGB", size, (240 - 60 * i, 240, 250))
        draw = ImageDraw.Draw(image)
        for row in range(6):
            top = 60 + row * 85
            draw.rectangle([20, top, size[0] - 20, top + 60], fill=(30 * row, 90 + 20 * i, 200 - 25 * row))
            draw.text((30, top + 20), f"Item {row} screen {i}", fill=(255, 255, 255))
        shots.append(image)
    return shots


@pytest.fixture(scope="session")
def expert_store(tmp_path_factory):
    """A trajectory store holding the MobileSim oracle's labelled episode of SettingsToggleWifi (seed 0)."""
    from guiagent.data.store import TrajectoryStore
    from guiagent.envs.sim.env import MobileSimEnv
    from guiagent.envs.sim.tasks import make_task
    from guiagent.rollout.experts import record_expert_episodes

    root = tmp_path_factory.mktemp("experts")
    record_expert_episodes(MobileSimEnv(), [make_task("SettingsToggleWifi", 0)], TrajectoryStore(root))
    return root
