"""Online evaluation: play tasks on a live env through the one agent loop and aggregate the env's verdicts.

Success is the env's own judgement (``Env.evaluate``: the device state or the benchmark's checker), never
the agent's claim. The aggregate follows AndroidWorld's: the success rate per task template, then the mean
over templates, so a template with many seeds does not outweigh one with few.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from guiagent.agent import Agent, run_episode
from guiagent.envs.base import Env
from guiagent.types import Task, Trajectory


def run_online(
    env: Env,
    tasks: Iterable[Task],
    agent: Agent,
    *,
    policy_version: str,
    max_steps: int | None = None,
    require_done: bool = False,
    store: Any = None,
) -> list[Trajectory]:
    """Play every task once on ``env`` with ``agent``.

    Args:
        env: The device.
        tasks: The tasks, in order.
        agent: Who plays.
        policy_version: Recorded on every trajectory; episode ids are ``{policy_version}-{template}-{seed}``.
        max_steps: Step budget per episode, capped by each task's own ``max_steps`` (None: the task's).
        require_done: Success only when the agent declared the task done (AndroidWorld's protocol).
        store: A :class:`guiagent.data.store.TrajectoryStore` to write each episode to as it ends.

    Returns:
        The trajectories, in task order.
    """
    episodes = []
    for task in tasks:
        budget = task.max_steps if max_steps is None else min(max_steps, task.max_steps)
        trajectory = run_episode(env, task, agent, max_steps=budget, require_done=require_done,
                                 episode_id=f"{policy_version}-{task.template}-{task.seed}",
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
