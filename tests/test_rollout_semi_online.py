"""UI-S1 semi-online rollouts (guiagent.rollout.semi_online).

Most cases use a scripted model: a stand-in for the *model* that answers each batched round with fixed
texts, so the rollout logic (matching, patching, ending, batching, rewards) is checked by hand. The last
case runs the real tiny Qwen2.5-VL through the local backend.
"""

from __future__ import annotations

import dataclasses
import io

import pytest
from PIL import Image
from pydantic import ValidationError

from guiagent.actions import ActionSpaceConfig, format_action
from guiagent.algos import AdvantageBatch, get_advantage
from guiagent.config import load_config
from guiagent.errors import ConfigError, DataError, PolicyError
from guiagent.policy.base import Generation
from guiagent.policy.prompts import PromptConfig, history_from_steps
from guiagent.rewards import RewardConfig
from guiagent.rollout.semi_online import SemiOnlineConfig, semi_online_rollouts
from guiagent.schema import GuiAgentConfig
from guiagent.types import Action, Observation, Step, Trajectory

W, H = 280, 560
SPACE = ActionSpaceConfig(format="qwen25vl_mobile", max_pixels=200 * 28 * 28)
PROMPT = PromptConfig(actions=SPACE)  # the rollouts prompt, parse and patch with SPACE


def _png(shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (W, H), (shade, 200, 255 - shade)).save(buf, format="PNG")
    return buf.getvalue()


def _text(action: Action, fmt: str = "qwen25vl_mobile", thought: str | None = None) -> str:
    return format_action(action, fmt, SPACE.geometry(W, H), thought=thought)


# The expert: click the box (60..160, 150..250), type "milk", terminate.
EXPERT_ACTIONS = [Action.click(110, 200), Action.type_text("milk"), Action.terminate("success")]
RIGHT = [_text(a) for a in EXPERT_ACTIONS]
WRONG_CLICK = _text(Action.click(250, 520))  # parses, right type, far from the box: r = 0.1 + 0.4 = 0.5
GARBAGE = "tap somewhere please"  # does not parse: r = 0


def _expert(episode_id: str = "e0", n_steps: int = 3) -> Trajectory:
    steps = [
        Step(
            index=i,
            observation=Observation(W, H, screenshot=_png(40 * i), instruction="buy milk"),
            action=EXPERT_ACTIONS[i],
            target_boxes=[(60, 150, 160, 250)] if i == 0 else (),
        )
        for i in range(n_steps)
    ]
    return Trajectory(
        episode_id=episode_id,
        task_id=f"task-{episode_id}",
        seed=7,
        env_id="sim",
        policy_version="expert",
        steps=tuple(steps),
        instruction="buy milk",
    )


class ScriptedModel:
    """Answers round r's batch with ``rounds[r]`` (one text per request, in request order)."""

    name = "scripted-v1"

    def __init__(self, rounds: list[list[str]]):
        self.rounds = rounds
        self.batch_sizes: list[int] = []
        self.seeds: list[int | None] = []
        self.requests: list[list] = []

    def generate(self, requests, sampling):
        texts = self.rounds[len(self.batch_sizes)]
        assert len(texts) == len(requests), f"round {len(self.batch_sizes)}: {len(requests)} requests"
        self.batch_sizes.append(len(requests))
        self.seeds.append(sampling.seed)
        self.requests.append(list(requests))
        return [
            Generation(
                text=t,
                token_ids=(5, 6, 7),
                logprobs=(-0.1, -0.2, -0.3),
                finish_reason="stop",
                prompt_tokens=100,
                model=self.name,
            )
            for t in texts
        ]


def _prompt_text(request) -> str:
    return "\n".join(
        part["text"]
        for message in request.messages
        if not isinstance(message["content"], str)
        for part in message["content"]
        if part.get("type") == "text"
    )


def _run(rounds, experts, **options):
    model = ScriptedModel(rounds)
    config = SemiOnlineConfig(prompt=PROMPT, **options)
    return model, semi_online_rollouts(model, experts, config)


