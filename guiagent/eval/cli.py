"""``guiagent eval``: score predictions (a file, or a local model with ``--model``) on a converted benchmark,
or play a benchmark online on the farm (``mobilesim``, ``miniwob``) with a served policy or a scripted agent.

Each command writes ``report.json`` and ``report.md`` into ``--out``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import typer

app = typer.Typer(
    help="Offline evaluation with each benchmark's reference protocol (reports: JSON + Markdown).",
    no_args_is_help=True,
)

_DATA = typer.Argument(
    ..., help="A converted store (guiagent data convert), or a directory of split stores with --split."
)
_PREDICTIONS = typer.Option(
    None, "--predictions", help="Predictions JSONL (format: guiagent/eval/predictions.py)."
)
_MODEL = typer.Option(
    None,
    "--model",
    help="Instead of --predictions: a Hugging Face model directory run greedily "
    "in-process (guiagent.policy local backend); its answers are written to OUT/predictions.jsonl.",
)
_MAX_TOKENS = typer.Option(256, "--max-tokens", help="With --model: most tokens per answer.")
_OUT = typer.Option(..., "--out", help="Directory for report.json and report.md.")
_SPLIT = typer.Option(
    None, "--split", help="Split to evaluate: DATA/<split> if that is a store, else DATA's split must match."
)
_SKIP = typer.Option(
    False, "--skip-invalid", help="Skip invalid prediction lines (listed with the reason on stderr and in the "
    "report) instead of failing."
)
_FORMAT = typer.Option("qwen25vl_mobile", "--format", help="Model output format of 'response' text.")
_FACTOR = typer.Option(
    28, "--factor", help="smart_resize patch multiple of the model (28 Qwen2.5-VL, 32 Qwen3-VL)."
)
_MIN_PIXELS = typer.Option(
    3136, "--min-pixels", help="smart_resize min_pixels used when the model saw the screenshot."
)
_MAX_PIXELS = typer.Option(
    12845056, "--max-pixels", help="smart_resize max_pixels used when the model saw the screenshot."
)


def _run(
    benchmark: str,
    data: Path,
    predictions: Optional[Path],
    out: Path,
    split: Optional[str],
    skip_invalid: bool,
    fmt: str,
    factor: int,
    min_pixels: int,
    max_pixels: int,
    model: Optional[Path] = None,
    produce: Optional[Callable] = None,
    max_tokens: int = 256,
    **options,
) -> None:
    """Resolve the store, get predictions (the file, or ``produce(root, predictor, space)`` with ``--model``),
    score them and write the reports."""
    from guiagent.actions import ActionSpaceConfig
    from guiagent.config import parse_config
    from guiagent.data.store import read_manifest
    from guiagent.errors import ConfigError, GuiAgentError
    from guiagent.eval import evaluate, protocol_module
    from guiagent.eval.predictions import load_predictions, read_benchmark_manifest, write_predictions
    from guiagent.eval.report import LISTED_LINES, write_report

    if (predictions is None) == (model is None):
        typer.echo("error: give exactly one of --predictions and --model", err=True)
        raise typer.Exit(code=2)
    if out.exists() and not out.is_dir():
        typer.echo(f"error: --out {out} is a file; give a directory for report.json and report.md", err=True)
        raise typer.Exit(code=2)
    try:
        options_given = {"format": fmt, "factor": factor, "min_pixels": min_pixels, "max_pixels": max_pixels}
        space = parse_config(options_given, ActionSpaceConfig, "--format/--factor/--min-pixels/--max-pixels")
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    try:
        root = data
        if split is not None:
            if (data / split / "manifest.json").exists():
                root = data / split
            elif read_manifest(data).get("split") != split:
                raise GuiAgentError(
                    f"{data} holds split {read_manifest(data).get('split')!r} and has no sub-store {split!r}"
                )
        if model is not None:
            from guiagent.eval.model import PolicyPredictor
            from guiagent.policy.local import LocalPolicy

            # Fail on a bad store, or one of another benchmark, before loading a model.
            read_benchmark_manifest(root, benchmark, protocol_module(benchmark).DATASETS)
            predictor = PolicyPredictor(LocalPolicy.from_pretrained(model), space, max_tokens)
            out.mkdir(parents=True, exist_ok=True)
            predictions = out / "predictions.jsonl"
            written = write_predictions(predictions, produce(root, predictor, space))
            typer.echo(f"{model}: {written} answers written to {predictions}")
        preds = load_predictions(predictions, skip_invalid=skip_invalid)
        report = evaluate(benchmark, root, preds, space, **options)
        if model is not None:
            report["model"] = str(model)
        json_path, md_path = write_report(report, out)
    except (GuiAgentError, OSError) as exc:  # OSError: --out (or a directory above it) cannot be written
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    for line, error in preds.skipped[:LISTED_LINES]:
        typer.echo(f"skipped: {preds.path} line {line}: {error}", err=True)
    if len(preds.skipped) > LISTED_LINES:
        typer.echo(f"skipped: {len(preds.skipped) - LISTED_LINES} more lines, listed in {json_path}", err=True)
    typer.echo(md_path.read_text(encoding="utf-8"), nl=False)
    typer.echo(f"wrote {json_path} and {md_path}")


@app.command("aitw")
def eval_aitw(
    data: Path = _DATA,
    predictions: Optional[Path] = _PREDICTIONS,
    out: Path = _OUT,
    split: Optional[str] = _SPLIT,
    skip_invalid: bool = _SKIP,
    fmt: str = _FORMAT,
    factor: int = _FACTOR,
    min_pixels: int = _MIN_PIXELS,
    max_pixels: int = _MAX_PIXELS,
    strict_text: bool = typer.Option(
        False, "--strict-text", help="Text accuracy counts TYPE predictions only (SeeClick counts any)."
    ),
) -> None:
    """AITW: the reference check_actions_match (float32) and SeeClick's per-subset metrics."""
    _run(
        "aitw",
        data,
        predictions,
        out,
        split,
        skip_invalid,
        fmt,
        factor,
        min_pixels,
        max_pixels,
        strict_text=strict_text,
    )


