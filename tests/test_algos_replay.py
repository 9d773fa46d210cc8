"""ARPO replay buffer, task selection and UI-S1 dynamic sampling."""

from __future__ import annotations

import json

import pytest
import torch

from guiagent.algos import AdvantageBatch, get_advantage
from guiagent.algos.filters import dynamic_sampling_mask, select_tasks_by_success
from guiagent.algos.replay import ReplayBuffer
from guiagent.errors import DataError
from guiagent.types import Action, EpisodeStatus, Observation, Outcome, Step, Trajectory


def traj(episode_id: str, task_id: str = "SettingsToggleWifi/0", logprob: float = -0.5) -> Trajectory:
    obs = Observation(width=1080, height=2400, screenshot=b"\x89PNG fake bytes", a11y_tree="<hierarchy/>")
    step = Step(index=0, observation=obs, action=Action.click(10, 20), response="<action>click</action>",
                reward=0.0, logprobs=(logprob, logprob))
    return Trajectory(episode_id=episode_id, task_id=task_id, seed=3, env_id="sim-0", policy_version="step-1",
                      steps=(step,), outcome=Outcome(EpisodeStatus.SUCCESS, 1.0))


def group(n: int, task_id: str = "SettingsToggleWifi/0") -> list[Trajectory]:
    return [traj(f"new-{i}", task_id) for i in range(n)]


def test_only_successes_are_stored_fifo_per_task():
    buffer = ReplayBuffer(capacity=8)
    assert not buffer.add(traj("fail"), 0.1)  # reward must exceed 0.1
    for i in range(10):
        assert buffer.add(traj(f"ok-{i}"), 1.0)
    assert not buffer.add(traj("ok-9"), 1.0)  # the same episode is not stored twice
    buffer.add(traj("other", task_id="ContactsAdd/1"), 0.5)
    # Capacity 8: the two oldest (ok-0, ok-1) were dropped.
    assert [e.trajectory.episode_id for e in buffer.successes("SettingsToggleWifi/0")] == [f"ok-{i}" for i in range(2, 10)]
    assert len(buffer) == 9


def test_all_failure_group_gets_the_newest_success_in_its_last_member():
    buffer = ReplayBuffer()
    buffer.add(traj("old-success"), 1.0)
    buffer.add(traj("new-success"), 0.8)
    members = group(4)
    out = buffer.inject(members, [0.0, 0.0, 0.0, 0.0])
    # All-failure (std 0 < 0.05, mean 0 < 0.2): the newest success replaces the last lowest member.
    assert out.replaced == 3 and out.stale == (3,)
    assert [t.episode_id for t in out.trajectories] == ["new-0", "new-1", "new-2", "new-success"]
    assert out.rewards == (0.0, 0.0, 0.0, 0.8)
    assert buffer.injections == 1
    # After injection GRPO has a signal: [0, 0, 0, 0.8]: mean 0.2, std 0.4 → [-0.5, -0.5, -0.5, 1.5].
    batch = AdvantageBatch(torch.tensor(out.rewards), torch.zeros(4, dtype=torch.long), torch.arange(4),
                           torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.bool))
    assert get_advantage("grpo")(batch).tolist() == pytest.approx([-0.5, -0.5, -0.5, 1.5], abs=1e-5)


def test_lowest_member_is_replaced_last_on_ties():
    buffer = ReplayBuffer()
    buffer.add(traj("s"), 1.0)
    # [0, 0.05, 0, 0.05]: mean 0.025, population std = sqrt(4·0.025²/4) = 0.025 < 0.05 → all-failure;
    # the lowest reward 0 is at indices 0 and 2 → index 2.
    assert buffer.inject(group(4), [0.0, 0.05, 0.0, 0.05]).replaced == 2


def test_mixed_and_low_but_not_failing_groups_are_untouched():
    buffer = ReplayBuffer()
    buffer.add(traj("s"), 1.0)
    members = group(4)
    for rewards in ([0.0, 1.0, 0.0, 0.0],  # mixed: std 0.5
                    [0.3, 0.3, 0.3, 0.3],  # std 0 but mean 0.3 ≥ 0.2
                    [0.0, 0.1, 0.0, 0.1]):  # mean 0.05 but population std exactly 0.05, not < 0.05
        out = buffer.inject(members, rewards)
        assert out.replaced is None and out.stale == ()
        assert out.trajectories == tuple(members) and out.rewards == tuple(rewards)
    assert buffer.injections == 0


def test_all_failure_uses_population_std_as_in_arpo():
    buffer = ReplayBuffer()
    buffer.add(traj("s"), 1.0)
    # ARPO's released code tests np.std (ddof=0) < 0.05 and mean < 0.2.
    # [0, 0, 0.09]: mean 0.03, deviations -0.03, -0.03, 0.06, squares sum 0.0009 + 0.0009 + 0.0036 = 0.0054;
    #   population std = sqrt(0.0054/3) = sqrt(0.0018) = 0.04243 < 0.05 → all-failure, and the last
    #   lowest member (index 1) is replaced;
    #   Bessel std = sqrt(0.0054/2) = sqrt(0.0027) = 0.05196 would have said "not all-failure".
    assert buffer.is_all_failure([0.0, 0.0, 0.09])
    assert buffer.inject(group(3), [0.0, 0.0, 0.09]).replaced == 1
    # Just above the threshold: [0, 0, 0.11]: mean 0.03667, deviations -0.03667, -0.03667, 0.07333,
    #   squares sum 0.0013444 + 0.0013444 + 0.0053778 = 0.0080667;
    #   population std = sqrt(0.0080667/3) = sqrt(0.0026889) = 0.05185 ≥ 0.05 → not all-failure.
    assert not buffer.is_all_failure([0.0, 0.0, 0.11])
    assert buffer.inject(group(3), [0.0, 0.0, 0.11]).replaced is None
    # One member: population std 0, so a lone failure is all-failure and a lone success (mean ≥ 0.2) is not.
    assert buffer.is_all_failure([0.0]) and not buffer.is_all_failure([1.0])