def test_matching_rollouts_run_to_the_expert_end_in_one_batched_call_per_round():
    model, groups = _run(
        [RIGHT[:1] * 4, RIGHT[1:2] * 4, RIGHT[2:] * 4], [_expert("a"), _expert("b")], n_rollouts=2
    )
    assert model.batch_sizes == [4, 4, 4]  # 2 experts x 2 rollouts, every round in one call
    assert model.seeds == [0, 1, 2]
    assert [len(g) for g in groups] == [2, 2]
    for group, expert_id in zip(groups, ("a", "b")):
        for k, traj in enumerate(group):
            assert traj.info["expert_episode_id"] == expert_id and traj.info["rollout"] == k
            assert traj.info["end"] == "expert_end" and traj.info["patches_used"] == 0
            assert (
                traj.policy_version == "scripted-v1"
                and traj.task_id == f"task-{expert_id}"
                and traj.seed == 7
            )
            assert [s.reward for s in traj.steps] == [1.0, 1.0, 1.0]
            assert [s.matched for s in traj.steps] == [True, True, True]
            assert [s.info["seed"] for s in traj.steps] == [0, 1, 2]
            assert all(
                s.logprobs == (-0.1, -0.2, -0.3) and s.token_ids == (5, 6, 7) for s in traj.steps
            )
    # The prompt holds the model's own earlier answers: round 2 sees both previous responses.
    assert RIGHT[0] in _prompt_text(model.requests[2][0]) and RIGHT[1] in _prompt_text(model.requests[2][0])


def test_mismatch_is_patched_once_then_the_next_mismatch_ends_the_rollout():
    # Rollout 0 is right throughout; rollout 1 misses step 0 (patched) and step 1 (budget used: ends).
    model, groups = _run(
        [[RIGHT[0], WRONG_CLICK], [RIGHT[1], GARBAGE], [RIGHT[2]]], [_expert()], n_rollouts=2
    )
    assert model.batch_sizes == [2, 2, 1]  # the ended rollout leaves the batch
    ok, bad = groups[0]
    assert len(ok) == 3 and ok.info["end"] == "expert_end"
    assert len(bad) == 2 and bad.info["end"] == "mismatch" and bad.info["patches_used"] == 1
    assert [s.reward for s in bad.steps] == [0.5, 0.0]
    assert [s.matched for s in bad.steps] == [False, False]
    assert bad.steps[0].patch == RIGHT[0] and bad.info["patch_kind"] == "thought_free"
    assert bad.steps[1].patch is None  # no budget left: not patched, the rollout ends here
    assert bad.steps[1].action is None and bad.steps[1].parse_error
    # The patch, not the wrong click, is what the next round's prompt shows.
    round1 = _prompt_text(model.requests[1][1])
    assert RIGHT[0] in round1 and WRONG_CLICK not in round1
    assert [h.response for h in history_from_steps(bad.steps[:1])] == [RIGHT[0]]


def test_clicks_are_judged_against_the_expert_target_box():
    # (165, 255) is 0.21 (normalised) from the expert point (110, 200), but inside its target box
    # (60..160, 150..250) enlarged 1.2x about its centre: 50..170 x 140..260. It matches only with the box.
    edge = _text(Action.click(165, 255))
    boxed = _expert("a", n_steps=1)
    bare = dataclasses.replace(boxed, steps=(dataclasses.replace(boxed.steps[0], target_boxes=()),))
    _, groups = _run([[edge, edge]], [boxed, bare], n_rollouts=1, patch_budget=0)
    assert [g[0].steps[0].matched for g in groups] == [True, False]


def test_zero_patch_budget_ends_at_the_first_mismatch():
    _, groups = _run([[WRONG_CLICK]], [_expert()], n_rollouts=1, patch_budget=0)
    (traj,) = groups[0]
    assert len(traj) == 1 and traj.info["end"] == "mismatch" and traj.steps[0].reward == 0.5