@app.command("androidcontrol")
def eval_androidcontrol(
    data: Path = _DATA,
    predictions: Optional[Path] = _PREDICTIONS,
    out: Path = _OUT,
    split: Optional[str] = _SPLIT,
    skip_invalid: bool = _SKIP,
    fmt: str = _FORMAT,
    factor: int = _FACTOR,
    min_pixels: int = _MIN_PIXELS,
    max_pixels: int = _MAX_PIXELS,
    model: Optional[Path] = _MODEL,
    max_tokens: int = _MAX_TOKENS,
    level: str = typer.Option("high", "--level", help="With --model: high, low or both."),
    max_episodes: Optional[int] = typer.Option(
        None, "--max-episodes", min=1, help="With --model: stop after this many episodes."
    ),
) -> None:
    """AndroidControl (or UI-S1 jsonl): type / grounding / step SR per level and SOP, UI-S1's matcher.

    With --model the policy runs the SOP way (own history, expert screens, greedy, stop at the first
    mismatch).
    """
    if level not in ("high", "low", "both"):
        typer.echo(f"error: --level must be high, low or both, got {level!r}", err=True)
        raise typer.Exit(code=2)

    def produce(root, predictor, space):
        from guiagent.eval.androidcontrol import run_sop

        for lvl in ("high", "low") if level == "both" else (level,):
            yield from run_sop(root, predictor, space, level=lvl, max_episodes=max_episodes)

    _run(
        "androidcontrol",
        data,
        predictions,
        out,
        split,
        skip_invalid,
        fmt,
        factor,
        min_pixels,
        max_pixels,
        model=model,
        produce=produce,
        max_tokens=max_tokens,
    )


@app.command("screenspot")
def eval_screenspot(
    data: Path = _DATA,
    predictions: Optional[Path] = _PREDICTIONS,
    out: Path = _OUT,
    split: Optional[str] = _SPLIT,
    skip_invalid: bool = _SKIP,
    fmt: str = _FORMAT,
    factor: int = _FACTOR,
    min_pixels: int = _MIN_PIXELS,
    max_pixels: int = _MAX_PIXELS,
    model: Optional[Path] = _MODEL,
    max_tokens: int = _MAX_TOKENS,
    limit: Optional[int] = typer.Option(
        None, "--limit", min=1, help="With --model: ask about this many samples only."
    ),
) -> None:
    """ScreenSpot v1 / v2 / Pro: point in box (edges included), by platform, source, group, text/icon."""

    def produce(root, predictor, space):
        from guiagent.eval.model import grounding_predictions

        return grounding_predictions(root, predictor, limit)

    _run(
        "screenspot",
        data,
        predictions,
        out,
        split,
        skip_invalid,
        fmt,
        factor,
        min_pixels,
        max_pixels,
        model=model,
        produce=produce,
        max_tokens=max_tokens,
    )


