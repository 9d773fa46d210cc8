"""Online evaluation: play tasks on a live env through the one agent loop and aggregate the env's verdicts.

Success is the env's own judgement (``Env.evaluate``: the device state or the benchmark's checker), never
the agent's claim. The aggregate follows AndroidWorld's: the success rate per task template, then the mean
over templates, so a template with many seeds does not outweigh one with few.

:func:`run_online` plays tasks on one env in this process; :func:`evaluate_on_farm` plays them on a farm's
devices of one kind and writes the report (``guiagent eval mobilesim|miniwob`` and the other online benchmarks).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guiagent.agent import Agent, run_episode
from guiagent.envs.base import Env
from guiagent.types import Task, Trajectory

if TYPE_CHECKING:  # the farm client imports Celery: only the farm evaluation needs it, at run time
    from guiagent.farm.client import FarmClient
    from guiagent.farm.specs import AgentSpec, EpisodeResult


def run_online(
    env: Env,
    tasks: Iterable[Task],
    agent: Agent,
    *,
    policy_version: str,
    max_steps: int | None = None,
    require_done: bool = False,
    store: Any = None,
    episode_prefix: str | None = None,
) -> list[Trajectory]:
    """Play every task once on ``env`` with ``agent``.

    Args:
        env: The device.
        tasks: The tasks, in order.
        agent: Who plays.
        policy_version: Recorded on every trajectory.
        max_steps: Step budget per episode, capped by each task's own ``max_steps`` (None: the task's).
        require_done: Success only when the agent declared the task done (AndroidWorld's protocol).
        store: A :class:`guiagent.data.store.TrajectoryStore` to write each episode to as it ends.
        episode_prefix: Episode ids are ``{episode_prefix}-{template}-{seed}`` (default: ``policy_version``).

    Returns:
        The trajectories, in task order.
    """
    episodes = []
    for task in tasks:
        budget = task.max_steps if max_steps is None else min(max_steps, task.max_steps)
        trajectory = run_episode(env, task, agent, max_steps=budget, require_done=require_done,
                                 episode_id=f"{episode_prefix or policy_version}-{task.template}-{task.seed}",
                                 policy_version=policy_version)
        if store is not None:
            store.put(trajectory)
        episodes.append(trajectory)
    return episodes


def online_metrics(episodes: Iterable[Trajectory]) -> dict[str, Any]:
    """Success rate overall, per template, and the mean over templates; steps and parse failures.

    Returns:
        ``{"episodes", "success_rate", "template_success_rate", "per_template", "mean_steps",
        "parse_failures"}``; rates are None when there are no episodes.
    """
    episodes = list(episodes)
    by_template: dict[str, list[bool]] = defaultdict(list)
    for e in episodes:
        by_template[e.info.get("template") or e.task_id].append(e.outcome.success)
    per_template = {name: sum(v) / len(v) for name, v in sorted(by_template.items())}
    n = len(episodes)
    return {
        "episodes": n,
        "success_rate": sum(e.outcome.success for e in episodes) / n if n else None,
        "template_success_rate": sum(per_template.values()) / len(per_template) if per_template else None,
        "per_template": per_template,
        "mean_steps": sum(len(e) for e in episodes) / n if n else None,
        "parse_failures": sum(s.action is None for e in episodes for s in e.steps),
    }


def episode_row(episode: Trajectory) -> dict[str, Any]:
    """One line of an online report: task, agent, steps, parses, verdict, seconds."""
    parsed = sum(s.action is not None for s in episode.steps)
    return {
        "task": episode.task_id,
        "agent": episode.policy_version,
        "steps": len(episode.steps),
        "parsed_actions": parsed,
        "parse_failures": len(episode.steps) - parsed,
        "success": episode.outcome.success,
        "seconds": round(episode.timings["total"], 2),
    }


# --- evaluation on the farm ---------------------------------------------------------------------------------

# Protocol name -> (what it reproduces, the headline score). The score names a key of the report's metrics.
PROTOCOLS: dict[str, tuple[str, str]] = {
    "mobilesim": (("MobileSim tasks judged from the simulated device state (Env.evaluate); aggregate = success "
                  "rate per template, then the mean over templates (AndroidWorld's aggregate)"),
                  "template_success_rate"),
    "miniwob": (("MiniWoB++ (the miniwob package's tasks in headless Chromium); each task's own reward and "
                "episode end; score = mean reward over episodes (raw reward, without the time penalty, unless "
                "the web workers were started with the 'env' reward)"), "mean_reward"),
    "androidworld": (("AndroidWorld: the benchmark's own is_successful, success only when the agent declared the "
                     "task done; aggregate = mean over task templates"), "template_success_rate"),
    "osworld": ("OSWorld: the task's own evaluator in the VM; score = success rate over tasks", "success_rate"),
}


def _error_trajectory(task: Task, result: EpisodeResult, policy_version: str) -> Trajectory:
    """The record of an episode that produced no trajectory (device failures past the retries, a cancelled
    or timed-out episode): status ``error`` with the worker's reason, zero steps."""
    from guiagent.types import EpisodeStatus, Outcome

    return Trajectory(episode_id=result.episode_id, task_id=task.task_id, seed=task.seed, env_id=result.env_id,
                      policy_version=policy_version, outcome=Outcome(EpisodeStatus.ERROR, 0.0, result.message),
                      instruction=task.instruction, timings={"total": result.seconds},
                      info={"template": task.template, "end": "error"})


def evaluate_on_farm(
    client: FarmClient,
    kind: str,
    tasks: Sequence[Task],
    agent: AgentSpec,
    *,
    protocol: str,
    out_dir: Path,
    max_steps: int | None = None,
    require_done: bool = False,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Play every task once on the farm's ``kind`` devices with ``agent``; write and return the report.

    Every episode runs through the farm's workers (the one loop beside the device, the env's own verdict);
    its trajectory is read back from the farm's trajectory store for steps and parse failures. An episode
    that ends without a trajectory (device failures past the retries, no result within ``timeout``) is
    counted as a failure and listed with the worker's reason. ``report.json`` and ``report.md`` are written
    into ``out_dir`` in the offline evaluations' report format (:mod:`guiagent.eval.report`).

    Args:
        client: A :class:`~guiagent.farm.client.FarmClient` of a farm with ``kind`` workers.
        kind: Device kind (the queue): ``sim``, ``web``, ``android``, ``osworld``.
        tasks: The tasks, each played once (the episodes run in parallel on the kind's devices).
        agent: The :class:`~guiagent.farm.specs.AgentSpec` every episode is played by.
        protocol: The protocol the report names (a key of :data:`PROTOCOLS` for its reference and score;
            another name is reported with the generic reference and the success rate).
        out_dir: Where ``report.json`` and ``report.md`` go.
        max_steps: Step budget per episode, capped by each task's own ``max_steps`` (None: the task's).
        require_done: Success only when the agent declared the task done (AndroidWorld's protocol).
        timeout: Seconds to wait for all episodes; those unfinished then are cancelled and reported as errors.

    Returns:
        The report dict: the header of :func:`guiagent.eval.report.base_report`'s reports plus ``metrics``
        (``score``, ``success_rate``, ``template_success_rate``, ``mean_reward``, ``per_template``,
        ``errors``, ``wall_seconds``, ...), ``episodes`` (one row per task, with the failure reason) and tables.

    Raises:
        ConfigError: no tasks.
        FarmError: no worker consumes ``kind``'s queue, or an episode raised on its worker.
    """
    import time
    import uuid

    from guiagent.data.store import TrajectoryStore
    from guiagent.errors import ConfigError
    from guiagent.eval.report import table, write_report
    from guiagent.farm.specs import EpisodeSpec

    tasks = list(tasks)
    if not tasks:
        raise ConfigError(f"{protocol}: no tasks to evaluate")
    reference, score_key = PROTOCOLS.get(protocol, ("the env's own checker (Env.evaluate) on the farm",
                                                    "success_rate"))
    version = agent.model if agent.kind == "policy" else agent.kind
    run = f"eval-{protocol}-{uuid.uuid4().hex[:10]}"  # fresh ids: the farm would return a stored earlier run
    specs = [EpisodeSpec(f"{run}-{i:04d}", task, agent, kind=kind, policy_version=version, require_done=require_done,
                         max_steps=task.max_steps if max_steps is None else min(max_steps, task.max_steps))
             for i, task in enumerate(tasks)]
    start = time.perf_counter()
    results = client.run(specs, timeout=timeout)
    wall = time.perf_counter() - start
    store = TrajectoryStore(client.config.store_url, client.config.store_options)
    episodes = [store.get(r.episode_id) if r.status != "error" and r.episode_id in store
                else _error_trajectory(s.task, r, version) for s, r in zip(specs, results)]

    metrics = online_metrics(episodes)
    rewards_by_template: dict[str, list[float]] = defaultdict(list)
    for e in episodes:
        rewards_by_template[e.info.get("template") or e.task_id].append(e.outcome.reward)
    metrics.update(
        mean_reward=sum(e.outcome.reward for e in episodes) / len(episodes),
        mean_reward_per_template={t: sum(v) / len(v) for t, v in sorted(rewards_by_template.items())},
        errors=sum(e.outcome.status.value == "error" for e in episodes),
        retries=sum(r.retries for r in results),
        wall_seconds=round(wall, 2),
        episodes_per_minute=round(60 * len(episodes) / wall, 2) if wall > 0 else None,
    )
    metrics["score"] = metrics[score_key]
    rows = [{**episode_row(e), "episode_id": e.episode_id, "template": e.info.get("template") or e.task_id,
             "seed": e.seed, "status": e.outcome.status.value, "reward": e.outcome.reward, "env_id": e.env_id,
             "retries": r.retries, "reason": e.outcome.message} for e, r in zip(episodes, results)]
    failures = [row for row in rows if not row["success"]]
    report = {
        "protocol": protocol, "reference": reference, "dataset": protocol, "split": None,
        "source": f"farm at {client.config.broker_url.split('@')[-1]}, '{kind}' devices",
        "unit": "episodes", "count": len(episodes),
        # The offline reports' counters, read for episodes: an episode without a result is "missing".
        "missing_predictions": metrics["errors"], "parse_failures": metrics["parse_failures"],
        "invalid_prediction_lines": 0, "unmatched_predictions": 0, "skipped_invalid_records": 0,
        "predictions": f"agent {agent.kind}" + (f" ({agent.model} at {agent.url})" if agent.kind == "policy" else ""),
        "agent": {"kind": agent.kind, "model": agent.model, "url": agent.url, "policy_version": version},
        "kind": kind, "max_steps": max_steps, "require_done": require_done, "run": run,
        "notes": [f"score ({score_key}): {metrics['score']:.4f}", (f"wall time: {wall:.1f} s for {len(episodes)} "
                  f"episodes; {metrics['errors']} errors, {metrics['retries']} re-runs after device failures")],
        "metrics": metrics, "episodes": rows,
        "tables": [
            table("Summary", ["episodes", "score", "success rate", "mean over templates", "mean reward",
                              "mean steps", "errors", "wall s"],
                  [[len(episodes), metrics["score"], metrics["success_rate"], metrics["template_success_rate"],
                    metrics["mean_reward"], metrics["mean_steps"], metrics["errors"], round(wall, 1)]])
            | {"percent": False},
            table("Per template", ["template", "success rate", "mean reward", "episodes"],
                  [[t, rate, metrics["mean_reward_per_template"][t], len(rewards_by_template[t])]
                   for t, rate in metrics["per_template"].items()]) | {"percent": False},
            table("Episodes", ["task", "status", "reward", "steps", "parse failures", "retries", "seconds", "device"],
                  [[row["task"], row["status"], row["reward"], row["steps"], row["parse_failures"], row["retries"],
                    row["seconds"], row["env_id"]] for row in rows]) | {"percent": False},
            table("Failures", ["task", "status", "steps", "reason"],
                  [[row["task"], row["status"], row["steps"], row["reason"] or "-"] for row in failures])
            | {"percent": False},
        ],
    }
    write_report(report, out_dir)
    return report