def _three_rollouts(patched_steps: str):
    # A: all right. B: wrong click at step 0 (patched), then right. C: garbage at 0 (patched) and 1 (ends).
    rounds = [[RIGHT[0], WRONG_CLICK, GARBAGE], [RIGHT[1], RIGHT[1], GARBAGE], [RIGHT[2], RIGHT[2]]]
    return _run(rounds, [_expert()], n_rollouts=3, patched_steps=patched_steps)[1]


def test_patched_steps_are_samples_by_default_and_the_patch_is_context_only():
    groups = _three_rollouts("sample")
    batch = AdvantageBatch.from_trajectories(groups)
    assert batch.rewards.tolist() == [1, 1, 1, 0.5, 1, 1, 0, 0]
    assert batch.matched.tolist() == [True, True, True, False, True, True, False, False]
    assert batch.mask.all()  # every generated response is a training sample
    patches = [s.patch for t in groups[0] for s in t.steps if s.patch is not None]
    responses = [s.response for t in groups[0] for s in t.steps]
    assert (
        patches == [RIGHT[0], RIGHT[0]] and responses[3] == WRONG_CLICK
    )  # a patch is never a row's response


def test_context_mode_flags_patched_steps_and_masks_them():
    groups = _three_rollouts("context")
    assert [s.patched for t in groups[0] for s in t.steps] == [
        False,
        False,
        False,
        True,
        False,
        False,
        True,
        False,
    ]
    batch = AdvantageBatch.from_trajectories(groups)
    assert batch.mask.tolist() == [True, True, True, False, True, True, False, True]
    advantages = get_advantage("uis1")(batch)
    assert advantages[3] == 0 and advantages[6] == 0


# UI-S1 advantages of the three rollouts above, by hand (gamma 0.5, omega 1, Bessel std):
#   rewards A [1, 1, 1], B [0.5, 1, 1] (step 0 mismatched), C [0, 0] (both mismatched).
#   Returns (a mismatch closes its own segment): A [1.75, 1.5, 1], B [0.5, 1.5, 1], C [0, 0].
#   Episode totals 3, 2.5, 0: mean 1.83333, std sqrt(5.16667 / 2) = 1.60728 → A^E 0.72587, 0.41478, -1.14065.
#   Step 0 returns 1.75, 0.5, 0: mean 0.75, std sqrt(1.625 / 2) = 0.90139 → 1.10940, -0.27735, -0.83205.
#   Step 1 returns 1.5, 1.5, 0: mean 1, std sqrt(1.5 / 2) = 0.86603 → 0.57735, 0.57735, -1.15470.
#   Step 2 returns 1, 1: all equal → 0.
UIS1_EXPECTED = [
    0.72587 + 1.10940,
    0.72587 + 0.57735,
    0.72587,
    0.41478 - 0.27735,
    0.41478 + 0.57735,
    0.41478,
    -1.14065 - 0.83205,
    -1.14065 - 1.15470,
]


def test_uis1_advantages_from_the_produced_trajectories():
    batch = AdvantageBatch.from_trajectories(_three_rollouts("sample"))
    assert get_advantage("uis1")(batch).tolist() == pytest.approx(UIS1_EXPECTED, abs=1e-4)
    # GRPO on the same rows: the episode level alone, broadcast to every step.
    grpo = get_advantage("grpo")(batch).tolist()
    assert grpo == pytest.approx([0.72587] * 3 + [0.41478] * 3 + [-1.14065] * 2, abs=1e-4)


def test_qwen3vl_rollouts_prompt_parse_and_patch_in_relative_coordinates():
    """One action space drives the whole round: the prompt states 0-999, answers parse and patches are written
    in the same relative coordinates."""
    space = ActionSpaceConfig(format="qwen3vl_mobile", factor=32, max_pixels=SPACE.max_pixels)
    geometry = space.geometry(W, H)
    right = format_action(EXPERT_ACTIONS[0], "qwen3vl_mobile", geometry)
    assert '"coordinate": [393, 357]' in right  # (110, 200) on 280x560 -> 1000 * (110/280, 200/560)
    wrong = format_action(Action.click(250, 520), "qwen3vl_mobile", geometry)
    model = ScriptedModel([[right, wrong], [GARBAGE, GARBAGE]])
    config = SemiOnlineConfig(prompt=PromptConfig(actions=space), n_rollouts=2)
    good, patched = semi_online_rollouts(model, [_expert(n_steps=2)], config)[0]
    system = model.requests[0][0].messages[0]["content"]
    assert "integers from 0 to 999" in system and '"name": "mobile_use"' in system
    assert good.steps[0].reward == 1.0 and good.steps[0].matched
    assert patched.steps[0].reward == 0.5 and not patched.steps[0].matched
    assert patched.steps[0].patch == right
    assert patched.info["format"] == "qwen3vl_mobile"


