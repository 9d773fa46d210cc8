"""A farm episode played by a served policy: the device worker streams screenshots to vLLM's OpenAI server
(the CPU build serving the tiny model) and records what it sampled; the worker never imports torch."""

from __future__ import annotations

import pytest

from guiagent.data.store import TrajectoryStore
from guiagent.envs.sim.tasks import make_task
from guiagent.farm.client import FarmClient
from guiagent.farm.local import LocalFarm
from guiagent.farm.specs import EpisodeSpec, policy_agent_spec
from guiagent.policy.base import SamplingParams
from guiagent.policy.prompts import PromptConfig


@pytest.mark.timeout(900)
def test_a_served_policy_plays_a_farm_episode(tmp_path, vllm_server):
    prompt = PromptConfig.model_validate({"actions": {"max_pixels": 64 * 28 * 28}})
    agent = policy_agent_spec(vllm_server.url, "tiny", prompt, SamplingParams(max_tokens=12, seed=3), [(540, 1200)])
    assert agent.geometries == {"540x1200": (prompt.geometry(540, 1200).resized_width,
                                             prompt.geometry(540, 1200).resized_height)}
    with LocalFarm(tmp_path / "farm", sims=1, width=540, height=1200) as farm:
        with FarmClient(farm.config) as client:
            spec = EpisodeSpec("policy-ep", make_task("SettingsToggleWifi", 0), agent, max_steps=2,
                               policy_version="tiny-base")
            (result,) = client.run([spec], timeout=600)
            status = next(iter(client.device_status().values()))
    assert result.status in ("failure", "timeout", "success") and result.steps >= 1, result
    trajectory = TrajectoryStore(farm.config.store_url).get("policy-ep")
    assert trajectory.policy_version == "tiny-base"
    for step in trajectory.steps:
        assert step.token_ids and len(step.token_ids) == len(step.logprobs) <= 12
        assert step.response  # the model's raw text, parsed or not
    assert status["torch_loaded"] is False


@pytest.mark.timeout(900)
def test_online_groups_with_the_served_policy_match_the_trainers_log_probs(tmp_path, vllm_server, tiny_qwen25vl):
    """G = 4 episodes of one task on four devices, sampled by vLLM; the trainer recomputes the log-probs of
    the same tokens with the same weights (the tiny model, fp32 on CPU) and they agree."""
    from guiagent.data.store import TrajectoryStore
    from guiagent.policy.local import LocalPolicy
    from guiagent.rollout.online import OnlineConfig, collect_groups
    from guiagent.trainer.update import recompute_logprobs

    prompt = PromptConfig.model_validate({"actions": {"max_pixels": 64 * 28 * 28}})
    agent = policy_agent_spec(vllm_server.url, "tiny", prompt, SamplingParams(max_tokens=12, seed=11), [(540, 1200)])
    with LocalFarm(tmp_path / "farm", sims=4, width=540, height=1200) as farm:
        with FarmClient(farm.config) as client:
            store = TrajectoryStore(farm.config.store_url)
            batch = collect_groups(client, store, [make_task("ClockToggleAlarm", 0)], agent,
                                   OnlineConfig(group_size=4, max_steps=2), policy_version="tiny-base")
    (group,) = batch.groups
    assert len(group) == 4 and len({t.env_id for t in group}) == 4
    assert all(s.token_ids and len(s.token_ids) == len(s.logprobs) for t in group for s in t.steps)
    local = LocalPolicy.from_pretrained(tiny_qwen25vl)
    recomputed = recompute_logprobs(local.model, local.processor, group, prompt)
    diffs = [abs(a - b) for t, r in zip(group, recomputed) for s, q in zip(t.steps, r.steps)
             for a, b in zip(s.logprobs, q.logprobs)]
    print(f"served vs recomputed log-probs over {len(diffs)} tokens: max |diff| = {max(diffs):.2e}")
    assert max(diffs) < 1e-2
