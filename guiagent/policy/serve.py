"""Launch vLLM's OpenAI-compatible server as a subprocess, wait for it, stop it cleanly.

The server runs in its own environment (a venv with vLLM, a container, a remote wrapper): give its Python
interpreter (``python``) or a full command prefix (``command``). On a CPU-only machine
:func:`vllm_cpu_python` builds (once, cached) the CPU venv with ``scripts/setup_vllm_cpu.sh``.

The server never outlives its launcher: it runs under :func:`supervise` (``python -m guiagent.policy.serve``),
which stops it when the launcher's end of a pipe closes, however the launcher ended. Every wait at start-up
has a deadline: the CPU venv build, and the health wait, whose probes are bounded in total, not per read.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from pydantic import Field

from guiagent.config import StrictModel
from guiagent.errors import PolicyError, PolicyTimeout
from guiagent.net import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = REPO_ROOT / "scripts" / "setup_vllm_cpu.sh"


class ServerConfig(StrictModel):
    """How ``guiagent serve`` starts vLLM."""

    model: str = Field(description="Model directory or hub id the server loads.")
    served_model_name: str | None = Field(None, description="Name clients ask for; default: the model argument.")
    host: str = Field("127.0.0.1", description="Bind address; keep localhost unless a proxy guards the port.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    python: str | None = Field(None, description="Interpreter of the environment that has vLLM; default: this one.")
    command: list[str] | None = Field(
        None, description="Full command prefix that starts the server (replaces python -m ...); flags are appended."
    )
    loras: dict[str, str] = Field(default_factory=dict, description="LoRA adapters to load at start: name -> path.")
    enable_lora: bool = Field(True, description="Allow LoRA adapters (needed by the lora weight-sync backend).")
    max_lora_rank: int = Field(16, description="Largest LoRA rank the server accepts (vLLM allows 8..512).")
    max_loras: int = Field(2, ge=1, description="Adapters resident at once (old and new policy versions overlap).")
    max_model_len: int = Field(8192, ge=256, description="Longest prompt + completion in tokens.")
    images_per_prompt: int = Field(4, ge=0, description="--limit-mm-per-prompt for images: the history window.")
    dtype: str = Field("auto", description="Weights dtype: auto, float32, bfloat16, float16.")
    enforce_eager: bool = Field(True, description="Skip graph capture/compilation: faster start, slower decode.")
    kv_cache_space_gib: int = Field(2, ge=1, description="VLLM_CPU_KVCACHE_SPACE for the CPU build (GiB).")
    runtime_lora_updating: bool = Field(True, description="Set VLLM_ALLOW_RUNTIME_LORA_UPDATING (lora sync).")
    dev_mode: bool = Field(True, description="Set VLLM_SERVER_DEV_MODE=1: /pause, /resume, /collective_rpc (reload sync).")
    weight_transfer_backend: str | None = Field(
        None, description="Native weight transfer backend for the nccl sync (e.g. 'nccl'); GPU only."
    )
    chunked_prefill: bool = Field(
        True, description="Split long prefills into chunks. vLLM 0.32's CPU build must run without it to serve "
        "seeded requests (its chunk bookkeeping calls a CUDA-only generator API and kills the engine).",
    )
    seed: int = Field(0, description="Server sampling seed.")
    extra_args: list[str] = Field(default_factory=list, description="More vLLM flags, appended verbatim.")
    health_timeout_s: float = Field(600.0, gt=0, description="Seconds to wait for /health after launch.")
    log_file: str | None = Field(None, description="Server stdout+stderr go here; default: a file in the cwd.")


def vllm_cpu_python(timeout: float = 3600.0) -> str:
    """Build (first call, minutes; cached afterwards) the vLLM CPU venv and return its interpreter path.

    Args:
        timeout: Seconds the build may take; then the script and everything it started (pip) are killed.

    Raises:
        PolicyError: the setup script is missing or failed.
        PolicyTimeout: the setup script did not finish within ``timeout``.
    """
    if not SETUP_SCRIPT.exists():
        raise PolicyError(f"{SETUP_SCRIPT} not found: the vLLM CPU setup needs a guiagent source checkout")
    # Its own process group, so that a timeout reaches pip too: killing bash alone leaves pip holding the
    # output pipes, and reading them would then wait for pip.
    process = subprocess.Popen(["bash", str(SETUP_SCRIPT)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException as exc:
        _kill_group(process)
        process.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise PolicyTimeout(f"{SETUP_SCRIPT} did not finish within {timeout:g} s") from exc
        raise
    if process.returncode != 0:
        raise PolicyError(f"{SETUP_SCRIPT} failed (exit {process.returncode}):\n{stderr[-3000:]}")
    return stdout.strip().splitlines()[-1]


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def server_command(config: ServerConfig) -> list[str]:
    """The argv that starts the server."""
    prefix = config.command or [
        config.python or sys.executable, "-m", "vllm.entrypoints.openai.api_server",
    ]
    args = [
        *prefix,
        "--model", config.model,
        "--served-model-name", config.served_model_name or config.model,
        "--host", config.host,
        "--port", str(config.port),
        "--dtype", config.dtype,
        "--max-model-len", str(config.max_model_len),
        # vLLM >= 0.10 takes a JSON object per modality; the old "image=4" form is gone.
        "--limit-mm-per-prompt", json.dumps({"image": config.images_per_prompt, "video": 0}),
        "--seed", str(config.seed),
    ]
    if config.enforce_eager:
        args.append("--enforce-eager")
    if not config.chunked_prefill:
        # Without chunking a whole prompt must fit one scheduler step.
        args += ["--no-enable-chunked-prefill", "--max-num-batched-tokens", str(config.max_model_len)]
    if config.enable_lora or config.loras:
        args += ["--enable-lora", "--max-lora-rank", str(config.max_lora_rank), "--max-loras", str(config.max_loras)]
    if config.loras:
        args += ["--lora-modules", *(f"{name}={path}" for name, path in config.loras.items())]
    if config.weight_transfer_backend:
        args += ["--weight-transfer-config", json.dumps({"backend": config.weight_transfer_backend})]
    return args + list(config.extra_args)


def server_env(config: ServerConfig) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(config.kv_cache_space_gib))
    if config.runtime_lora_updating:
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    if config.dev_mode:
        env["VLLM_SERVER_DEV_MODE"] = "1"
    return env


HEALTH_PROBE_S = 5.0  # most seconds one /health probe may take, start to last byte


def wait_until_healthy(url: str, timeout: float, process: subprocess.Popen | None = None,
                       describe: Callable[[], str] = lambda: "") -> None:
    """Poll ``url/health`` until it answers 200, for at most ``timeout`` seconds whatever the server does.

    Raises:
        PolicyError: ``process`` (the server, or what launched it) exited first.
        PolicyTimeout: no healthy answer within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise PolicyError(f"vLLM server exited with code {process.returncode} during start-up; {describe()}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        if _answers_200(f"{url}/health", min(HEALTH_PROBE_S, remaining)):
            return
        time.sleep(max(0.0, min(1.0, deadline - time.monotonic())))
    raise PolicyTimeout(f"vLLM server at {url} not healthy after {timeout:.0f} s; {describe()}")


def _answers_200(url: str, seconds: float) -> bool:
    """Whether GET ``url`` answers 200 within ``seconds`` in all; httpx's timeout alone bounds each read only."""

    async def probe() -> int:
        async with httpx.AsyncClient(timeout=seconds) as http:
            return (await asyncio.wait_for(http.get(url), seconds)).status_code

    try:
        return asyncio.run(probe()) == 200
    except (httpx.TransportError, asyncio.TimeoutError):
        return False


def supervise(argv: list[str], grace: float = 30.0) -> int:
    """Run ``argv`` (the server) until it exits, and stop it if this process's stdin closes first.

    :class:`VLLMServer` runs this as ``python -m guiagent.policy.serve ARGV``, as the leader of a new process
    group, and keeps the write end of its stdin without ever writing. However the launcher ends (SIGKILL,
    a crash, its terminal closing), the kernel then closes that pipe: the read here returns and the whole
    group (server, engine, workers) gets SIGTERM, then SIGKILL after ``grace`` seconds. A server started in a
    session of its own would otherwise outlive a launcher that could not clean up, holding the port and GPU.

    Returns:
        The server's exit status. A server killed by a signal is mirrored by dying of the same signal.
    """
    # No-op handlers rather than SIG_IGN, which the server would inherit: stop() signals the whole group,
    # so the server gets the signal itself, and this process leaves when the server has gone.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    try:
        server = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    except OSError as exc:
        print(f"cannot start {argv[0]}: {exc}", file=sys.stderr)
        return 127
    orphaned = threading.Event()
    threading.Thread(target=_stop_group_when_orphaned, args=(orphaned, grace), daemon=True).start()
    status = server.wait()
    if orphaned.is_set():
        os.killpg(0, signal.SIGKILL)  # whatever the server left behind; no launcher is left to want our status
    if status < 0:
        if -status in (signal.SIGTERM, signal.SIGINT):
            signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    return status if status >= 0 else 128 - status


def _stop_group_when_orphaned(orphaned: threading.Event, grace: float) -> None:
    # The launcher never writes: the read returns b"" once its end of the pipe is closed. A raw read, because
    # a thread blocked in sys.stdin's buffered reader holds a lock that aborts the interpreter's exit.
    while os.read(0, 4096):
        pass
    orphaned.set()
    os.killpg(0, signal.SIGTERM)
    time.sleep(grace)
    os.killpg(0, signal.SIGKILL)


class VLLMServer:
    """A running vLLM server process (context manager: starts on enter, stops on exit).

    The server is started in its own process group so :meth:`stop` reaches its engine and worker
    processes too: SIGTERM to the group, wait, then SIGKILL to the group. It runs under :func:`supervise`
    (``process`` is that supervisor, whose exit status is the server's), so it is stopped as well when this
    process dies without calling :meth:`stop`.
    """

    def __init__(self, config: ServerConfig):
        self.config = config
        self.process: subprocess.Popen | None = None
        self.log_path = Path(config.log_file or f"vllm-server-{config.port}.log")

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "::") else self.config.host
        return f"http://{host}:{self.config.port}"

    def start(self) -> VLLMServer:
        """Launch the server and block until ``/health`` answers 200.

        Raises:
            PolicyError: the process exited during start-up (the log's tail is in the message).
            PolicyTimeout: no healthy answer within ``health_timeout_s``.
        """
        if self.process is not None:
            raise PolicyError("server already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "guiagent.policy.serve", *server_command(self.config)],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=server_env(self.config),
                start_new_session=True,
            )
        try:
            self.wait_healthy(self.config.health_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_healthy(self, timeout: float) -> None:
        wait_until_healthy(self.url, timeout, self.process, describe=lambda: f"log {self.log_path}:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        """Terminate the server's process group; kill it if it has not exited within ``timeout``."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout)
            except ProcessLookupError:
                pass
            # Engine/worker children may outlive the API process; the group id still names them.
            _kill_group(process)
        process.stdin.close()  # last: closing it earlier would start the supervisor's own stop

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cpu_server(model: str | Path, log_file: str | Path, served_model_name: str = "tiny", **overrides) -> VLLMServer:
    """A (not yet started) vLLM CPU server for a small float32 model with LoRA and dev endpoints on.

    What tests, benchmarks and the CPU demo use: builds the CPU venv on first use, picks a free port,
    and turns chunked prefill off so seeded sampling works on the CPU build (see ``chunked_prefill``).
    """
    settings = dict(
        model=str(model), served_model_name=served_model_name, port=free_port(), python=vllm_cpu_python(),
        dtype="float32", max_model_len=4096, images_per_prompt=4, log_file=str(log_file),
        health_timeout_s=900, chunked_prefill=False,
    )
    config = ServerConfig(**{**settings, **overrides})
    return VLLMServer(config)


if __name__ == "__main__":
    sys.exit(supervise(sys.argv[1:]))
