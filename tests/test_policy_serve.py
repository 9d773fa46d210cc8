"""The server launcher: the command it builds, start-up failures, stopping the whole process group."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from guiagent.errors import PolicyError, PolicyTimeout
from guiagent.net import free_port
from guiagent.policy import serve as serve_module
from guiagent.policy.serve import ServerConfig, VLLMServer, server_command, server_env, wait_until_healthy
from tests.test_policy_client import ScriptedServer, drip, read_request


def test_command_has_the_flags_this_workload_needs():
    config = ServerConfig(model="/m", served_model_name="tiny", port=8123, python="/venv/bin/python",
                          loras={"a": "/adapters/a"}, images_per_prompt=3, dtype="float32", max_model_len=4096)
    argv = server_command(config)
    assert argv[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    flags = dict(zip(argv[3::], argv[4::]))
    assert flags["--model"] == "/m" and flags["--served-model-name"] == "tiny" and flags["--port"] == "8123"
    assert json.loads(flags["--limit-mm-per-prompt"]) == {"image": 3, "video": 0}
    assert flags["--max-model-len"] == "4096" and flags["--dtype"] == "float32"
    assert "--enforce-eager" in argv and "--enable-lora" in argv and flags["--max-lora-rank"] == "16"
    assert flags["--lora-modules"] == "a=/adapters/a"
    env = server_env(config)
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True" and env["VLLM_SERVER_DEV_MODE"] == "1"


def test_chunked_prefill_off_lets_one_step_hold_a_whole_prompt():
    argv = server_command(ServerConfig(model="/m", chunked_prefill=False, max_model_len=4096))
    assert "--no-enable-chunked-prefill" in argv
    assert argv[argv.index("--max-num-batched-tokens") + 1] == "4096"
    assert "--no-enable-chunked-prefill" not in server_command(ServerConfig(model="/m"))


def test_custom_command_prefix_replaces_the_interpreter():
    argv = server_command(ServerConfig(model="/m", command=["docker", "run", "vllm/vllm-openai"]))
    assert argv[:4] == ["docker", "run", "vllm/vllm-openai", "--model"]


def test_server_that_exits_during_startup_reports_its_log(tmp_path):
    script = tmp_path / "dies.py"
    script.write_text("import sys; print('bad flag', sys.argv[1:3]); sys.exit(3)")
    server = VLLMServer(ServerConfig(model="/m", command=[sys.executable, str(script)], port=8124,
                                     log_file=str(tmp_path / "log.txt"), health_timeout_s=30))
    with pytest.raises(PolicyError, match="exited with code 3") as info:
        server.start()
    assert "bad flag" in str(info.value)


def test_unhealthy_server_times_out_and_its_process_group_is_stopped(tmp_path):
    # A "server" that never answers /health and leaves a child process behind: stop() must end both.
    pid_file = tmp_path / "child.pid"
    script = tmp_path / "hangs.py"
    script.write_text(textwrap.dedent(f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        time.sleep(600)
    """))
    server = VLLMServer(ServerConfig(model="/m", command=[sys.executable, str(script)], port=8125,
                                     log_file=str(tmp_path / "log.txt"), health_timeout_s=3))
    with pytest.raises(PolicyTimeout, match="not healthy"):
        server.start()
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the server's child process survived stop()")


def test_serve_cli_fails_cleanly_when_the_server_cannot_start(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "guiagent", "serve", "/no/model", "--command", f"{sys.executable} -c 'raise SystemExit(4)'",
         "--port", "8126", "--log-file", str(tmp_path / "serve.log"), "--health-timeout", "30"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert "exited with code 4" in result.stderr
    bad = subprocess.run([sys.executable, "-m", "guiagent", "serve", "/m", "--lora", "nopath"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "NAME=PATH" in bad.stderr


def _wait_gone(pids: list[int], within: float) -> list[int]:
    """The pids still alive after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


@pytest.mark.timeout(90)
def test_server_is_stopped_when_its_launcher_is_killed(tmp_path):
    # A healthy "server" with a child of its own; its launcher is then SIGKILLed, so no stop() ever runs.
    pids = tmp_path / "pids"
    fake_server = tmp_path / "server.py"
    fake_server.write_text(textwrap.dedent(f"""
        import http.server, subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(pids)!r}, "w").write(f"{{__import__('os').getpid()}} {{child.pid}}")

        class Health(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.end_headers()

        port = int(sys.argv[sys.argv.index("--port") + 1])
        http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
    """))
    launcher = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from guiagent.policy.serve import ServerConfig, VLLMServer
        config = ServerConfig(model="/m", command=[sys.executable, {str(fake_server)!r}], port={free_port()},
                              log_file={str(tmp_path / "log.txt")!r}, health_timeout_s=60)
        VLLMServer(config).start()
        print("healthy", flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    started: list[int] = []
    try:
        assert launcher.stdout.readline() == "healthy\n", (tmp_path / "log.txt").read_text()
        started = [int(pid) for pid in pids.read_text().split()]
        assert _wait_gone(started, within=0.5) == started  # the server and its child are up
        launcher.kill()
        launcher.wait(timeout=10)
        assert _wait_gone(started, within=15) == [], "the server outlived its launcher"
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait(timeout=10)
        for pid in _wait_gone(started, within=0):  # by pid: only what this test started
            os.kill(pid, signal.SIGKILL)


def test_missing_server_command_fails_start_up_with_its_log(tmp_path):
    server = VLLMServer(ServerConfig(model="/m", command=[str(tmp_path / "no-such-vllm")], port=free_port(),
                                     log_file=str(tmp_path / "log.txt"), health_timeout_s=30))
    with pytest.raises(PolicyError, match="exited with code 127") as info:
        server.start()
    assert "no-such-vllm" in str(info.value)


@pytest.mark.timeout(30)
def test_health_wait_ends_at_its_deadline_when_the_server_drips(tmp_path):
    # Each byte comes well within any read timeout, so only a deadline on the whole probe can end it.
    def script(conn, stop):
        read_request(conn)
        drip(conn, stop, b"HTTP/1.1 200 OK\r\n" + b"X-Drip: " + b"z" * 100_000)

    with ScriptedServer(script) as server:
        start = time.monotonic()
        with pytest.raises(PolicyTimeout, match="not healthy after 2 s"):
            wait_until_healthy(server.url, timeout=2)
        assert time.monotonic() - start < 3.5


@pytest.mark.timeout(60)
def test_cpu_venv_build_that_hangs_is_killed_at_its_timeout(tmp_path, monkeypatch):
    pid_file = tmp_path / "pip.pid"
    script = tmp_path / "setup.sh"
    script.write_text(f"sleep 600 &\necho $! > {pid_file}\nwait\n")  # a stalled "pip" in the background
    monkeypatch.setattr(serve_module, "SETUP_SCRIPT", script)
    start = time.monotonic()
    with pytest.raises(PolicyTimeout, match="did not finish within 1 s"):
        serve_module.vllm_cpu_python(timeout=1)
    assert time.monotonic() - start < 10
    assert _wait_gone([int(pid_file.read_text())], within=5) == []