@app.command("odyssey")
def eval_odyssey(
    data: Path = _DATA,
    predictions: Optional[Path] = _PREDICTIONS,
    out: Path = _OUT,
    split: Optional[str] = _SPLIT,
    skip_invalid: bool = _SKIP,
    fmt: str = _FORMAT,
    factor: int = _FACTOR,
    min_pixels: int = _MIN_PIXELS,
    max_pixels: int = _MAX_PIXELS,
) -> None:
    """GUI-Odyssey: AMS, SR, type and text accuracy with the reference's matcher."""
    _run("odyssey", data, predictions, out, split, skip_invalid, fmt, factor, min_pixels, max_pixels)


# --- online evaluation on the farm ----------------------------------------------------------------------------

_AGENT = typer.Option(
    None, "--agent", help="A scripted agent instead of a served policy: oracle (the device kind's expert) or random."
)
_POLICY_URL = typer.Option(None, "--policy-url", help="Base URL of the served policy (vLLM's OpenAI API).")
_SERVED_MODEL = typer.Option(None, "--model", help="With --policy-url: the served model or LoRA adapter name.")
_LOCAL = typer.Option(
    False, "--local", help="Start a local farm (redis-server + workers) for this run and stop it afterwards."
)
_FARM_DIR = typer.Option(
    None, "--farm-dir", help="Use the local farm started with 'guiagent farm up --local --dir DIR'; without "
    "--local or --farm-dir the farm comes from GUIAGENT_FARM_CONFIG / GUIAGENT_BROKER_URL.",
)
_WORKERS = typer.Option(2, "--workers", min=1, max=64, help="With --local: device workers to start.")
_SEEDS = typer.Option("0", "--seeds", help="Comma-separated task seeds; every task runs once per seed.")
_MAX_STEPS = typer.Option(None, "--max-steps", min=1, help="Step budget per episode, capped by each task's own.")
_TIMEOUT = typer.Option(3600.0, "--timeout", min=1.0, help="Seconds to wait for all episodes (then errors).")
_MAX_NEW_TOKENS = typer.Option(256, "--max-tokens", min=1, help="With --policy-url: most tokens per answer.")
_POLICY_MAX_PIXELS = typer.Option(
    12845056, "--max-pixels", help="With --policy-url: smart_resize max_pixels of the screenshots the model sees."
)


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        typer.echo(f"error: --seeds must be comma-separated integers, got {text!r}", err=True)
        raise typer.Exit(code=2) from None


