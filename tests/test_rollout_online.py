"""Online GRPO groups on the local farm: groups from one seed, dynamic sampling, ARPO replay with the
stale log-probs recomputed, task selection; and the trainer's log-prob recomputation itself."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from guiagent.agent import OracleAgent, run_episode
from guiagent.algos import AdvantageBatch, get_advantage
from guiagent.algos.replay import ReplayBuffer
from guiagent.data.store import TrajectoryStore
from guiagent.envs.sim.env import MobileSimEnv
from guiagent.envs.sim.tasks import make_task
from guiagent.errors import ConfigError
from guiagent.farm.client import FarmClient
from guiagent.farm.config import FarmConfig
from guiagent.farm.local import LocalFarm
from guiagent.farm.specs import AgentSpec
from guiagent.rewards.registry import RewardConfig
from guiagent.rewards.scoring import Rewarder
from guiagent.rollout.online import OnlineConfig, assign_rewards, collect_groups, select_tasks, summary

pytestmark = [pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs Debian's redis-server"),
              pytest.mark.timeout(300)]

TASKS = [make_task("SettingsToggleWifi", 1), make_task("ClockToggleAlarm", 2)]
RANDOM = AgentSpec("random", seed=5)


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    directory = tmp_path_factory.mktemp("farm")
    with LocalFarm(directory, sims=4, config=FarmConfig(store_url=str(directory / "trajectories")),
                   width=540, height=1200) as farm:
        with FarmClient(farm.config) as client:
            yield farm, client, TrajectoryStore(farm.config.store_url)


def test_groups_share_a_seed_and_carry_outcome_rewards(farm):
    _, client, store = farm
    config = OnlineConfig(group_size=4)
    batch = collect_groups(client, store, TASKS, AgentSpec("oracle"), config, policy_version="v7")
    assert [t.task_id for t in batch.tasks] == [t.task_id for t in TASKS] and batch.rounds == 1
    for task, group in zip(batch.tasks, batch.groups):
        assert len(group) == 4 and {t.task_id for t in group} == {task.task_id}
        assert len({t.steps[0].observation.screenshot for t in group}) == 1  # one initial screen
        assert all(t.policy_version == "v7" and t.info["group"] == group[0].info["group"] for t in group)
        assert all([s.reward for s in t.steps] == [0.0] * (len(t) - 1) + [1.0] for t in group)
    advantages = get_advantage("grpo")(AdvantageBatch.from_trajectories(batch.groups))
    assert advantages.abs().max() == 0  # every member succeeded: no spread, no signal
    assert summary(batch)["mean_reward"] == 1.0


def test_rewards_come_from_the_registry(farm):
    _, client, store = farm
    config = OnlineConfig(group_size=2, reward=RewardConfig(name="task_success", options={"success": 2.0}))
    batch = collect_groups(client, store, TASKS[:1], AgentSpec("oracle"), config, policy_version="v7")
    assert batch.rewards == [[2.0, 2.0]]
    with_steps = config.model_copy(update={"step_reward": RewardConfig(name="task_success", options={"failure": 0.5})})
    # A registered step reward without an outcome fails loudly (task_success needs the env's verdict).
    with pytest.raises(ValueError, match="outcome"):
        collect_groups(client, store, TASKS[:1], AgentSpec("oracle"), with_steps, policy_version="v7")


def test_dynamic_sampling_plays_flat_groups_again_then_drops_them(farm):
    _, client, store = farm
    config = OnlineConfig(group_size=2, max_steps=2, dynamic_sampling=True, max_regenerations=1)
    batch = collect_groups(client, store, TASKS, RANDOM, config, policy_version="v7")
    # A random agent never finishes these tasks in 2 steps: every group is flat, played twice, dropped.
    assert batch.rounds == 2 and batch.groups == [] and batch.dropped == [t.task_id for t in TASKS]
    assert len(batch.results) == 2 * len(TASKS) * 2


def test_replay_injects_a_stored_success_and_recomputes_its_log_probs(farm):
    _, client, store = farm
    task = TASKS[0]
    success = assign_rewards(run_episode(MobileSimEnv(width=540, height=1200), task, OracleAgent(),
                                         episode_id="old-success", policy_version="v3"),
                             Rewarder(RewardConfig(name="task_success")))
    buffer = ReplayBuffer(capacity=8)
    assert buffer.add(success, 1.0)
    rescored: list[list[str]] = []

    def rescore(trajectories):
        rescored.append([t.episode_id for t in trajectories])
        return [dataclasses.replace(t, info={**t.info, "logprobs_recomputed": True}) for t in trajectories]

    config = OnlineConfig(group_size=3, max_steps=2)
    with pytest.raises(ConfigError, match="rescore"):
        collect_groups(client, store, [task], RANDOM, config, policy_version="v7", buffer=buffer)
    batch = collect_groups(client, store, [task], RANDOM, config, policy_version="v7", buffer=buffer,
                           rescore=rescore)
    (group,), (stale,) = batch.groups, batch.stale
    assert len(stale) == 1 and group[stale[0]].episode_id == "old-success"
    assert group[stale[0]].info["logprobs_recomputed"] is True
    assert rescored == [["old-success"]]  # recomputed once, for the injected member only
    assert batch.rewards == [[1.0 if i == stale[0] else 0.0 for i in range(3)]]
    assert get_advantage("grpo")(AdvantageBatch.from_trajectories(batch.groups)).abs().max() > 0
    assert buffer.injections == 1 and summary(batch)["injected"] == 1

    off = ReplayBuffer(enabled=False)
    plain = collect_groups(client, store, [task], RANDOM, config, policy_version="v7", buffer=off)
    assert plain.stale == [()] and all(r == 0.0 for r in plain.rewards[0])


def test_task_selection_keeps_the_tasks_solved_once(farm):
    _, client, store = farm
    config = OnlineConfig(max_steps=3)
    kept, rewards = select_tasks(client, store, TASKS, AgentSpec("oracle"), config, tries=2)
    assert kept == TASKS and all(r == [1.0, 1.0] for r in rewards.values())
    kept, rewards = select_tasks(client, store, TASKS, RANDOM, config, tries=2)
    assert kept == [] and all(r == [0.0, 0.0] for r in rewards.values())


@pytest.mark.timeout(300)
def test_recompute_logprobs_matches_the_sampler_for_the_same_weights(tiny_qwen25vl, expert_store):
    from guiagent.actions import ActionSpaceConfig
    from guiagent.data.store import iter_episodes
    from guiagent.policy.local import LocalPolicy
    from guiagent.policy.prompts import PromptConfig
    from guiagent.rollout.semi_online import SemiOnlineConfig, semi_online_rollouts
    from guiagent.trainer.update import recompute_logprobs

    policy = LocalPolicy.from_pretrained(tiny_qwen25vl)
    prompt = PromptConfig(actions=ActionSpaceConfig(max_pixels=32 * 28 * 28))
    groups = semi_online_rollouts(policy, list(iter_episodes(expert_store)),
                                  SemiOnlineConfig(n_rollouts=2, max_tokens=6, prompt=prompt), image_root=expert_store)
    trajectories = [t for group in groups for t in group]
    stale = [dataclasses.replace(t, steps=tuple(dataclasses.replace(s, logprobs=tuple(v - 1.0 for v in s.logprobs))
                                                for s in t.steps)) for t in trajectories]
    fresh = recompute_logprobs(policy.model, policy.processor, stale, prompt, expert_store)
    diffs = [abs(a - b) for t, f in zip(trajectories, fresh) for s, g in zip(t.steps, f.steps)
             for a, b in zip(s.logprobs, g.logprobs)]
    assert diffs and max(diffs) < 1e-3  # the stale (shifted) values are gone, the sampler's are back
    assert all(f.info["logprobs_recomputed"] for f in fresh)
