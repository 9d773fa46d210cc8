"""Rollouts write their groups to the trajectory store with everything needed to audit them."""

from __future__ import annotations

import pytest

from guiagent.actions import ActionSpaceConfig
from guiagent.algos import AdvantageBatch, get_advantage
from guiagent.data.store import TrajectoryStore, iter_episodes
from guiagent.errors import DataError
from guiagent.policy.local import LocalPolicy
from guiagent.policy.prompts import PromptConfig, build_messages, history_from_steps
from guiagent.rollout.recording import record_groups
from guiagent.rollout.semi_online import SemiOnlineConfig, semi_online_rollouts


@pytest.mark.timeout(300)
def test_semi_online_groups_are_recorded_with_advantages_prompts_and_screens(tiny_qwen25vl, expert_store, tmp_path):
    prompt = PromptConfig(actions=ActionSpaceConfig(max_pixels=32 * 28 * 28))
    policy = LocalPolicy.from_pretrained(tiny_qwen25vl)
    groups = semi_online_rollouts(policy, list(iter_episodes(expert_store)),
                                  SemiOnlineConfig(n_rollouts=2, max_tokens=6, prompt=prompt), image_root=expert_store)
    advantages = get_advantage("uis1")(AdvantageBatch.from_trajectories(groups))
    store = TrajectoryStore(tmp_path / "rollouts")
    with pytest.raises(DataError, match="advantages"):
        record_groups(store, groups, advantages=advantages[:-1], image_root=expert_store)
    assert record_groups(store, groups, advantages=advantages, prompt=prompt, image_root=expert_store,
                         rollout="semi_online") == 2
    assert record_groups(store, groups, advantages=advantages, image_root=expert_store) == 0  # idempotent
    row = 0
    for group in groups:
        for original in group:
            stored = store.get(original.episode_id, with_images=True)
            assert stored.info["rollout"] == "semi_online" and stored.info["prompt"] == prompt.model_dump()
            for s, o in zip(stored.steps, original.steps):
                assert s.advantage == pytest.approx(float(advantages[row]))
                assert (s.response, s.action, s.token_ids, s.logprobs, s.reward) == (
                    o.response, o.action, o.token_ids, o.logprobs, o.reward)
                row += 1
            # The recorded prompt settings, earlier steps and screen rebuild the prompt the response came from.
            last = len(stored.steps) - 1
            rebuilt = build_messages(stored.instruction, stored.steps[last].observation.screenshot,
                                     history_from_steps(stored.steps[:last]),
                                     PromptConfig.model_validate(stored.info["prompt"]))
            original_prompt = build_messages(original.instruction,
                                             original.steps[last].observation.screenshot_source(str(expert_store)),
                                             history_from_steps(original.steps[:last], str(expert_store)), prompt)
            assert [m["role"] for m in rebuilt] == [m["role"] for m in original_prompt]