def _farm_eval(kind: str, protocol: str, tasks: list, out: Path, *, agent: Optional[str], policy_url: Optional[str],
               model: Optional[str], fmt: str, max_pixels: int, max_tokens: int, local: bool,
               farm_dir: Optional[Path], workers: int, max_steps: Optional[int], timeout: float,
               require_done: bool = False, **farm_options) -> None:
    """Connect to (or start) the farm, build the agent spec, run :func:`evaluate_on_farm`, print the report."""
    import contextlib
    import tempfile

    from guiagent.errors import GuiAgentError
    from guiagent.eval.online import evaluate_on_farm
    from guiagent.farm.client import FarmClient
    from guiagent.farm.config import FarmConfig
    from guiagent.farm.local import LocalFarm, read_state
    from guiagent.farm.specs import AgentSpec

    if (agent is None) == (policy_url is None) or (policy_url is not None and not model):
        typer.echo("error: give --agent oracle|random, or --policy-url with --model", err=True)
        raise typer.Exit(code=2)
    if agent not in (None, "oracle", "random"):
        typer.echo(f"error: --agent must be oracle or random, got {agent!r}", err=True)
        raise typer.Exit(code=2)
    if local and farm_dir is not None:
        typer.echo("error: give --local or --farm-dir, not both", err=True)
        raise typer.Exit(code=2)
    try:
        with contextlib.ExitStack() as stack:
            if local:
                directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="guiagent-eval-farm-")))
                counts = {"sims": workers, "webs": 0} if kind == "sim" else {"sims": 0, "webs": workers}
                farm = stack.enter_context(LocalFarm(directory, **counts, **farm_options))
                config = farm.config
            elif farm_dir is not None:
                config = FarmConfig.model_validate(read_state(farm_dir)["config"])
            else:
                config = FarmConfig.from_env()
            client = stack.enter_context(FarmClient(config))
            if agent is not None:
                spec = AgentSpec(agent)
            else:
                from guiagent.farm.specs import policy_agent_spec
                from guiagent.policy.base import SamplingParams
                from guiagent.policy.prompts import PromptConfig

                # The model geometry of every screen size the farm's devices of this kind have (qwen-vl-utils
                # runs here, in the driver; workers never import it).
                sizes = sorted({tuple(d["screen"]) for d in client.device_status().values() if d.get("kind") == kind})
                prompt = PromptConfig.model_validate({"actions": {"format": fmt, "max_pixels": max_pixels}})
                spec = policy_agent_spec(policy_url, model, prompt, SamplingParams(max_tokens=max_tokens, greedy=True,
                                                                                   temperature=0.0), sizes)
            report = evaluate_on_farm(client, kind, tasks, spec, protocol=protocol, out_dir=out, max_steps=max_steps,
                                      require_done=require_done, timeout=timeout)
    except (GuiAgentError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo((out / "report.md").read_text(encoding="utf-8"), nl=False)
    typer.echo(f"wrote {out / 'report.json'} and {out / 'report.md'} (score {report['metrics']['score']:.4f})")


@app.command("mobilesim")
def eval_mobilesim(
    out: Path = _OUT,
    agent: Optional[str] = _AGENT,
    policy_url: Optional[str] = _POLICY_URL,
    model: Optional[str] = _SERVED_MODEL,
    local: bool = _LOCAL,
    farm_dir: Optional[Path] = _FARM_DIR,
    workers: int = _WORKERS,
    templates: Optional[str] = typer.Option(None, "--templates", help="Comma-separated templates (default: all)."),
    seeds: str = _SEEDS,
    max_steps: Optional[int] = _MAX_STEPS,
    timeout: float = _TIMEOUT,
    fmt: str = typer.Option("qwen25vl_mobile", "--format", help="With --policy-url: the model's output format."),
    max_pixels: int = _POLICY_MAX_PIXELS,
    max_tokens: int = _MAX_NEW_TOKENS,
) -> None:
    """MobileSim on the farm (sim workers): every template (or --templates) per seed; aggregate = mean of the
    per-template success rates."""
    from guiagent.envs.sim.tasks import TEMPLATES, make_task

    names = [t.strip() for t in templates.split(",") if t.strip()] if templates else list(TEMPLATES)
    try:
        tasks = [make_task(name, seed) for name in names for seed in _seeds(seeds)]
    except KeyError as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(code=2) from None
    _farm_eval("sim", "mobilesim", tasks, out, agent=agent, policy_url=policy_url, model=model, fmt=fmt,
               max_pixels=max_pixels, max_tokens=max_tokens, local=local, farm_dir=farm_dir, workers=workers,
               max_steps=max_steps, timeout=timeout)


@app.command("miniwob")
def eval_miniwob(
    out: Path = _OUT,
    agent: Optional[str] = _AGENT,
    policy_url: Optional[str] = _POLICY_URL,
    model: Optional[str] = _SERVED_MODEL,
    local: bool = _LOCAL,
    farm_dir: Optional[Path] = _FARM_DIR,
    workers: int = _WORKERS,
    tasks: Optional[str] = typer.Option(
        None, "--tasks", help="Comma-separated MiniWoB++ tasks (click-test or miniwob/click-test-v1); default: the "
        "16 tasks the DOM expert solves (guiagent.agent.web.SOLVERS)."),
    seeds: str = _SEEDS,
    max_steps: Optional[int] = _MAX_STEPS,
    timeout: float = _TIMEOUT,
    reward: str = typer.Option("raw", "--reward", help="With --local: raw (no time penalty) or env (MiniWoB's)."),
    episode_seconds: Optional[float] = typer.Option(
        None, "--episode-seconds", min=0.1, help="With --local: MiniWoB's episode time limit (default: the task's "
        "own, 10 s; a slow policy server may need more)."),
    fmt: str = typer.Option("qwen25vl_computer", "--format", help="With --policy-url: the model's output format."),
    max_pixels: int = _POLICY_MAX_PIXELS,
    max_tokens: int = _MAX_NEW_TOKENS,
) -> None:
    """MiniWoB++ on the farm (web workers, headless Chromium): each task's own reward; score = mean reward."""
    from guiagent.agent.web import SOLVERS
    from guiagent.envs.web import miniwob_tasks
    from guiagent.errors import ConfigError

    if reward not in ("raw", "env"):
        typer.echo(f"error: --reward must be raw or env, got {reward!r}", err=True)
        raise typer.Exit(code=2)
    names = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else sorted(SOLVERS)
    try:
        task_list = miniwob_tasks(names, _seeds(seeds))
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    _farm_eval("web", "miniwob", task_list, out, agent=agent, policy_url=policy_url, model=model, fmt=fmt,
               max_pixels=max_pixels, max_tokens=max_tokens, local=local, farm_dir=farm_dir, workers=workers,
               max_steps=max_steps, timeout=timeout,
               web_options={"reward": reward, "episode_seconds": episode_seconds})


@app.command("osworld")
def eval_osworld(
    tasks: Path = typer.Option(..., "--tasks", help="An OSWorld task file, an index file (evaluation_examples/"
                               "test_all.json) or a folder of task files."),
    out: Path = _OUT,
    agent: Optional[str] = _AGENT,
    policy_url: Optional[str] = _POLICY_URL,
    model: Optional[str] = _SERVED_MODEL,
    farm_dir: Optional[Path] = _FARM_DIR,
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Step budget per episode (OSWorld's "
                                            "run.py default: 15)."),
    timeout: float = _TIMEOUT,
    fmt: str = typer.Option("qwen25vl_computer", "--format", help="With --policy-url: the model's output format."),
    max_pixels: int = _POLICY_MAX_PIXELS,
    max_tokens: int = _MAX_NEW_TOKENS,
) -> None:
    """OSWorld on the farm (osworld workers, one VM each): every task set up from its config and judged by its own
    evaluator in the VM; score = success rate over tasks."""
    from guiagent.envs.osworld.tasks import DEFAULT_MAX_STEPS, load_osworld_tasks
    from guiagent.errors import DataError

    if agent == "oracle":
        typer.echo("error: OSWorld has no oracle agent here: give --agent random or --policy-url", err=True)
        raise typer.Exit(code=2)
    try:
        task_list = load_osworld_tasks(tasks, max_steps=max_steps or DEFAULT_MAX_STEPS)
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    # No --local: a laptop has no OSWorld VM (start osworld workers against test VMs or real ones, then --farm-dir).
    _farm_eval("osworld", "osworld", task_list, out, agent=agent, policy_url=policy_url, model=model, fmt=fmt,
               max_pixels=max_pixels, max_tokens=max_tokens, local=False, farm_dir=farm_dir, workers=1,
               max_steps=max_steps, timeout=timeout)


@app.command("androidworld")
def eval_androidworld(
    out: Path = _OUT,
    agent: Optional[str] = _AGENT,
    policy_url: Optional[str] = _POLICY_URL,
    model: Optional[str] = _SERVED_MODEL,
    farm_dir: Optional[Path] = _FARM_DIR,
    suite: Optional[Path] = typer.Option(None, "--suite", help="A suite written by --write-suite (a driver without "
                                         "android_world evaluates it); default: built here from android_world."),
    write_suite: Optional[Path] = typer.Option(None, "--write-suite", help="Only build the suite (needs "
                                               "android_world here; in the android image: python -m "
                                               "guiagent.envs.androidworld.runner suite) and write it to this JSON "
                                               "file."),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Comma-separated task templates; default: all."),
    task_seed: int = typer.Option(30, "--task-seed", help="The suite's task seed (android_world's run.py: 30)."),
    combinations: int = typer.Option(1, "--n-task-combinations", min=1, help="Instances per template."),
    family: str = typer.Option("android_world", "--family", help="android_world's suite family."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Cap on the step budget (default: "
                                            "int(10 * complexity) per task, as android_world allocates it)."),
    timeout: float = _TIMEOUT,
    fmt: str = typer.Option("qwen25vl_mobile", "--format", help="With --policy-url: the model's output format."),
    max_pixels: int = _POLICY_MAX_PIXELS,
    max_tokens: int = _MAX_NEW_TOKENS,
) -> None:
    """AndroidWorld on the farm (android workers started with --env-options '{"androidworld": true}'): the
    benchmark's own tasks and is_successful; success only when the agent declared the task done; score = mean
    over task templates."""
    from guiagent.envs import androidworld
    from guiagent.errors import ConfigError, DataError

    if agent == "oracle":
        typer.echo("error: AndroidWorld has no oracle agent here: give --agent random or --policy-url", err=True)
        raise typer.Exit(code=2)
    names = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    try:
        if suite is not None:
            task_list = androidworld.load_suite(suite)
            if names is not None:
                task_list = [t for t in task_list if t.template in names]
        else:
            task_list = androidworld.create_suite(androidworld.load_registry(family), seed=task_seed,
                                                  n_task_combinations=combinations, tasks=names, family=family)
    except (ConfigError, DataError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if write_suite is not None:
        androidworld.save_suite(task_list, write_suite)
        typer.echo(f"wrote {len(task_list)} tasks of {len({t.template for t in task_list})} templates to {write_suite}")
        return
    _farm_eval("android", "androidworld", task_list, out, agent=agent, policy_url=policy_url, model=model, fmt=fmt,
               max_pixels=max_pixels, max_tokens=max_tokens, local=False, farm_dir=farm_dir, workers=1,
               max_steps=max_steps, timeout=timeout, require_done=True)