def test_uis1_format_needs_the_think_block_and_patches_with_an_empty_thought():
    space = ActionSpaceConfig(format="uis1", max_pixels=SPACE.max_pixels)
    with_think = _text(EXPERT_ACTIONS[0], "uis1", thought="the box is the target")
    without = _text(EXPERT_ACTIONS[0], "uis1")
    model = ScriptedModel([[with_think, without], [GARBAGE, GARBAGE]])
    groups = semi_online_rollouts(
        model, [_expert(n_steps=2)], SemiOnlineConfig(prompt=PromptConfig(actions=space), n_rollouts=2)
    )
    good, bare = groups[0]
    assert good.steps[0].reward == 1.0 and good.steps[0].matched
    # Right action but no <think>: fmt = 0 gates the whole reward; the action still matched.
    assert bare.steps[0].reward == 0.0 and bare.steps[0].matched and bare.steps[0].patch is None
    assert good.steps[1].patch.startswith("<think>\n\n</think>")


# --- Rewards by config: the rollout scores through the reward registry (guiagent.rewards.Rewarder) ------------


def test_the_default_reward_is_uis1s_step_reward_with_the_formats_think_rule():
    assert SemiOnlineConfig(prompt=PROMPT).reward == RewardConfig(
        name="uis1_step", options={"variant": "paper", "require_think": False}
    )
    uis1 = PromptConfig(actions=ActionSpaceConfig(format="uis1"))
    assert SemiOnlineConfig(prompt=uis1).reward.options["require_think"] is True
    _, groups = _run([[RIGHT[0]]], [_expert(n_steps=1)], n_rollouts=1)
    assert groups[0][0].info["reward"] == {"name": "uis1_step", "options": {"variant": "paper", "require_think": False}}


def test_a_rule_preset_scores_the_rollout_and_the_matcher_still_decides_patching():
    # gui_r1 (no think block in this format, so fmt = 0): 0.2·fmt + 0.8·type + 0.8·args (args not gated).
    # Right click/type/terminate: 0.8 + 0.8 = 1.6. Wrong click (right type, outside the box): 0.8. Garbage: 0.
    reward = RewardConfig(name="rule", options={"preset": "gui_r1"})
    model, groups = _run([[RIGHT[0], WRONG_CLICK], [RIGHT[1], GARBAGE], [RIGHT[2]]], [_expert()], n_rollouts=2,
                         reward=reward)
    ok, bad = groups[0]
    assert [s.reward for s in ok.steps] == pytest.approx([1.6, 1.6, 1.6])
    assert [s.reward for s in bad.steps] == pytest.approx([0.8, 0.0])
    assert bad.steps[0].patch == RIGHT[0] and bad.info["end"] == "mismatch"  # as under the UI-S1 reward
    assert model.batch_sizes == [2, 2, 1] and ok.info["reward"]["options"] == {"preset": "gui_r1"}


def test_the_released_code_variant_of_the_uis1_reward_is_an_option():
    # Released gui_traj.py: 0.1·think + 0.9·a, a = 1 exact / 0.5 right type / 0.1 parsed / 0; ungated, and
    # this format needs no think block (think = 1): right 1.0, wrong click 0.1 + 0.45 = 0.55, garbage 0.1.
    reward = RewardConfig(name="uis1_step", options={"variant": "code", "require_think": False})
    _, groups = _run([[RIGHT[0], WRONG_CLICK], [RIGHT[1], GARBAGE], [RIGHT[2]]], [_expert()], n_rollouts=2,
                     reward=reward)
    assert [s.reward for t in groups[0] for s in t.steps] == pytest.approx([1.0, 1.0, 1.0, 0.55, 0.1])


