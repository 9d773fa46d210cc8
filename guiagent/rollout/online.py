"""Online GRPO groups on the farm: G episodes per task, one seed, G devices, the served policy.

For a batch of tasks the farm plays ``group_size`` episodes of each (same task, same seed, so the same
initial screen on every device), each with the policy version being trained; the device workers record
per-step token ids and log-probs from the policy server and write the trajectories to the store. What comes
back is the same thing every rollout kind produces: groups of rewarded trajectories.

Options, each switchable:
- **Task selection** (ARPO, arXiv 2505.16282): :func:`select_tasks` keeps the tasks the base policy
  solves at least once in k tries.
- **Dynamic sampling**: a group whose episode rewards do not vary carries no GRPO signal; it is played
  again, up to ``max_regenerations`` times, and dropped if it still does not vary.
- **Experience replay** (ARPO): an all-failure group gets one stored success of its task injected (before
  advantages), the buffer takes the fresh batch's successes, and the injected trajectories' stale
  log-probs are recomputed by the current policy through ``rescore`` (the trainer's
  :func:`guiagent.trainer.update.recompute_logprobs`) — it is an error to replay without it.

Rewards come from the reward registry (:class:`~guiagent.rewards.registry.RewardConfig`): the episode reward
(default ``task_success``: the env's verdict, never the agent's claim) is placed on the last step; each step
earns the optional ``step_reward`` on top (e.g. a format reward), so a trajectory's total is its task reward
plus its step rewards (GRPO over episodes).
"""

from __future__ import annotations

import dataclasses
import statistics
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from guiagent.algos.filters import select_tasks_by_success
from guiagent.algos.replay import ReplayBuffer
from guiagent.config import StrictModel
from guiagent.data.store import TrajectoryStore
from guiagent.errors import ConfigError, FarmError
from guiagent.farm.client import FarmClient
from guiagent.farm.specs import AgentSpec, EpisodeResult
from guiagent.rewards import RewardInput, extract_think
from guiagent.rewards.registry import RewardConfig
from guiagent.rewards.scoring import Rewarder
from guiagent.types import Task, Trajectory

Rescore = Callable[[list[Trajectory]], list[Trajectory]]


class OnlineConfig(StrictModel):
    """Online GRPO groups on the farm."""

    group_size: int = Field(4, ge=1, description="G: episodes per task, each on its own device, one seed.")
    kind: Literal["sim", "android", "osworld", "web"] = Field("sim", description="Device kind that plays them.")
    max_steps: int | None = Field(None, ge=1, description="Step budget per episode (None: the task's).")
    require_done: bool = Field(False, description="Success only when the agent declared the task done (AndroidWorld).")
    timeout: float = Field(3600.0, gt=0, description="Seconds to wait for one round of groups.")
    dynamic_sampling: bool = Field(False, description="Play again groups whose rewards do not vary.")
    min_reward_std: float = Field(0.0, ge=0, description="A group varies when its reward std exceeds this.")
    max_regenerations: int = Field(2, ge=0, description="Extra rounds for groups that do not vary, then they are dropped.")
    reward: RewardConfig = Field(default_factory=lambda: RewardConfig(name="task_success"),
                                 description="Episode reward (registered; it gets the env's Outcome), on the last step.")
    step_reward: RewardConfig | None = Field(None, description="Optional registered reward of every step's response.")


