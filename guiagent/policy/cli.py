"""``guiagent policy ...`` and ``guiagent serve``: build the tiny model, generate, serve with vLLM."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import typer

app = typer.Typer(help="Policy models: build the tiny test model, generate locally.", no_args_is_help=True)


@app.command("tiny")
def tiny(
    path: Path = typer.Argument(..., help="Output directory for the model, tokenizer and processor."),
    seed: int = typer.Option(0, help="Seed of the random weights."),
) -> None:
    """Build a tiny random Qwen2.5-VL (~3.4 M parameters) with a locally trained tokenizer."""
    from guiagent.policy.tiny import build_tiny_qwen25vl

    try:
        out = build_tiny_qwen25vl(path, seed=seed)
    except OSError as exc:  # PATH is a file, or lies under one
        typer.echo(f"error: cannot write the model to {path}: {exc.strerror or exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(str(out))


@app.command("generate")
def generate(
    model: Path = typer.Argument(..., help="Hugging Face model directory."),
    screenshot: Path = typer.Argument(..., help="Screenshot file (PNG/JPEG)."),
    instruction: str = typer.Argument(..., help="The task instruction."),
    fmt: str = typer.Option(
        "qwen25vl_mobile",
        "--format",
        help="Answer format (ActionSpaceConfig.format): qwen25vl_mobile, qwen25vl_computer, qwen3vl_mobile, "
        "qwen3vl_computer, uis1.",
    ),
    max_tokens: int = typer.Option(128, help="Most tokens to generate."),
    server: str = typer.Option(None, help="vLLM server URL (e.g. http://127.0.0.1:8000); default: generate locally."),
    deadline: float = typer.Option(
        300.0, min=0.001, help="With --server: seconds the request may take in all, retries included, however "
        "slowly the server answers."),
) -> None:
    """Ask the policy for one action on one screenshot, greedily; print text, tokens and log-probs as JSON."""
    from guiagent.actions import ActionSpaceConfig
    from guiagent.errors import GuiAgentError
    from guiagent.policy.base import GenerationRequest, SamplingParams
    from guiagent.policy.prompts import PromptConfig, build_messages

    try:
        config = PromptConfig(actions=ActionSpaceConfig(format=fmt))
        messages = build_messages(instruction, screenshot.read_bytes(), [], config)
        if server:
            from guiagent.policy.client import VLLMClient

            with VLLMClient(server, model=str(model), deadline=deadline) as policy:
                result = policy.generate([GenerationRequest(messages)], SamplingParams(max_tokens, greedy=True))[0]
        else:
            from guiagent.policy.local import LocalPolicy

            policy = LocalPolicy.from_pretrained(model)
            result = policy.generate([GenerationRequest(messages)], SamplingParams(max_tokens, greedy=True))[0]
    except (GuiAgentError, OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(json.dumps({"text": result.text, "token_ids": result.token_ids, "logprobs": result.logprobs,
                           "finish_reason": result.finish_reason, "prompt_tokens": result.prompt_tokens}))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(
    model: str = typer.Argument(..., help="Model directory (or hub id) to serve."),
    lora: list[str] = typer.Option([], "--lora", help="Adapter to load at start, NAME=PATH; repeatable."),
    port: int = typer.Option(8000, min=1, max=65535, help="HTTP port."),
    host: str = typer.Option("127.0.0.1", help="Bind address."),
    python: str = typer.Option(None, help="Python of the environment that has vLLM (default: this one)."),
    command: str = typer.Option(None, help="Full command prefix that starts the server, e.g. 'docker run ... vllm'."),
    cpu: bool = typer.Option(
        False, "--cpu", help="Use (and build once) the vLLM CPU venv of setup_vllm_cpu.sh; chunked prefill off."),
    max_model_len: int = typer.Option(8192, help="Longest prompt + completion."),
    images_per_prompt: int = typer.Option(4, help="Most images per prompt (the history window)."),
    max_lora_rank: int = typer.Option(16, help="Largest LoRA rank accepted."),
    dtype: str = typer.Option("auto", help="auto, float32, bfloat16, float16."),
    served_model_name: str = typer.Option(None, help="Name clients request (default: MODEL)."),
    log_file: str = typer.Option(None, help="Server log file (default: vllm-server-PORT.log)."),
    health_timeout: float = typer.Option(600.0, help="Seconds to wait for the server to become healthy."),
) -> None:
    """Start vLLM's OpenAI-compatible server for MODEL, wait until healthy, serve until interrupted."""
    import shlex

    from guiagent.config import parse_config
    from guiagent.errors import GuiAgentError
    from guiagent.policy.serve import ServerConfig, VLLMServer, vllm_cpu_python

    loras = {}
    for item in lora:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            typer.echo(f"error: --lora wants NAME=PATH, got {item!r}", err=True)
            raise typer.Exit(code=2)
        loras[name] = path
    try:
        config = parse_config({  # an option out of range is a one-line ConfigError naming it
            "model": model, "port": port, "host": host, "loras": loras, "max_model_len": max_model_len,
            "images_per_prompt": images_per_prompt, "max_lora_rank": max_lora_rank, "dtype": dtype,
            "served_model_name": served_model_name, "log_file": log_file, "health_timeout_s": health_timeout,
            "command": shlex.split(command) if command else None,
            "python": vllm_cpu_python() if cpu else python,
            "chunked_prefill": not cpu,
        }, ServerConfig, "serve options")
    except GuiAgentError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    except ValueError as exc:  # shlex: an unclosed quote
        typer.echo(f"error: --command: {exc}", err=True)
        raise typer.Exit(code=2) from None
    server = VLLMServer(config)
    # SIGTERM (docker stop, a supervisor) and SIGHUP (the terminal closed) must stop the server's process
    # group as Ctrl-C does, during start-up too: installed before the launch so no window exists where they
    # would end this process without stop(). (Were it killed outright, the server's supervisor stops it.)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        typer.echo(f"starting vLLM for {model} on {server.url} (log: {server.log_path})", err=True)
        server.start()
        typer.echo(f"serving {config.served_model_name or model} at {server.url}; Ctrl-C stops", err=True)
        server.process.wait()
        typer.echo(f"error: vLLM server exited with code {server.process.returncode}", err=True)
        raise typer.Exit(code=1)
    except GuiAgentError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