def test_har_with_the_rule_memory_judge_scores_the_rollout():
    # HAR (γ 0.2): fmt × (r_action + 0.2·r_memory). Step 0: the click hits the box centre (d = 0):
    # r_action = 1 + exp(0) = 2; no history yet, so no memory → 2.0 for both rollouts. Step 1 (type "milk",
    # matched: r_action 1): rollout 0 reasons "after I tap the milk box", sharing the bigram "tap milk" with
    # its step-0 response in the prompt → 1.2; rollout 1's "type the name" uses nothing from it → 1.0.
    space = ActionSpaceConfig(format="uis1", max_pixels=SPACE.max_pixels)
    click = _text(EXPERT_ACTIONS[0], "uis1", thought="tap the milk box")
    uses_history = _text(EXPERT_ACTIONS[1], "uis1", thought="after I tap the milk box, type milk")
    ignores_it = _text(EXPERT_ACTIONS[1], "uis1", thought="type the name")
    model = ScriptedModel([[click, click], [uses_history, ignores_it]])
    reward = RewardConfig(name="har", memory_judge={"kind": "rule"})
    config = SemiOnlineConfig(prompt=PromptConfig(actions=space), n_rollouts=2, reward=reward)
    groups = semi_online_rollouts(model, [_expert(n_steps=2)], config)
    assert [s.reward for t in groups[0] for s in t.steps] == pytest.approx([2.0, 1.2, 2.0, 1.0])
    assert model.batch_sizes == [2, 2]  # the judge adds no policy calls: still one batched call per round
    with pytest.raises(ValidationError, match="memory_judge"):
        RewardConfig(name="har")


def test_a_config_file_scores_semi_online_rollouts_with_its_one_reward(tmp_path):
    config = load_config("configs/rollout/uis1_semi_online.yaml", GuiAgentConfig)
    assert config.semi_online.reward == config.reward == RewardConfig(name="uis1_step", options={"variant": "paper"})
    path = tmp_path / "c.yaml"
    path.write_text("reward:\n  name: rule\n  options: {preset: gta1}\n")
    assert load_config(path, GuiAgentConfig).semi_online.reward.options == {"preset": "gta1"}
    path.write_text("reward:\n  name: rule\n  options: {preset: gta1}\nsemi_online:\n  reward:\n    name: uis1_step\n")
    with pytest.raises(ConfigError, match="semi_online.reward .*differs from reward"):
        load_config(path, GuiAgentConfig)


def test_on_policy_thought_patch_asks_the_policy_with_a_next_action_hint():
    # Calls: round 0, the hint call for round 0's one patch, round 1, round 2.
    rounds = [
        [RIGHT[0], WRONG_CLICK],
        ["<think>the row at the top is the target</think> then more"],
        [RIGHT[1], RIGHT[1]],
        [RIGHT[2], RIGHT[2]],
    ]
    model, groups = _run(rounds, [_expert()], n_rollouts=2, patch_kind="on_policy_thought")
    assert model.batch_sizes == [2, 1, 2, 2]
    hint = _prompt_text(model.requests[1][0])
    assert "Hint: the correct next action is" in hint and RIGHT[0] in hint
    assert groups[0][1].steps[0].patch == _text(EXPERT_ACTIONS[0], thought="the row at the top is the target")
    assert "the row at the top is the target" in _prompt_text(model.requests[2][1])
    assert groups[0][1].info["patch_kind"] == "on_policy_thought" and len(groups[0][1]) == 3


