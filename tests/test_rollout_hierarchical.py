"""Hi-Agent hierarchical rollouts (guiagent.rollout.hierarchical, arXiv 2510.14388).

Most cases use a scripted model: a stand-in for the *model* that answers high-level (planner) prompts with
fixed subgoals in order and low-level prompts according to the subgoal the prompt holds, so rewards,
groups and batching are checked by hand. The last case runs the real tiny Qwen2.5-VL through the local
backend on a MobileSim expert episode.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from guiagent.actions import ActionSpaceConfig, format_action
from guiagent.algos import AdvantageBatch, get_advantage
from guiagent.errors import DataError, PolicyError
from guiagent.policy.base import Generation
from guiagent.policy.prompts import PromptConfig, step_messages
from guiagent.rewards.registry import RewardConfig
from guiagent.rollout.hierarchical import (
    EMPTY_INSTRUCTION,
    NO_INSTRUCTION,
    NO_REASONING,
    NOT_TEXT,
    HierarchicalConfig,
    Subgoal,
    SubgoalFailure,
    hierarchical_rollouts,
    parse_subgoal,
)
from guiagent.types import Action, Observation, Step, Trajectory

W, H = 280, 560
SPACE = ActionSpaceConfig(format="qwen25vl_mobile", max_pixels=200 * 28 * 28)
PROMPT = PromptConfig(actions=SPACE)


def _png(shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (W, H), (shade, 200, 255 - shade)).save(buf, format="PNG")
    return buf.getvalue()


def _text(action: Action) -> str:
    return format_action(action, "qwen25vl_mobile", SPACE.geometry(W, H))


# The expert: click the box (60..160, 150..250), then type "milk".
EXPERT_ACTIONS = [Action.click(110, 200), Action.type_text("milk")]
RIGHT = _text(EXPERT_ACTIONS[0])
WRONG_CLICK = _text(Action.click(250, 520))  # right type, far from the box
WRONG_TYPE = _text(Action.type_text("milk"))  # parses, wrong type at step 0
GARBAGE = "tap somewhere please"  # does not parse


def _subgoal(instruction: str) -> str:
    return f"<reasoning>the list is open</reasoning><instruction>{instruction}</instruction>"


A, B = _subgoal("Tap the first row"), _subgoal("Tap the milk row")
UNPARSABLE = "<reasoning>hmm</reasoning> tap the row"


def _expert(episode_id: str = "e0", n_steps: int = 1) -> Trajectory:
    steps = [
        Step(
            index=i,
            observation=Observation(W, H, screenshot=_png(40 * i), instruction="buy milk"),
            action=EXPERT_ACTIONS[i],
            target_boxes=[(60, 150, 160, 250)] if i == 0 else (),
        )
        for i in range(n_steps)
    ]
    return Trajectory(episode_id=episode_id, task_id=f"task-{episode_id}", seed=7, env_id="sim",
                      policy_version="expert", steps=tuple(steps), instruction="buy milk")


def _user_text(request) -> str:
    return "\n".join(part["text"] for message in request.messages if not isinstance(message["content"], str)
                     for part in message["content"] if part.get("type") == "text")


class ScriptedModel:
    """Planner prompts get ``subgoals`` in order; an actor prompt gets the next of ``actions[subgoal]``, the
    subgoal read from its prompt, as a real low-level model conditions on it. Records every call."""

    def __init__(self, subgoals: list[str] = (), actions: dict[str, list[str]] | None = None, name: str = "scripted"):
        self.subgoals = list(subgoals)
        self.actions = {k: list(v) for k, v in (actions or {}).items()}
        self.name = name
        self.calls: list[list] = []
        self.samplings: list = []

    def generate(self, requests, sampling):
        self.calls.append(list(requests))
        self.samplings.append(sampling)
        texts = []
        for request in requests:
            if "planner" in request.messages[0]["content"]:
                texts.append(self.subgoals.pop(0))
            else:
                subgoal = _user_text(request).removeprefix("The user query: ")
                texts.append(self.actions[subgoal].pop(0))
        return [Generation(text=t, token_ids=(5, 6, 7), logprobs=(-0.1, -0.2, -0.3), finish_reason="stop",
                           prompt_tokens=100, model=request.model or self.name) for t, request in zip(texts, requests)]


# --- The subgoal parser ---------------------------------------------------------------------------------


def test_parse_subgoal_returns_the_instruction_or_a_typed_failure():
    assert parse_subgoal("  <reasoning> Wi-Fi is off </reasoning>\n<instruction> Tap Wi-Fi </instruction>") == Subgoal(
        "Wi-Fi is off", "Tap Wi-Fi")
    cases = {
        "<reasoning>r</reasoning>": NO_INSTRUCTION,
        "<reasoning>r</reasoning><instruction>Tap": NO_INSTRUCTION,  # not closed
        "<instruction>Tap</instruction>": NO_REASONING,
        "<reasoning> </reasoning><instruction>Tap</instruction>": NO_REASONING,
        "<instruction>Tap</instruction><reasoning>r</reasoning>": NO_REASONING,  # wrong order
        "<reasoning>r</reasoning><instruction>  </instruction>": EMPTY_INSTRUCTION,
        "": NO_INSTRUCTION,
        None: NOT_TEXT,
        b"<instruction>x</instruction>": NOT_TEXT,
    }
    for text, reason in cases.items():
        failure = parse_subgoal(text)
        assert isinstance(failure, SubgoalFailure) and failure.reason == reason, (text, failure)
    # Never raises, whatever the text.
    for text in ["<reasoning>" * 1000, "</instruction><instruction>", "<reasoning>a<instruction>b</instruction>"]:
        assert isinstance(parse_subgoal(text), (Subgoal, SubgoalFailure))


# --- Rewards, groups and advantages by hand -------------------------------------------------------------

# One state (click the box), G = 3 subgoals: A, B and one that does not parse; G′ = 4 actions per subgoal.
# The scripted low level gets A right 3 of 4 times and B 1 of 4 times:
#   A: RIGHT, RIGHT, WRONG_CLICK, RIGHT   → correct [1, 1, 0, 1]
#   B: WRONG_CLICK, RIGHT, GARBAGE, WRONG_TYPE → correct [0, 1, 0, 0]
# Foresight rewards (format + success rate): A 1 + 3/4 = 1.75, B 1 + 1/4 = 1.25, unparsable 0.
# High group [1.75, 1.25, 0]: mean 1, deviations 0.75, 0.25, -1, Bessel var 1.625 / 2 = 0.8125,
#   std 0.901388 → advantages 0.83205, 0.27735, -1.10940.
# Low groups per subgoal (reward = match):
#   A [1, 1, 0, 1]: mean 0.75, var (3·0.0625 + 0.5625) / 3 = 0.25, std 0.5 → [0.5, 0.5, -1.5, 0.5]
#   B [0, 1, 0, 0]: mean 0.25, std 0.5 → [-0.5, 1.5, -0.5, -0.5]
ACTIONS = {"Tap the first row": [RIGHT, RIGHT, WRONG_CLICK, RIGHT],
           "Tap the milk row": [WRONG_CLICK, RIGHT, GARBAGE, WRONG_TYPE]}
HIGH_EXPECTED = [0.83205, 0.27735, -1.10940]


def _hand_run(**options):
    model = ScriptedModel([A, B, UNPARSABLE], ACTIONS)
    config = HierarchicalConfig(prompt=PROMPT, n_subgoals=3, n_actions=4, **options)
    return model, hierarchical_rollouts(model, [_expert()], config)


def test_foresight_rewards_and_hi_agent_advantages_by_hand():
    _model, groups = _hand_run()
    assert [len(g) for g in groups] == [3, 4, 4]  # high group, then one low group per parsed subgoal
    assert [t.info["level"] for g in groups for t in g] == ["high"] * 3 + ["low"] * 8
    high = groups[0]
    assert [t.steps[0].reward for t in high] == [1.75, 1.25, 0.0]
    assert [t.steps[0].info["subgoal"] for t in high] == ["Tap the first row", "Tap the milk row", None]
    assert [t.steps[0].info["low_level_correct"] for t in high] == [[True, True, False, True],
                                                                    [False, True, False, False], []]
    assert high[2].steps[0].parse_error.startswith("no_instruction")
    assert [t.steps[0].reward for t in groups[1]] == [1, 1, 0, 1]
    assert [t.steps[0].reward for t in groups[2]] == [0, 1, 0, 0]
    assert {t.steps[0].info["subgoal"] for t in groups[2]} == {"Tap the milk row"}
    assert groups[2][2].steps[0].action is None and groups[2][2].steps[0].parse_error
    batch = AdvantageBatch.from_trajectories(groups)  # both levels in one batch
    advantages = get_advantage("hi_agent")(batch).tolist()
    assert advantages == pytest.approx(HIGH_EXPECTED + [0.5, 0.5, -1.5, 0.5] + [-0.5, 1.5, -0.5, -0.5], abs=1e-4)
    # Every row is a sample with what the trainer needs.
    for t in (t for g in groups for t in g):
        step = t.steps[0]
        assert len(t) == 1 and step.index == 0 and step.token_ids == (5, 6, 7) and len(step.logprobs) == 3
        assert t.task_id == "task-e0" and t.info["expert_episode_id"] == "e0" and t.policy_version == "scripted"


def test_state_groups_put_every_low_level_sample_of_a_state_together():
    # Low rewards [1, 1, 0, 1, 0, 1, 0, 0]: mean 0.5, Bessel std sqrt(8 · 0.25 / 7) = 0.534522 → ±0.935414.
    _, groups = _hand_run(low_level_groups="state")
    assert [len(g) for g in groups] == [3, 8]
    advantages = get_advantage("hi_agent")(AdvantageBatch.from_trajectories(groups)).tolist()
    signs = [1, 1, -1, 1, -1, 1, -1, -1]
    assert advantages == pytest.approx(HIGH_EXPECTED + [0.935414 * s for s in signs], abs=1e-4)


def test_uis1_low_level_reward_grades_format_and_type_but_foresight_counts_matches():
    # UI-S1 paper reward: match 1, right type 0.5, wrong type 0.1, no parse 0. Foresight is unchanged.
    _, groups = _hand_run(low_level_reward=RewardConfig(name="uis1_step", options={"require_think": False}))
    assert [t.steps[0].reward for t in groups[0]] == [1.75, 1.25, 0.0]
    assert [t.steps[0].reward for t in groups[1]] == [1, 1, 0.5, 1]
    assert [t.steps[0].reward for t in groups[2]] == [0.5, 1, 0, 0.1]


def test_each_level_is_one_batched_call_and_goes_to_its_model():
    # 2 experts × 2 steps = 4 states, G = 2, G′ = 3: one call of 4·2 = 8 planner prompts, then one call of
    # 3 actions for each of the 6 parsed subgoals (2 of the 8 do not parse) = 18 actor prompts.
    subgoals = [A, UNPARSABLE, B, B, A, A, GARBAGE, B]
    actions = {"Tap the first row": [RIGHT] * 9, "Tap the milk row": [WRONG_CLICK] * 9}
    model = ScriptedModel(subgoals, actions)
    config = HierarchicalConfig(prompt=PROMPT, n_subgoals=2, n_actions=3, seed=5, high_model="planner-v1",
                                low_model="actor-v1", high_max_tokens=64, low_max_tokens=32)
    groups = hierarchical_rollouts(model, [_expert("a", 2), _expert("b", 2)], config)
    assert [len(c) for c in model.calls] == [8, 18]
    assert {r.model for r in model.calls[0]} == {"planner-v1"} and {r.model for r in model.calls[1]} == {"actor-v1"}
    assert [(s.seed, s.max_tokens) for s in model.samplings] == [(5, 64), (6, 32)]
    # Per state: its high group, then a low group per parsed subgoal (states 0 and 3 have one each).
    assert [(g[0].info["level"], len(g)) for g in groups] == [
        ("high", 2), ("low", 3),
        ("high", 2), ("low", 3), ("low", 3),
        ("high", 2), ("low", 3), ("low", 3),
        ("high", 2), ("low", 3),
    ]
    assert [g[0].steps[0].index for g in groups if g[0].info["level"] == "high"] == [0, 1, 0, 1]
    high = [t for g in groups for t in g if t.info["level"] == "high"]
    assert {t.policy_version for t in high} == {"planner-v1"}
    assert {t.policy_version for g in groups for t in g if t.info["level"] == "low"} == {"actor-v1"}
    # Step 1's planner prompt tells it what the expert did at step 0.
    assert RIGHT in _user_text(model.calls[0][2]) and "Previous actions" in _user_text(model.calls[0][2])
    batch = AdvantageBatch.from_trajectories(groups)
    assert len(get_advantage("hi_agent")(batch)) == 8 + 18


def test_a_separate_low_level_backend_gets_only_the_low_level_call():
    planner = ScriptedModel([A, B], name="planner")
    actor = ScriptedModel(actions={"Tap the first row": [RIGHT], "Tap the milk row": [WRONG_CLICK]}, name="actor")
    config = HierarchicalConfig(prompt=PROMPT, n_subgoals=2, n_actions=1)
    high, low_a, _low_b = hierarchical_rollouts(planner, [_expert()], config, low_policy=actor)
    assert [len(c) for c in planner.calls] == [2] and [len(c) for c in actor.calls] == [2]
    assert [t.steps[0].reward for t in high] == [2.0, 1.0]
    assert (low_a[0].policy_version, high[0].policy_version) == ("actor", "planner")


def test_no_parsable_subgoal_means_no_low_level_call_and_zero_advantages():
    model = ScriptedModel([GARBAGE, UNPARSABLE])
    groups = hierarchical_rollouts(model, [_expert()], HierarchicalConfig(prompt=PROMPT, n_subgoals=2, n_actions=3))
    assert len(model.calls) == 1 and [len(g) for g in groups] == [2]
    assert [t.steps[0].reward for t in groups[0]] == [0.0, 0.0]
    assert get_advantage("hi_agent")(AdvantageBatch.from_trajectories(groups)).tolist() == [0.0, 0.0]


def test_sample_messages_rebuild_the_prompts_that_were_generated_from():
    model, groups = _hand_run()
    requests = model.calls[0] + model.calls[1]
    samples = [t for g in groups for t in g]
    # Request order: the 3 planner prompts, then 4 actor prompts for A and 4 for B (the rows' order too).
    for request, sample in zip(requests, samples, strict=True):
        rebuilt = step_messages(sample, 0, PROMPT)
        assert len(rebuilt) == len(request.messages)
        for got, want in zip(rebuilt, request.messages):
            assert got["role"] == want["role"]
            if isinstance(want["content"], str):
                assert got["content"] == want["content"]
            else:
                for g_part, w_part in zip(got["content"], want["content"], strict=True):
                    if w_part["type"] == "image":
                        assert g_part["image"].tobytes() == w_part["image"].tobytes()
                    else:
                        assert g_part == w_part
    # A trajectory of another rollout kind gets the agent prompt back (one dispatcher for the update).
    assert "mobile_use" in step_messages(_expert(), 0, PROMPT)[0]["content"]


def test_bad_input_is_an_error():
    class Short(ScriptedModel):
        def generate(self, requests, sampling):
            return super().generate(requests, sampling)[:-1]

    with pytest.raises(PolicyError, match="answered 1 of 2"):
        hierarchical_rollouts(Short([A, B]), [_expert()], HierarchicalConfig(prompt=PROMPT, n_subgoals=2))
    no_action = Trajectory(episode_id="x", task_id="t", seed=0, env_id="sim", policy_version="expert",
                           steps=(Step(index=0, observation=_expert().steps[0].observation, action=None),))
    with pytest.raises(DataError, match="x step 0"):
        hierarchical_rollouts(ScriptedModel(), [no_action], HierarchicalConfig(prompt=PROMPT))


# --- The tiny model on a MobileSim expert episode ---------------------------------------------------------


@pytest.mark.timeout(300)
def test_tiny_model_writes_subgoals_and_actions_on_simulator_expert_screens(tiny_qwen25vl, expert_store):
    """One model, two roles, on the oracle's SettingsToggleWifi episode (3 expert steps = 3 states).

    A random model never closes <instruction>, so it would write no executable subgoal and the low level would
    never run; a short SFT warm-up on the planner prompts (the project's own ``sft_warmup``) teaches it the
    format first, as the paper warms up before RL.
    """
    from guiagent.data.store import TrajectoryStore
    from guiagent.policy.local import LocalPolicy
    from guiagent.policy.prompts import high_level_messages
    from guiagent.rollout.hierarchical import previous_action_lines
    from guiagent.trainer.batching import TrainingSample
    from guiagent.trainer.engine import TorchEngine, lr_schedule
    from guiagent.trainer.sft import sft_warmup

    (expert,) = TrajectoryStore(expert_store).iter_trajectories()
    policy = LocalPolicy.from_pretrained(tiny_qwen25vl)
    prompt = PromptConfig(actions=ActionSpaceConfig(max_pixels=64 * 28 * 28))
    tokenizer = policy.processor.tokenizer
    target = tokenizer(_subgoal("Tap Wi-Fi."), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    warmup = [
        TrainingSample(high_level_messages(expert.instruction, step.observation.screenshot_source(expert_store),
                                           previous_action_lines(expert.steps[:t], prompt), prompt), tuple(target))
        for t, step in enumerate(expert.steps)
    ]
    sft_warmup(TorchEngine(policy.model, lr=5e-3, schedule=lr_schedule("linear", 40)), policy.processor, warmup,
               steps=40, batch_size=3)
    policy.model.eval()

    config = HierarchicalConfig(prompt=prompt, n_subgoals=2, n_actions=2, high_max_tokens=len(target) + 8,
                                low_max_tokens=16, seed=0)
    groups = hierarchical_rollouts(policy, [expert], config, image_root=expert_store)
    samples = [t for g in groups for t in g]
    high = [t for t in samples if t.info["level"] == "high"]
    low = [t for t in samples if t.info["level"] == "low"]
    assert len(high) == 3 * 2 and [t.steps[0].index for t in high] == [0, 0, 1, 1, 2, 2]
    assert low, "no subgoal parsed: the warm-up did not teach the format"
    assert len(low) == 2 * sum(t.steps[0].info["subgoal"] is not None for t in high)
    for t in samples:
        step = t.steps[0]
        assert t.policy_version == policy.name and t.task_id == expert.task_id
        assert len(step.token_ids) == len(step.logprobs) >= 1 and all(lp <= 0 for lp in step.logprobs)
        assert step.observation == expert.steps[step.index].observation
    for t in high:
        step = t.steps[0]
        correct = step.info["low_level_correct"]
        expected = 1 + sum(correct) / len(correct) if step.info["subgoal"] is not None else 0.0
        assert step.reward == pytest.approx(expected)
    assert all(t.steps[0].reward in (0.0, 1.0) for t in low)
    batch = AdvantageBatch.from_trajectories(groups)
    advantages = get_advantage("hi_agent")(batch)
    assert len(advantages) == len(samples) and bool(advantages.isfinite().all())
    # Both levels train in one update: the trainer rebuilds each row's planner or executor prompt
    # (policy.prompts.step_messages) and its log-probs are the ones the rollout sampled with.
    from guiagent.trainer.update import policy_gradient_step

    metrics = policy_gradient_step(TorchEngine(policy.model, lr=1e-4), groups, advantages,
                                   processor=policy.processor, prompt=prompt, image_root=expert_store)
    assert metrics["samples"] == len(samples) and metrics["max_abs_logprob_diff"] < 1e-3
