"""Grounding rollouts (guiagent.rollout.grounding).

A scripted model (a stand-in for the model that answers each batched call with the next texts of a fixed list)
checks rewards, groups and batching by hand; the store tests read real converted ScreenSpot / UI-S1 stores;
the last case runs the tiny Qwen2.5-VL through the local backend.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image
from pydantic import ValidationError

from guiagent.actions import ActionSpaceConfig, format_action
from guiagent.algos import AdvantageBatch, get_advantage
from guiagent.data import samples as sample_files
from guiagent.data.convert import convert
from guiagent.data.store import EpisodeWriter, iter_samples
from guiagent.errors import DataError, PolicyError
from guiagent.policy.base import Generation
from guiagent.policy.prompts import PromptConfig
from guiagent.rollout.grounding import GroundingConfig, grounding_rollouts, iter_grounding_samples
from guiagent.types import Action, Observation, Step, Trajectory

W, H = 280, 560
# 280 x 560 = 156800 pixels = max_pixels, both sides multiples of 28: the model image is the screenshot itself,
# so model pixels are device pixels and the answers below land exactly where they say.
SPACE = ActionSpaceConfig(format="qwen25vl_mobile", max_pixels=200 * 28 * 28)
PROMPT = PromptConfig(actions=SPACE)
BOX = (60.0, 150.0, 160.0, 250.0)  # the target; its centre (110, 200) is the expert click


def _text(action: Action) -> str:
    return format_action(action, "qwen25vl_mobile", SPACE.geometry(W, H))


CENTRE = _text(Action.click(110, 200))
EDGE = _text(Action.click(160, 250))  # the box's bottom-right corner: inside when edges count
OUTSIDE = _text(Action.click(250, 520))
LONG_PRESS = _text(Action.long_press(110, 200))  # right place, wrong action type
GARBAGE = "tap somewhere please"  # does not parse


def _png(shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (W, H), (shade, 200, 255 - shade)).save(buf, format="PNG")
    return buf.getvalue()


def _sample(sample_id: str, box=BOX) -> Trajectory:
    step = Step(
        index=0,
        observation=Observation(W, H, screenshot=_png(len(sample_id) * 20)),
        action=Action.click(110, 200),
        target_boxes=(box,) if box else (),
    )
    return Trajectory(
        episode_id=sample_id,
        task_id=f"task-{sample_id}",
        seed=3,
        env_id="screenspot",
        policy_version="dataset",
        steps=(step,),
        instruction=f"open {sample_id}",
    )


class ScriptedModel:
    """Answers every request with the next text of ``texts``, across calls, and records each call."""

    name = "scripted-v1"

    def __init__(self, texts: list[str]):
        self.texts = list(texts)
        self.batch_sizes: list[int] = []
        self.seeds: list[int | None] = []
        self.requests: list = []

    def generate(self, requests, sampling):
        self.batch_sizes.append(len(requests))
        self.seeds.append(sampling.seed)
        self.requests += requests
        answered = len(self.requests) - len(requests)
        return [
            Generation(
                text=self.texts[answered + i],
                token_ids=(answered + i, 2),
                logprobs=(-0.5, -0.25),
                finish_reason="stop",
                prompt_tokens=100,
                model=self.name,
            )
            for i in range(len(requests))
        ]


def _rollouts(texts, samples, **options):
    model = ScriptedModel(texts)
    return model, grounding_rollouts(model, samples, GroundingConfig(prompt=PROMPT, **options))


# Rewards of [CENTRE, EDGE, OUTSIDE, LONG_PRESS, GARBAGE] against the box (60, 150)-(160, 250) on 280 x 560.
# The tool-call format asks for no <think> block, so the format term is 1 whenever the answer parses.
#   ui_r1 (R_F + R_T + R_C, R_C needs the type):  3, 3 (edges count), 1 + 1 + 0 = 2, 1 + 0 + 0 = 1, 0.
#   se_gui (format + in box + 1 - (d / d_max)^2, gated on type), normalised by 280 and 560:
#     centre (0.392857, 0.357143); farthest corner (1, 1): d_max^2 = 0.607143^2 + 0.642857^2 = 0.781888.
#     CENTRE: d = 0, 1 + 1 + 1 = 3.
#     EDGE (160, 250): d^2 = (50/280)^2 + (50/560)^2 = 0.031888 + 0.007972 = 0.039860,
#       1 - 0.039860 / 0.781888 = 0.949021 → 1 + 1 + 0.949021 = 2.949021.
#     OUTSIDE (250, 520): d^2 = 0.5^2 + 0.571429^2 = 0.576531 → 1 - 0.737357 = 0.262643 → 1 + 0 + 0.262643.
#     LONG_PRESS: the type gates the box and distance terms → 1.  GARBAGE: 0.
#   gta1 (1 iff a click lands in the box): 1, 1, 0, 0, 0.
@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("ui_r1", [3.0, 3.0, 2.0, 1.0, 0.0]),
        ("se_gui", [3.0, 2.949021, 1.262643, 1.0, 0.0]),
        ("gta1", [1.0, 1.0, 0.0, 0.0, 0.0]),
    ],
)
def test_rewards_under_the_presets_by_hand(preset, expected):
    answers = [CENTRE, EDGE, OUTSIDE, LONG_PRESS, GARBAGE]
    _, groups = _rollouts(answers, [_sample("a")], group_size=5, preset=preset)
    (group,) = groups
    steps = [traj.steps[0] for traj in group]
    assert [s.reward for s in steps] == pytest.approx(expected, abs=1e-5)
    assert [s.response for s in steps] == answers
    assert [s.info["in_box"] for s in steps] == [True, True, False, True, False]
    assert steps[0].action == Action.click(110, 200) and steps[0].parse_error is None
    assert steps[4].action is None and steps[4].parse_error  # the failure reason, for the metrics
    assert all(s.target_boxes == (BOX,) for s in steps)


def test_groups_rows_and_grpo_advantages():
    # Sample a: rewards (ui_r1) [3, 2, 2, 3]: mean 2.5, Bessel std sqrt(4 * 0.25 / 3) = 0.57735 → ±0.866025.
    # Sample b: every answer fails to parse: all 0, an all-equal group → advantage exactly 0.
    texts = [CENTRE, OUTSIDE, OUTSIDE, CENTRE] + [GARBAGE] * 4
    _, groups = _rollouts(texts, [_sample("a"), _sample("b")], group_size=4, preset="ui_r1")
    assert [len(g) for g in groups] == [4, 4]
    for group, sample_id in zip(groups, ("a", "b")):
        assert [t.info["rollout"] for t in group] == [0, 1, 2, 3]
        for traj in group:
            assert len(traj.steps) == 1 and traj.task_id == f"task-{sample_id}" and traj.seed == 3
            assert traj.info["sample_id"] == sample_id and traj.info["preset"] == "ui_r1"
            assert traj.policy_version == "scripted-v1" and traj.instruction == f"open {sample_id}"
    assert len({t.episode_id for g in groups for t in g}) == 8
    # Token ids and log-probs are the ones the backend returned for that request.
    assert [t.steps[0].token_ids for t in groups[1]] == [(4, 2), (5, 2), (6, 2), (7, 2)]
    assert all(t.steps[0].logprobs == (-0.5, -0.25) for g in groups for t in g)

    batch = AdvantageBatch.from_trajectories(groups)
    assert batch.rewards.tolist() == [3, 2, 2, 3, 0, 0, 0, 0]
    assert batch.group_ids.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert batch.traj_ids.tolist() == list(range(8)) and batch.step_ids.tolist() == [0] * 8
    assert batch.mask.all() and batch.matched is None
    advantages = get_advantage("grpo")(batch).tolist()
    assert advantages == pytest.approx([0.866025, -0.866025, -0.866025, 0.866025, 0, 0, 0, 0], abs=1e-5)


@pytest.mark.parametrize(("batch_size", "calls"), [(12, [12]), (5, [5, 5, 2]), (1, [1] * 12), (100, [12])])
def test_one_generate_call_per_round(batch_size, calls):
    samples = [_sample("a"), _sample("bb"), _sample("ccc")]
    model, groups = _rollouts([CENTRE] * 12, samples, group_size=4, batch_size=batch_size, seed=10)
    assert model.batch_sizes == calls
    # A round is seeded with seed + its first request's index, so a backend that seeds request i of a call with
    # seed + i (the vLLM client) gives each of the 12 requests its own seed, 10 .. 21, whatever the batch size.
    assert model.seeds == [10 + r * batch_size for r in range(len(calls))]
    per_request = [seed + i for seed, n in zip(model.seeds, model.batch_sizes) for i in range(n)]
    assert per_request == list(range(10, 22))
    # Requests go in sample → member order; a group may span two rounds (batch 5: b's members are in 0 and 1).
    prompts = [r.messages[-1]["content"][0]["text"] for r in model.requests]
    assert prompts == [f"The user query: open {s}" for s in ("a", "bb", "ccc") for _ in range(4)]
    rounds = [[t.steps[0].info["round"] for t in g] for g in groups]
    expected = [n // batch_size for n in range(12)]
    assert rounds == [expected[0:4], expected[4:8], expected[8:12]]
    assert all(t.steps[0].info["batch_size"] == calls[t.steps[0].info["round"]] for g in groups for t in g)
    # The G requests of a sample share one message list: its screenshot is decoded once.
    assert len({id(r.messages) for r in model.requests}) == 3


def test_seed_none_samples_unseeded():
    model, _ = _rollouts([CENTRE] * 4, [_sample("a")], group_size=4, batch_size=2, seed=None)
    assert model.seeds == [None, None]


def test_config_checks_the_preset_and_unknown_keys():
    with pytest.raises(ValidationError, match="unknown rule-reward preset 'ui-r1'.*gta1"):
        GroundingConfig(preset="ui-r1")
    with pytest.raises(ValidationError, match="group"):
        GroundingConfig(groups=4)
    assert GroundingConfig(preset="gui_r1_code").preset == "gui_r1_code"


def test_bad_samples_are_refused_before_generating():
    model = ScriptedModel([])
    with pytest.raises(DataError, match="no_box.*expert_box is missing"):  # gta1 needs the target's box
        grounding_rollouts(model, [_sample("a"), _sample("no_box", box=None)], GroundingConfig(preset="gta1"))
    two_steps = Trajectory(
        episode_id="two",
        task_id="two",
        seed=0,
        env_id="x",
        policy_version="dataset",
        steps=_sample("a").steps * 2,
    )
    with pytest.raises(DataError, match="two.*one step"):
        grounding_rollouts(model, [two_steps], GroundingConfig())
    assert model.batch_sizes == []
    # gui_r1_code falls back to 140 px around the expert point when there is no box.
    _, groups = _rollouts([CENTRE], [_sample("no_box", box=None)], group_size=1, preset="gui_r1_code")
    assert (
        groups[0][0].steps[0].reward == pytest.approx(1.0) and groups[0][0].steps[0].info["in_box"] is False
    )


def test_a_backend_that_drops_answers_is_an_error():
    class Short(ScriptedModel):
        def generate(self, requests, sampling):
            return super().generate(requests, sampling)[:-1]

    with pytest.raises(PolicyError, match="answered 1 of 2"):
        grounding_rollouts(Short([CENTRE] * 2), [_sample("a")], GroundingConfig(prompt=PROMPT, group_size=2))


def test_screenspot_store_samples(tmp_path):
    sample_files.write_screenspot_sample(tmp_path / "raw", "v2", per_platform=2)
    convert("screenspot_v2", tmp_path / "raw", tmp_path / "store")
    records = list(iter_samples(tmp_path / "store"))
    got = list(iter_grounding_samples(tmp_path / "store"))
    assert len(got) == len(records) == 6
    for record, sample in zip(records, got):
        (step,) = sample.steps
        x1, y1, x2, y2 = record["bbox_xyxy"]
        assert sample.episode_id == record["sample_id"] and sample.instruction == record["instruction"]
        assert step.target_boxes == ((x1, y1, x2, y2),)
        assert step.action == Action.click((x1 + x2) / 2, (y1 + y2) / 2)
        assert (step.observation.width, step.observation.height) == (record["width"], record["height"])
        assert step.observation.image(str(tmp_path / "store")).size == (record["width"], record["height"])
        assert sample.info["source"]["platform"] == record["platform"] and sample.env_id == "screenspot"


def test_episode_store_samples_are_the_boxed_click_steps(tmp_path):
    raw = sample_files.write_uis1_sample(tmp_path / "raw", episodes=3)
    convert("uis1", raw, tmp_path / "uis1", images=str(tmp_path / "raw" / "images"))
    from guiagent.data.store import iter_episodes

    clicks = [
        (e, s)
        for e in iter_episodes(tmp_path / "uis1")
        for s in e.steps
        if s.action is not None and s.action.type.value in ("click", "long_press")
    ]
    low = list(iter_grounding_samples(tmp_path / "uis1"))
    assert clicks and [g.episode_id for g in low] == [f"{e.episode_id}/{s.index}" for e, s in clicks]
    for (episode, step), sample in zip(clicks, low):
        assert sample.steps[0].action == step.action and sample.steps[0].target_boxes == step.target_boxes
        assert sample.instruction == step.observation.extras["step_instruction"]  # AndroidControl-Low
    high = list(iter_grounding_samples(tmp_path / "uis1", level="high"))
    assert [g.instruction for g in high] == [e.instruction for e, _ in clicks]

    # Raw AndroidControl carries no boxes: its store has no grounding samples ...
    sample_files.write_androidcontrol_sample(tmp_path / "ac", episodes=3, with_a11y=False)
    convert("androidcontrol", tmp_path / "ac", tmp_path / "ac_store")
    assert list(iter_grounding_samples(tmp_path / "ac_store")) == []
    # ... unless a step's AndroidControl info names candidate boxes.
    obs = Observation(W, H, screenshot_path="images/e/0.png", instruction="goal")
    click = Step(
        index=0,
        observation=obs,
        action=Action.click(110, 200),
        info={"androidcontrol": {"action": {}, "candidate_bbox": [list(BOX)]}},
    )
    typing = Step(index=1, observation=obs, action=Action.type_text("x"))
    with EpisodeWriter(tmp_path / "boxed", "androidcontrol", source="test") as writer:
        writer.add(
            Trajectory(
                episode_id="e",
                task_id="e",
                seed=0,
                env_id="ac",
                policy_version="dataset",
                steps=(click, typing),
                instruction="goal",
            ),
            {"images/e/0.png": _png(0)},
        )
    (only,) = iter_grounding_samples(tmp_path / "boxed")
    assert only.episode_id == "e/0" and only.steps[0].target_boxes == (BOX,) and only.instruction == "goal"


@pytest.mark.timeout(300)
def test_tiny_model_rollout_on_a_screenspot_store(tiny_qwen25vl, tmp_path):
    from guiagent.policy.local import LocalPolicy

    sample_files.write_screenspot_sample(tmp_path / "raw", "v2", per_platform=1)
    convert("screenspot_v2", tmp_path / "raw", tmp_path / "store")
    samples = list(iter_grounding_samples(tmp_path / "store"))[:2]
    policy = LocalPolicy.from_pretrained(tiny_qwen25vl)
    config = GroundingConfig(
        group_size=3,
        batch_size=4,
        max_tokens=8,
        preset="se_gui",
        prompt=PromptConfig(actions=ActionSpaceConfig(max_pixels=64 * 28 * 28)),
    )
    groups = grounding_rollouts(policy, samples, config, image_root=tmp_path / "store")
    assert [len(g) for g in groups] == [3, 3]
    rounds = [t.steps[0].info["round"] for g in groups for t in g]
    assert rounds == [0, 0, 0, 0, 1, 1]  # 6 requests in rounds of 4
    for traj in (t for g in groups for t in g):
        (step,) = traj.steps
        assert traj.policy_version == policy.name
        assert len(step.token_ids) == len(step.logprobs) >= 1
        assert all(lp <= 0 for lp in step.logprobs)
        assert 0.0 <= step.reward <= 3.0 and (step.action is None) == (step.parse_error is not None)
    advantages = get_advantage("grpo")(AdvantageBatch.from_trajectories(groups))
    assert advantages.shape == (6,) and bool(advantages.isfinite().all())


def test_simulator_expert_store_and_malformed_boxes(expert_store, tmp_path):
    # The MobileSim oracle's episodes (a trajectory store) label their clicks with the tapped node's box.
    from guiagent.data.store import iter_episodes

    (episode,) = iter_episodes(expert_store)
    boxed = [s for s in episode.steps if s.target_boxes and s.action.type.value == "click"]
    got = list(iter_grounding_samples(expert_store))
    assert boxed and [g.steps[0].target_boxes for g in got] == [s.target_boxes for s in boxed]
    assert all(g.instruction == episode.instruction for g in got)  # no step instructions: the goal
    with pytest.raises(ValueError, match="level"):
        next(iter_grounding_samples(expert_store, level="mid"))

    obs = Observation(W, H, screenshot_path="images/e/0.png")
    upside_down = Step(index=0, observation=obs, action=Action.click(1, 1),
                       info={"androidcontrol": {"candidate_bbox": [[50, 50, 10, 10]]}})
    with EpisodeWriter(tmp_path / "bad", "androidcontrol", source="test") as writer:
        writer.add(Trajectory(episode_id="e", task_id="e", seed=0, env_id="ac", policy_version="dataset",
                              steps=(upside_down,)), {"images/e/0.png": _png(0)})
    with pytest.raises(DataError, match="record e step 0.*x1 <= x2"):
        list(iter_grounding_samples(tmp_path / "bad"))


def test_uis1_format_needs_its_think_block_for_the_format_term():
    # ui_r1 in the uis1 format, whose prompt asks for <think>: with it 1 + 1 + 1 = 3, without it 0 + 1 + 1 = 2.
    space = ActionSpaceConfig(format="uis1", max_pixels=SPACE.max_pixels)
    geometry = space.geometry(W, H)
    answers = [format_action(Action.click(110, 200), "uis1", geometry, thought=thought) for thought in ("x", None)]
    model = ScriptedModel(answers)
    config = GroundingConfig(prompt=PromptConfig(actions=space), group_size=2, preset="ui_r1")
    (group,) = grounding_rollouts(model, [_sample("a")], config)
    assert [t.steps[0].reward for t in group] == [3.0, 2.0]
    assert "<think></think>" in model.requests[0].messages[0]["content"]  # the prompt asks for the block