@dataclass
class OnlineBatch:
    """What one call of :func:`collect_groups` returns.

    Attributes:
        groups: The kept groups (G trajectories each; with replay, one may be an injected stored success).
        tasks: The task of each group.
        stale: Per group, the members whose log-probs were recomputed (injected from the buffer).
        dropped: Task ids whose group never varied (dynamic sampling).
        rounds: Rounds played (1 + regenerations).
        results: Every episode result received, in arrival order.
    """

    groups: list[list[Trajectory]] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    stale: list[tuple[int, ...]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    rounds: int = 0
    results: list[EpisodeResult] = field(default_factory=list)

    @property
    def rewards(self) -> list[list[float]]:
        return [[episode_reward(t) for t in group] for group in self.groups]


def episode_reward(trajectory: Trajectory) -> float:
    """A trajectory's total reward (its steps' rewards)."""
    return float(sum(s.reward or 0.0 for s in trajectory.steps))


def assign_rewards(trajectory: Trajectory, episode: Rewarder, step: Rewarder | None = None) -> Trajectory:
    """The trajectory with its rewards: ``episode``'s reward of the outcome on the last step, plus ``step``'s
    reward of each step's own response when given (0 otherwise)."""
    steps = trajectory.steps
    if not steps:
        return trajectory
    samples = [RewardInput(response=s.response, action=s.action, parse_error=s.parse_error,
                           screen_size=(s.observation.width, s.observation.height),
                           think=extract_think(s.response)) for s in steps]
    per_step = step.score(samples) if step is not None else [0.0] * len(steps)
    final = episode.score([dataclasses.replace(samples[-1], outcome=trajectory.outcome)])[0]
    rewards = [r + (final if i == len(steps) - 1 else 0.0) for i, r in enumerate(per_step)]
    return dataclasses.replace(trajectory, steps=tuple(dataclasses.replace(s, reward=r) for s, r in zip(steps, rewards)))


def play_groups(client: FarmClient, store: TrajectoryStore, tasks: Sequence[Task], agent: AgentSpec,
                config: OnlineConfig, policy_version: str) -> tuple[list[list[Trajectory]], list[EpisodeResult]]:
    """One round: a group of ``config.group_size`` episodes per task on the farm, read back from the store.

    Raises:
        FarmError: an episode ended without a stored trajectory (an error result: device or policy failure).
    """
    handles = []
    for task in tasks:
        group = f"{policy_version}-{uuid.uuid4().hex[:10]}"
        handles.append(client.submit_group(task, agent, config.group_size, group=group, kind=config.kind,
                                           max_steps=config.max_steps, policy_version=policy_version,
                                           require_done=config.require_done))
    results = list(client.results([h for group in handles for h in group], timeout=config.timeout))
    failed = [r for r in results if r.status == "error"]
    if failed:
        raise FarmError(f"{len(failed)} of {len(results)} episodes ended in an error, e.g. "
                        f"{failed[0].episode_id}: {failed[0].message}")
    episode = Rewarder(config.reward)
    step = Rewarder(config.step_reward) if config.step_reward is not None else None
    groups = [[assign_rewards(store.get(h.episode_id, with_images=True), episode, step) for h in group]
              for group in handles]
    return groups, results


def collect_groups(
    client: FarmClient,
    store: TrajectoryStore,
    tasks: Sequence[Task],
    agent: AgentSpec,
    config: OnlineConfig,
    *,
    policy_version: str,
    buffer: ReplayBuffer | None = None,
    rescore: Rescore | None = None,
) -> OnlineBatch:
    """Rewarded GRPO groups for ``tasks`` from the farm, with dynamic sampling and replay as configured.

    Args:
        client: The farm.
        store: The trajectory store the workers write to.
        tasks: One group per task.
        agent: The agent every episode uses (:func:`guiagent.farm.specs.policy_agent_spec` for a served policy).
        config: Group size, limits, dynamic sampling.
        policy_version: The weights that sample (recorded on every trajectory).
        buffer: ARPO replay buffer (None or disabled: no replay).
        rescore: Recomputes the log-probs of trajectories under the current policy (needed with replay).

    Raises:
        ConfigError: replay is on but no ``rescore`` was given.
        FarmError: an episode failed on the farm.
    """
    replaying = buffer is not None and buffer.enabled
    if replaying and rescore is None:
        raise ConfigError("experience replay needs rescore: stale log-probs of injected trajectories must be "
                          "recomputed by the current policy before the update")
    batch = OnlineBatch()
    pending = list(tasks)
    for round_index in range(config.max_regenerations + 1 if config.dynamic_sampling else 1):
        if not pending:
            break
        groups, results = play_groups(client, store, pending, agent, config, policy_version)
        batch.rounds += 1
        batch.results += results
        again = []
        for task, group in zip(pending, groups):
            rewards = [episode_reward(t) for t in group]
            if replaying:
                injection = buffer.inject(group, rewards)
                buffer.add_group(group, rewards)
                group, stale = list(injection.trajectories), injection.stale
                if stale:
                    fresh = rescore([group[i] for i in stale])
                    for i, trajectory in zip(stale, fresh):
                        group[i] = trajectory
                rewards = list(injection.rewards)
            else:
                stale = ()
            if config.dynamic_sampling and statistics.pstdev(rewards) <= config.min_reward_std:
                again.append(task)
                continue
            batch.groups.append(group)
            batch.tasks.append(task)
            batch.stale.append(stale)
        pending = again
    batch.dropped = [task.task_id for task in pending]
    return batch


def select_tasks(client: FarmClient, store: TrajectoryStore, tasks: Sequence[Task], agent: AgentSpec,
                 config: OnlineConfig, *, tries: int, policy_version: str = "base",
                 success_threshold: float = 0.1) -> tuple[list[Task], dict[str, list[float]]]:
    """ARPO's task selection: play each task ``tries`` times with the base policy and keep those solved at
    least once (:func:`guiagent.algos.filters.select_tasks_by_success`).

    Returns:
        ``(kept tasks, {task_id: rewards of its tries})``.
    """
    trial = config.model_copy(update={"group_size": tries, "dynamic_sampling": False})
    groups, _ = play_groups(client, store, tasks, agent, trial, policy_version)
    rewards = {task.task_id: [episode_reward(t) for t in group] for task, group in zip(tasks, groups)}
    kept = set(select_tasks_by_success(rewards, success_threshold=success_threshold))
    return [task for task in tasks if task.task_id in kept], rewards


def summary(batch: OnlineBatch) -> dict[str, Any]:
    """Headline numbers of a batch: groups, episodes, success rate, injected members, dropped tasks."""
    rewards = [r for group in batch.rewards for r in group]
    return {"groups": len(batch.groups), "episodes": len(rewards), "rounds": batch.rounds,
            "mean_reward": sum(rewards) / len(rewards) if rewards else None,
            "injected": sum(len(s) for s in batch.stale), "dropped": list(batch.dropped),
            "steps": sum(len(t) for group in batch.groups for t in group)}