def test_no_stored_success_or_disabled_leaves_group_alone():
    assert ReplayBuffer().inject(group(2), [0.0, 0.0]).replaced is None
    off = ReplayBuffer(enabled=False)
    assert not off.add(traj("s"), 1.0)
    assert off.inject(group(2), [0.0, 0.0]).replaced is None


def test_group_checks():
    buffer = ReplayBuffer()
    with pytest.raises(DataError, match="mixes tasks"):
        buffer.inject([traj("a"), traj("b", task_id="other")], [0, 0])
    with pytest.raises(DataError, match="2 trajectories but 1 rewards"):
        buffer.inject(group(2), [0.0])
    with pytest.raises(DataError, match="empty"):
        buffer.add_group([], [])


def test_json_round_trip_for_checkpoints():
    buffer = ReplayBuffer(capacity=3)
    buffer.add_group([traj("a"), traj("b")], [1.0, 0.0])
    buffer.add(traj("c", task_id="ContactsAdd/1"), 0.5)
    buffer.inject(group(2), [0.0, 0.0])
    text = json.dumps(buffer.to_json())  # plain JSON, no pickle
    restored = ReplayBuffer.from_json(json.loads(text))
    assert restored.to_json() == buffer.to_json()
    assert restored.successes("SettingsToggleWifi/0")[0].trajectory == traj("a")
    assert restored.injections == 1 and restored.capacity == 3
    # The restored buffer keeps its FIFO capacity.
    for i in range(3):
        restored.add(traj(f"x{i}"), 1.0)
    assert [e.trajectory.episode_id for e in restored.successes("SettingsToggleWifi/0")] == ["x0", "x1", "x2"]


def test_from_json_rejects_bad_state():
    state = ReplayBuffer().to_json()
    with pytest.raises(DataError, match="unknown"):
        ReplayBuffer.from_json({**state, "extra": 1})
    with pytest.raises(DataError, match="version"):
        ReplayBuffer.from_json({**state, "version": 99})
    with pytest.raises(DataError, match=r"T\[0\]"):
        ReplayBuffer.from_json({**state, "tasks": {"T": [{"reward": 1.0, "trajectory": {"episode_id": 1}}]}})


def test_task_selection_keeps_tasks_solved_at_least_once():
    tries = {"easy": [1.0, 0.0, 1.0], "never": [0.0, 0.1, 0.0], "once": [0.0, 0.0, 0.5]}
    assert select_tasks_by_success(tries) == ["easy", "once"]
    assert select_tasks_by_success(tries, min_successes=2) == ["easy"]


def _rollouts(groups):
    rows, traj = [], 0
    for g, trajs in enumerate(groups):
        for rewards in trajs:
            rows += [(g, traj, s, r) for s, r in enumerate(rewards)]
            traj += 1
    g, t, s, r = zip(*rows)
    n = len(rows)
    return AdvantageBatch(torch.tensor(r), torch.tensor(g), torch.tensor(t), torch.tensor(s),
                          torch.ones(n, dtype=torch.bool), matched=torch.tensor([x >= 1.0 for x in r]))


def test_dynamic_sampling_keeps_tasks_with_spread():
    batch = _rollouts([
        [[1.0], [0.0], [1.0], [0.0]],  # totals std = sqrt(4·0.25/3) = 0.577 > 0.3 → keep
        [[1.0], [1.0], [1.0], [0.8]],  # std = sqrt((3·0.05² + 0.15²)/3) = 0.1 → drop
        [[1.0, 1.0]],                  # one rollout: std 0 → drop
    ])
    mask = dynamic_sampling_mask(batch)
    assert mask.tolist() == [True] * 4 + [False] * 6
    assert len(batch.select(mask)) == 4
    assert dynamic_sampling_mask(batch, eta=0.05).tolist() == [True] * 8 + [False] * 2


def test_dynamic_sampling_on_first_step_return():
    # Two rollouts of one task; totals 1.5 and 1.5 (std 0) but UI-S1 returns at step 0 differ:
    # rollout 0: rewards [1, 0.5], step 1 mismatched → R0 = 1 + 0.5·0.5 = 1.25
    # rollout 1: rewards [0.5, 1], step 0 mismatched → R0 = 0.5. std = 0.75/√2 = 0.53 > 0.3.
    batch = _rollouts([[[1.0, 0.5], [0.5, 1.0]]])
    assert dynamic_sampling_mask(batch).tolist() == [False] * 4
    assert dynamic_sampling_mask(batch, score="first_return").tolist() == [True] * 4
