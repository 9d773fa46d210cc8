"""Rollout sources: the one interface the trainer draws rewarded groups from, whatever produces them.

``source.collect(policy, step, policy_version) -> RolloutBatch`` gives the groups of update ``step``:

- :class:`OfflineSource` — semi-online (UI-S1), hierarchical (Hi-Agent) or grounding rollouts over expert
  data, sampled by ``policy`` (the trainer's in-process model or a vLLM client);
- :class:`OnlineSource` — GRPO groups of episodes on the farm, played by the served policy.

Which items an update uses is a function of the seed and the step alone (a seeded permutation per epoch),
and so is the sampling seed, so a resumed run draws exactly the groups the killed one would have drawn.
The trainer sees only this module, never one kind's internals.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from guiagent.errors import ConfigError
from guiagent.types import Task, Trajectory


@dataclass
class RolloutBatch:
    """The rewarded groups of one update.

    Attributes:
        groups: G-member groups (trajectories with rewards on their steps).
        image_root: Where the groups' store-relative screenshot paths resolve.
        metrics: Rollout metrics (mean reward, success, episodes, dropped groups, ...).
        stale: Per group, the members sampled by an older policy (ARPO replay), whose log-probs were recomputed.
        demonstrations: For SFT (:class:`ExpertSource`): expert trajectories to imitate instead of groups.
        recorded: The groups are in the run's trajectory store already (the farm's workers wrote them).
    """

    groups: list[list[Trajectory]]
    image_root: str | os.PathLike | None
    metrics: dict[str, float] = field(default_factory=dict)
    stale: list[tuple[int, ...]] = field(default_factory=list)
    demonstrations: list[Trajectory] | None = None
    recorded: bool = False


def epoch_order(n: int, count: int, step: int, seed: int) -> list[int]:
    """Indices ``[step·count, (step+1)·count)`` of the endless sequence of seeded permutations of ``range(n)``
    (one permutation per epoch), i.e. the items update ``step`` uses."""
    if n <= 0:
        raise ConfigError("a rollout source needs at least one item")
    out = []
    for position in range(step * count, (step + 1) * count):
        epoch, offset = divmod(position, n)
        order = list(range(n))
        random.Random(f"rollout-order:{seed}:{epoch}").shuffle(order)
        out.append(order[offset])
    return out


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def batch_metrics(groups: Sequence[Sequence[Trajectory]]) -> dict[str, float]:
    """Mean step reward, mean episode return, task success rate and sizes of ``groups``."""
    from guiagent.types import EpisodeStatus

    trajectories = [t for group in groups for t in group]
    steps = [s for t in trajectories for s in t.steps]
    judged = [t for t in trajectories if t.outcome is not None and t.outcome.status != EpisodeStatus.ERROR]
    return {
        "groups": float(len(groups)),
        "trajectories": float(len(trajectories)),
        "steps": float(len(steps)),
        "reward_mean": _mean([s.reward or 0.0 for s in steps]),
        "return_mean": _mean([sum(s.reward or 0.0 for s in t.steps) for t in trajectories]),
        "success_rate": _mean([1.0 if t.outcome.status == EpisodeStatus.SUCCESS else 0.0 for t in judged]),
        "parse_failure_rate": _mean([1.0 if s.parse_error else 0.0 for s in steps]),
    }


class ExpertSource:
    """Expert trajectories to imitate (rollout kind ``sft``): ``per_step`` of them per update, nothing sampled.

    Args:
        experts: Expert trajectories.
        image_root: Where their screenshot paths resolve.
        per_step: Trajectories per update.
        seed: Seeds their order.
    """

    def __init__(self, experts: Sequence[Trajectory], image_root: str | os.PathLike | None, per_step: int, seed: int):
        if not experts:
            raise ConfigError("sft needs expert data, and there is none")
        self.experts, self.image_root, self.per_step, self.seed = list(experts), image_root, per_step, seed

    def collect(self, policy: Any, step: int, policy_version: str) -> RolloutBatch:
        chosen = [self.experts[i] for i in epoch_order(len(self.experts), self.per_step, step, self.seed)]
        return RolloutBatch([], self.image_root, {"steps": float(sum(map(len, chosen)))}, demonstrations=chosen)


class OfflineSource:
    """Groups sampled over expert data: ``kind`` is ``semi_online``, ``hierarchical`` or ``grounding``.

    Args:
        kind: The rollout kind.
        experts: Expert trajectories (grounding: single-step samples).
        config: That kind's config (:class:`~guiagent.rollout.semi_online.SemiOnlineConfig`, ...).
        image_root: Where the experts' screenshot paths resolve.
        per_step: Expert trajectories (or samples) per update.
        seed: Seeds the order of the experts and the sampling.
    """

    def __init__(self, kind: str, experts: Sequence[Trajectory], config: Any, image_root: str | os.PathLike | None,
                 per_step: int, seed: int):
        from guiagent.rollout.grounding import grounding_rollouts
        from guiagent.rollout.hierarchical import hierarchical_rollouts
        from guiagent.rollout.semi_online import semi_online_rollouts

        runs: dict[str, Callable[..., list[list[Trajectory]]]] = {
            "semi_online": semi_online_rollouts, "hierarchical": hierarchical_rollouts,
            "grounding": grounding_rollouts}
        if kind not in runs:
            raise ConfigError(f"offline rollout kind must be one of {sorted(runs)}, got {kind!r}")
        if not experts:
            raise ConfigError(f"{kind} rollouts need expert data, and there is none")
        self.kind, self.run, self.experts, self.config = kind, runs[kind], list(experts), config
        self.image_root, self.per_step, self.seed = image_root, per_step, seed

    def collect(self, policy: Any, step: int, policy_version: str) -> RolloutBatch:
        chosen = [self.experts[i] for i in epoch_order(len(self.experts), self.per_step, step, self.seed)]
        config = self.config.model_copy(update={"seed": self.seed * 1_000_003 + step})
        groups = self.run(policy, chosen, config, image_root=self.image_root, policy_version=policy_version)
        return RolloutBatch(groups, self.image_root, batch_metrics(groups))


class OnlineSource:
    """GRPO groups of whole episodes on the farm (:func:`guiagent.rollout.online.collect_groups`).

    Args:
        client: The farm.
        store: The trajectory store its workers write to.
        tasks: The training tasks; ``per_step`` of them per update, one group each.
        agent: ``policy_version -> AgentSpec`` (the served policy's name can change with each version).
        config: :class:`~guiagent.rollout.online.OnlineConfig`.
        buffer: ARPO replay buffer (or None).
        rescore: Recomputes stale log-probs under the current policy (needed with replay).
        per_step: Tasks per update.
        seed: Seeds the task order.
    """

    def __init__(self, client: Any, store: Any, tasks: Sequence[Task], agent: Callable[[str], Any], config: Any, *,
                 buffer: Any = None, rescore: Any = None, per_step: int, seed: int):
        if not tasks:
            raise ConfigError("online rollouts need training tasks, and there are none")
        self.client, self.store, self.tasks, self.agent, self.config = client, store, list(tasks), agent, config
        self.buffer, self.rescore, self.per_step, self.seed = buffer, rescore, per_step, seed

    def collect(self, policy: Any, step: int, policy_version: str) -> RolloutBatch:
        from guiagent.rollout.online import collect_groups, summary

        tasks = [self.tasks[i] for i in epoch_order(len(self.tasks), self.per_step, step, self.seed)]
        batch = collect_groups(self.client, self.store, tasks, self.agent(policy_version), self.config,
                               policy_version=policy_version, buffer=self.buffer, rescore=self.rescore)
        info = summary(batch)
        metrics = {**batch_metrics(batch.groups), "rounds": float(info["rounds"]),
                   "injected": float(info["injected"]), "dropped_groups": float(len(info["dropped"]))}
        return RolloutBatch(batch.groups, self.store.url, metrics, stale=list(batch.stale), recorded=True)


__all__ = ["ExpertSource", "OfflineSource", "OnlineSource", "RolloutBatch", "batch_metrics", "epoch_order"]
