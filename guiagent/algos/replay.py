"""ARPO experience replay (arXiv 2505.16282): successes kept per task, injected into all-failure groups.

An online GRPO group whose G episodes all fail has no reward spread, hence zero advantages and no
learning signal. ARPO keeps each task's recent successful trajectories and, when a group is all-failure,
swaps one of them in, so the group has a success to learn from::

    injection = buffer.inject(group, rewards)      # before advantages are computed
    buffer.add_group(group, rewards)               # remember this group's own successes
    # recompute old log-probs for injection.trajectories[i] for i in injection.stale

The injected trajectory was sampled by an older policy: its ``Step.logprobs`` are stale, and the
trainer must recompute old log-probs for it under the current policy before the PPO ratio is formed
(ARPO does the same). The buffer stores whole :class:`~guiagent.types.Trajectory` objects so that the
prompts and responses needed for that recomputation are at hand. It serialises to JSON for checkpoints,
never pickle.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from guiagent.errors import DataError
from guiagent.types import Trajectory

_JSON_VERSION = 1


@dataclass(frozen=True)
class ReplayEntry:
    """One stored success: the trajectory and the reward it earned."""

    trajectory: Trajectory
    reward: float


@dataclass(frozen=True)
class Injection:
    """A group after :meth:`ReplayBuffer.inject`.

    Attributes:
        trajectories: The G trajectories, one possibly replaced.
        rewards: Their G rewards.
        replaced: Index of the member that was replaced, or None when the group is untouched.
        stale: Indices whose old log-probs the trainer must recompute (the injected member, if any).
    """

    trajectories: tuple[Trajectory, ...]
    rewards: tuple[float, ...]
    replaced: int | None = None

    @property
    def stale(self) -> tuple[int, ...]:
        return () if self.replaced is None else (self.replaced,)


class ReplayBuffer:
    """Per-task FIFO of successful trajectories.

    Args:
        capacity: Successes kept per task; the oldest is dropped first (ARPO: 8).
        success_threshold: A trajectory is a success when its reward exceeds this (ARPO: 0.1).
        fail_std: A group is all-failure when its rewards' population std is below this (ARPO: 0.05) ...
        fail_mean: ... and its mean reward is below this (ARPO: 0.2).
        enabled: False turns replay off completely: nothing is stored and no group is changed.
            (ARPO's released code reads a replay flag but replays regardless; here the switch works.)
    """

    def __init__(
        self,
        capacity: int = 8,
        success_threshold: float = 0.1,
        fail_std: float = 0.05,
        fail_mean: float = 0.2,
        enabled: bool = True,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.success_threshold = success_threshold
        self.fail_std = fail_std
        self.fail_mean = fail_mean
        self.enabled = enabled
        self._tasks: dict[str, deque[ReplayEntry]] = {}
        self.injections = 0  # exported as a training metric

    def __len__(self) -> int:
        return sum(len(q) for q in self._tasks.values())

    def successes(self, task_id: str) -> tuple[ReplayEntry, ...]:
        """The stored successes of ``task_id``, oldest first."""
        return tuple(self._tasks.get(task_id, ()))

    def add(self, trajectory: Trajectory, reward: float) -> bool:
        """Store ``trajectory`` if it is a success and not already stored; returns whether it was stored."""
        if not self.enabled or not reward > self.success_threshold:
            return False
        queue = self._tasks.setdefault(trajectory.task_id, deque(maxlen=self.capacity))
        if any(e.trajectory.episode_id == trajectory.episode_id for e in queue):
            return False
        queue.append(ReplayEntry(trajectory, float(reward)))
        return True

    def add_group(self, trajectories: Sequence[Trajectory], rewards: Sequence[float]) -> int:
        """:meth:`add` every member; returns how many were stored."""
        _check_group(trajectories, rewards)
        return sum(self.add(t, r) for t, r in zip(trajectories, rewards))

    def is_all_failure(self, rewards: Sequence[float]) -> bool:
        """ARPO's test (arXiv 2505.16282): population std < ``fail_std`` and mean < ``fail_mean``.

        The std is the population std (divide by G, one member has std 0), as in the released code's
        ``np.std`` (dvlab-research/ARPO, ``RayPPOTrainer.apply_replay``), not the Bessel std that the
        advantages use. It matters near the threshold: [0, 0, 0.09] has population std 0.0424 (all-failure)
        but Bessel std 0.0520 (not).
        """
        return statistics.pstdev(rewards) < self.fail_std and statistics.fmean(rewards) < self.fail_mean

    def inject(self, trajectories: Sequence[Trajectory], rewards: Sequence[float]) -> Injection:
        """Swap one stored success into an all-failure group; leave any other group untouched.

        Decided deterministically: the newest stored success of the group's task (the one sampled by
        the most recent policy, so its importance ratios are the least stale) replaces the member with
        the lowest reward, the last such member on ties (in an all-failure group, usually the last).

        Args:
            trajectories: The G trajectories of one group (same task).
            rewards: Their rewards.

        Returns:
            The group, with ``replaced`` set when a member was swapped.

        Raises:
            DataError: the group is empty, mixes tasks, or ``rewards`` has a different length.
        """
        _check_group(trajectories, rewards)
        group = Injection(tuple(trajectories), tuple(float(r) for r in rewards))
        if not self.enabled or not self.is_all_failure(group.rewards):
            return group
        stored = self._tasks.get(trajectories[0].task_id)
        if not stored:
            return group
        newest = stored[-1]
        low = min(group.rewards)
        index = max(i for i, r in enumerate(group.rewards) if r == low)
        self.injections += 1
        trajs = list(group.trajectories)
        rews = list(group.rewards)
        trajs[index], rews[index] = newest.trajectory, newest.reward
        return Injection(tuple(trajs), tuple(rews), replaced=index)

    def to_json(self, transform: Callable[[Trajectory], Trajectory] | None = None) -> dict[str, Any]:
        """JSON-compatible state for a checkpoint (settings, stored successes, counters); ``transform`` is
        applied to each stored trajectory first (e.g. to refer to screenshots by store path only)."""
        transform = transform or (lambda trajectory: trajectory)
        return {
            "version": _JSON_VERSION,
            "capacity": self.capacity,
            "success_threshold": self.success_threshold,
            "fail_std": self.fail_std,
            "fail_mean": self.fail_mean,
            "enabled": self.enabled,
            "injections": self.injections,
            "tasks": {
                task: [{"reward": e.reward, "trajectory": transform(e.trajectory).to_json()} for e in queue]
                for task, queue in self._tasks.items()
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReplayBuffer:
        """Rebuild a buffer from :meth:`to_json` output.

        Raises:
            DataError: a key is missing or unknown, the version is unsupported, or a trajectory is invalid.
        """
        expected = {"version", "capacity", "success_threshold", "fail_std", "fail_mean", "enabled", "injections", "tasks"}
        if not isinstance(data, Mapping) or set(data) != expected:
            got = set(data) if isinstance(data, Mapping) else set()
            raise DataError(f"replay buffer state: missing {sorted(expected - got)}, unknown {sorted(got - expected)}")
        if data["version"] != _JSON_VERSION:
            raise DataError(f"replay buffer state: unsupported version {data['version']!r}")
        buffer = cls(data["capacity"], data["success_threshold"], data["fail_std"], data["fail_mean"], data["enabled"])
        buffer.injections = int(data["injections"])
        for task, entries in data["tasks"].items():
            queue = buffer._tasks.setdefault(task, deque(maxlen=buffer.capacity))
            for i, entry in enumerate(entries):
                try:
                    queue.append(ReplayEntry(Trajectory.from_json(entry["trajectory"]), float(entry["reward"])))
                except (KeyError, TypeError, ValueError) as exc:
                    raise DataError(f"replay buffer state: bad entry: {exc}", record=f"{task}[{i}]") from exc
        return buffer


def _check_group(trajectories: Sequence[Trajectory], rewards: Sequence[float]) -> None:
    if not trajectories:
        raise DataError("empty group")
    if len(trajectories) != len(rewards):
        raise DataError(f"group has {len(trajectories)} trajectories but {len(rewards)} rewards")
    task = trajectories[0].task_id
    for t in trajectories:
        if t.task_id != task:
            raise DataError(f"group mixes tasks {task!r} and {t.task_id!r}", record=t.episode_id)