def test_off_policy_thought_patch_asks_the_auxiliary_model():
    writer = ScriptedModel([["because the box says Wi-Fi <tool_call>"]])
    model = ScriptedModel([[WRONG_CLICK], [RIGHT[1]], [RIGHT[2]]])
    config = SemiOnlineConfig(prompt=PROMPT, n_rollouts=1, patch_kind="off_policy_thought")
    ((traj,),) = semi_online_rollouts(model, [_expert()], config, thought_policy=writer)
    assert model.batch_sizes == [1, 1, 1] and writer.batch_sizes == [1]
    assert traj.steps[0].patch == _text(EXPERT_ACTIONS[0], thought="because the box says Wi-Fi")
    with pytest.raises(ConfigError, match="thought_policy"):
        semi_online_rollouts(model, [_expert()], config)


def test_a_backend_that_drops_answers_is_an_error():
    class Short(ScriptedModel):
        def generate(self, requests, sampling):
            return super().generate(requests, sampling)[:-1]

    with pytest.raises(PolicyError, match="answered 1 of 2"):
        semi_online_rollouts(
            Short([[RIGHT[0], RIGHT[0]]]), [_expert()], SemiOnlineConfig(prompt=PROMPT, n_rollouts=2)
        )


def test_expert_steps_without_an_action_are_rejected():
    bad = _expert()
    bad = Trajectory(
        **{**bad.__dict__, "steps": (Step(index=0, observation=bad.steps[0].observation, action=None),)}
    )
    with pytest.raises(DataError, match="e0 step 0"):
        semi_online_rollouts(ScriptedModel([]), [bad], SemiOnlineConfig(prompt=PROMPT))


@pytest.mark.timeout(300)
def test_tiny_model_rollouts_on_simulator_expert_screens(tiny_qwen25vl):
    from guiagent.agent import OracleAgent, run_episode
    from guiagent.envs.sim.env import MobileSimEnv
    from guiagent.envs.sim.tasks import make_task
    from guiagent.policy.local import LocalPolicy

    expert = run_episode(MobileSimEnv(), make_task("SettingsToggleWifi", 0), OracleAgent(), policy_version="expert")
    policy = LocalPolicy.from_pretrained(tiny_qwen25vl)
    # On-policy thought patches: the hint call goes through the real processor and chat template too.
    config = SemiOnlineConfig(
        n_rollouts=2,
        max_tokens=8,
        prompt=PromptConfig(actions=ActionSpaceConfig(max_pixels=64 * 28 * 28)),
        patch_kind="on_policy_thought",
    )
    groups = semi_online_rollouts(policy, [expert], config)
    assert len(groups) == 1 and len(groups[0]) == 2
    for traj in groups[0]:
        assert traj.policy_version == policy.name and 1 <= len(traj) <= len(expert)
        for step in traj.steps:
            assert step.reward in (0.0, 0.1, 0.5, 1.0)
            assert len(step.logprobs) == len(step.token_ids) >= 1
            assert step.observation is expert.steps[step.index].observation
            if step.patch is not None:  # the patch carries the expert action, whatever the thought
                assert step.patch.rstrip().endswith("</tool_call>")
    batch = AdvantageBatch.from_trajectories(groups)
    assert len(get_advantage("uis1")(batch)) == sum(len(t) for t in groups[0])


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_rollouts_through_the_vllm_client(vllm_server):
    """The same rollout code against vLLM's OpenAI server (the session's CPU vLLM serving the tiny model)."""
    from guiagent.policy.client import VLLMClient

    config = SemiOnlineConfig(
        n_rollouts=3, max_tokens=8, prompt=PROMPT, patch_kind="on_policy_thought"
    )
    with VLLMClient(vllm_server.url, "tiny", timeout=300, max_retries=1, max_concurrency=4) as client:
        groups = semi_online_rollouts(client, [_expert("a"), _expert("b")], config)
    assert [len(g) for g in groups] == [3, 3]
    for traj in (t for g in groups for t in g):
        assert traj.policy_version == "tiny" and 1 <= len(traj) <= 3
        for step in traj.steps:
            assert step.reward in (0.0, 0.1, 0.5, 1.0)
            assert len(step.logprobs) == len(step.token_ids) >= 1
    assert len(get_advantage("uis1")(AdvantageBatch.from_trajectories(groups))) == sum(
        len(t) for g in groups for t in g
    )
