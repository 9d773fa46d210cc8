"""Grounding rollouts: G single-step answers per (screenshot, instruction) prompt, scored by a rule reward.

The single-step grounding GRPO of UI-R1 (arXiv 2503.21620), GUI-R1 (arXiv 2504.10458), GTA1 (arXiv
2507.05791) and SE-GUI (arXiv 2505.12370): the policy sees one screenshot and one instruction, answers with
one action in its own format (a ``click`` of the ``mobile_use`` / ``computer_use`` tool, or UI-S1's action
JSON — no format here has a box answer, so the answer is a point), and the answer is scored against the
target element's box by :func:`guiagent.rewards.rule_reward` under one of ``RULE_PRESETS``.

A grounding *sample* is a single-step expert :class:`~guiagent.types.Trajectory`: its one step holds the
screenshot (``observation``), the expert action (a click at the target) and the target's box
(``target_boxes``). :func:`iter_grounding_samples` makes them from a converted store:

* a ScreenSpot v1/v2/Pro store (``samples.jsonl``): one sample per record — the instruction, a click at the
  centre of ``bbox_xyxy``, that box;
* an episode store (AndroidControl, UI-S1, MobileSim experts): one sample per click-like step that has a
  target box (``Step.target_boxes``, which the UI-S1 reader fills from ``check_options.candidate_bbox``, else
  ``info["androidcontrol"]["candidate_bbox"]``). The instruction is the step instruction (AndroidControl-Low)
  when the step has one, else the episode goal. Other steps are not grounding samples (raw AndroidControl
  TFRecords carry no boxes, so their store gives none).

Batching: the ``len(samples) × G`` requests are cut, in sample → member order, into rounds of
``batch_size``; each round is **one** ``policy.generate`` call. A group's members may span two rounds. The G requests of a sample share one message list (its screenshot is decoded
and resized once).

What the trainer gets (the contract of :meth:`guiagent.algos.AdvantageBatch.from_trajectories`): one group per
sample, in ``samples`` order, of G one-step trajectories in member order. The step carries the response, the
parsed action or ``parse_error``, ``token_ids`` / ``logprobs`` as generated, ``reward``, the sample's
``target_boxes``, ``info["in_box"]`` (the point lies in a target box, edges included: ScreenSpot's correctness)
and the round, seed and batch size; the trajectory carries ``policy_version``.

Format term: UI-R1, GUI-R1 and InfiGUI-R1 require a ``<think>`` block in their own output format. Only the
``uis1`` format here asks for one, so for the tool-call formats the format term is 1 when the answer parses
(as the semi-online rollout judges it): the registered ``rule`` reward is called with ``require_think`` set
from the prompt's format, through the reward registry like every rollout kind's rewards.

Seeds: a round's call is seeded with ``seed`` + the index of its first request (``round × batch_size``). The
vLLM client seeds request i of a call with the call's seed + i, so every request of a run gets its own seed
(seed + its index) and the G copies of a prompt differ even when they span two rounds; the local backend
draws a call's rows from one stream seeded once. ``seed=None`` leaves randomness to the backend — avoid it
with the local backend, which restores its RNG after each call, so unseeded calls repeat each other.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from pydantic import Field, field_validator

from guiagent.config import StrictModel
from guiagent.errors import DataError
from guiagent.policy.prompts import PromptConfig, build_messages
from guiagent.rewards import RULE_PRESETS, format_has_think, parse_response, rule_preset, rule_reward
from guiagent.rewards.matching import POINT_TYPES, box_center, point_in_box
from guiagent.rewards.registry import RewardConfig
from guiagent.rewards.sample import check_box
from guiagent.rewards.scoring import Rewarder, expert_step_sample
from guiagent.types import Action, Observation, PixelBox, Step, Trajectory


class GroundingConfig(StrictModel):
    """Settings of grounding rollouts."""

    group_size: int = Field(8, ge=1, description="G: samples per prompt (one GRPO comparison group).")
    preset: str = Field(
        "gta1",
        description="Rule-reward preset (guiagent.rewards.RULE_PRESETS): ui_r1, gui_r1, gui_r1_code, "
        "infigui_r1, gta1, se_gui.",
    )
    batch_size: int = Field(
        64,
        ge=1,
        description="Requests per policy.generate call; prompts x G are answered in rounds of this size.",
    )
    prompt: PromptConfig = Field(
        default_factory=PromptConfig,
        description="The policy's prompt: its answer format (the parser reads the same) and resize bounds.",
    )
    max_tokens: int = Field(64, ge=1, description="Most tokens per generated response.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    seed: int | None = Field(
        0,
        description="Base sampling seed; a round is seeded with seed + round x batch_size (the index of its "
        "first request). None leaves randomness to the backend.",
    )

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, name: str) -> str:
        if name not in RULE_PRESETS:
            raise ValueError(
                f"unknown rule-reward preset {name!r}; presets: {', '.join(sorted(RULE_PRESETS))}"
            )
        return name


def _target_boxes(step: Step) -> tuple[PixelBox, ...]:
    """The step's target boxes: ``target_boxes``, else AndroidControl's ``candidate_bbox`` in its info.

    Raises:
        ValueError / TypeError: a box is not four finite numbers with x1 <= x2 and y1 <= y2.
    """
    boxes = step.target_boxes
    androidcontrol = step.info.get("androidcontrol")
    if not boxes and isinstance(androidcontrol, dict):
        boxes = androidcontrol.get("candidate_bbox") or ()
    return tuple(check_box(box, "target box") for box in boxes)


def iter_grounding_samples(
    root: str | os.PathLike, level: Literal["low", "high"] = "low"
) -> Iterator[Trajectory]:
    """Stream the grounding samples of a converted store (see the module docstring).

    Args:
        root: A store directory: ScreenSpot (``samples.jsonl``) or episodes (AndroidControl, UI-S1, experts).
        level: For episode stores, ``"low"`` prompts with the step instruction when there is one (else the
            goal), ``"high"`` always with the goal.

    Yields:
        Single-step expert trajectories; screenshot paths stay store-relative (pass ``image_root=root`` to
        :func:`grounding_rollouts`). ``episode_id`` / ``task_id``: the ScreenSpot ``sample_id``, or
        ``<episode_id>/<step index>``; ``info["source"]`` holds the ScreenSpot record or the episode and step.

    Raises:
        DataError: a record of the store is corrupt (from the store readers), or a box is malformed.
        ValueError: ``level`` is neither ``"low"`` nor ``"high"``.
    """
    from guiagent.data.store import iter_episodes, iter_samples, read_manifest

    if level not in ("low", "high"):
        raise ValueError(f"level must be 'low' or 'high', got {level!r}")
    dataset = read_manifest(root).get("dataset") or "store"
    for record in iter_samples(root):
        sample_id = str(record["sample_id"])
        try:
            box = check_box(record["bbox_xyxy"], "bbox_xyxy")
        except ValueError as exc:
            raise DataError(str(exc), file=str(root), record=sample_id) from None
        observation = Observation(
            width=record["width"],
            height=record["height"],
            screenshot_path=record["image"],
            instruction=record["instruction"],
        )
        step = Step(
            index=0, observation=observation, action=Action.click(*box_center(box)), target_boxes=(box,)
        )
        yield Trajectory(
            episode_id=sample_id,
            task_id=sample_id,
            seed=0,
            env_id=dataset,
            policy_version="dataset",
            steps=(step,),
            instruction=record["instruction"],
            info={"source": {k: v for k, v in record.items() if k != "image"}},
        )
    for episode in iter_episodes(root):
        for step in episode.steps:
            if step.action is None or step.action.type not in POINT_TYPES:
                continue
            try:
                boxes = _target_boxes(step)
            except (TypeError, ValueError) as exc:
                raise DataError(
                    f"malformed target box: {exc}",
                    file=str(root),
                    record=f"{episode.episode_id} step {step.index}",
                ) from None
            if not boxes:
                continue
            expert_step = Step(index=0, observation=step.observation, action=step.action, target_boxes=boxes)
            step_instruction = step.observation.extras.get("step_instruction")
            instruction = (
                step_instruction
                if level == "low" and step_instruction
                else episode.instruction or step.observation.instruction
            )
            sample_id = f"{episode.episode_id}/{step.index}"
            yield Trajectory(
                episode_id=sample_id,
                task_id=sample_id,
                seed=episode.seed,
                env_id=dataset,
                policy_version="dataset",
                steps=(expert_step,),
                instruction=instruction,
                info={"source": {"episode_id": episode.episode_id, "step": step.index, "level": level}},
            )


def grounding_rollouts(
    policy: Any,
    samples: Sequence[Trajectory],
    config: GroundingConfig = GroundingConfig(),  # noqa: B008 (frozen: a shared default is safe)
    *,
    image_root: str | os.PathLike | None = None,
    policy_version: str | None = None,
) -> list[list[Trajectory]]:
    """Answer each grounding sample ``config.group_size`` times in batched rounds and score every answer.

    Args:
        policy: Anything with ``generate(requests, sampling) -> [Generation]``
            (:class:`guiagent.policy.base.Policy`: the local backend or the vLLM client).
        samples: S single-step expert trajectories (:func:`iter_grounding_samples`): the step's observation
            (screenshot bytes or a path relative to ``image_root``), expert ``action`` (device pixels) and
            ``target_boxes``; the prompt's instruction is the trajectory's ``instruction``.
        config: G, preset, batch size, prompt, sampling.
        image_root: Directory relative screenshot paths resolve against (the store root).
        policy_version: Recorded on every trajectory; default: the model name the backend reports.

    Returns:
        S groups (in ``samples`` order) of G one-step trajectories (member order), every step rewarded.
        ``ceil(S * G / batch_size)`` ``generate`` calls were made.

    Raises:
        DataError: a sample does not have exactly one step with an expert action, or the preset needs a
            target box the sample lacks (checked before anything is generated).
        PolicyError: the backend failed, or answered a different number of requests than it was sent.
    """
    from guiagent.policy.base import GenerationRequest, SamplingParams, generate_all

    reward_config = rule_preset(config.preset)
    for sample in samples:
        if len(sample.steps) != 1 or sample.steps[0].action is None:
            raise DataError("a grounding sample is one step with an expert action", record=sample.episode_id)
        step = sample.steps[0]
        size = (step.observation.width, step.observation.height)
        box = step.target_boxes[0] if step.target_boxes else None
        try:  # the expert scored against itself raises exactly where scoring an answer would (no box, say)
            rule_reward(step.action, step.action, box, size, reward_config)
        except DataError as exc:
            raise DataError(f"preset {config.preset!r}: {exc}", record=sample.episode_id) from None
    prompt = config.prompt
    fmt = prompt.actions.format
    # Rewards through the registry: the rule preset, its format term needing a <think> block only when the
    # prompt's format asks for one (uis1).
    rewarder = Rewarder(RewardConfig(name="rule", options={"preset": config.preset,
                                                           "require_think": format_has_think(fmt)}))
    group_size = config.group_size
    pairs = [(s, k) for s in range(len(samples)) for k in range(group_size)]
    messages: dict[int, list[dict[str, Any]]] = {}  # per sample while its members are being answered
    steps: list[list[Step]] = [[] for _ in samples]
    model = ""
    start = time.perf_counter()
    for round_index, first in enumerate(range(0, len(pairs), config.batch_size)):
        chunk = pairs[first : first + config.batch_size]
        for s, _ in chunk:
            if s not in messages:
                sample = samples[s]
                screen = sample.steps[0].observation.screenshot_source(image_root)
                messages[s] = build_messages(
                    sample.instruction or sample.steps[0].observation.instruction, screen, (), prompt
                )
        seed = None if config.seed is None else config.seed + first
        sampling = SamplingParams(
            max_tokens=config.max_tokens, temperature=config.temperature, top_p=config.top_p, seed=seed
        )
        t0 = time.perf_counter()
        generations = generate_all(policy, [GenerationRequest(messages[s]) for s, _ in chunk], sampling)
        generate_s = time.perf_counter() - t0
        for (s, k), generation in zip(chunk, generations):
            expert = samples[s].steps[0]
            obs = expert.observation
            parsed = parse_response(generation.text, fmt, prompt.geometry(obs.width, obs.height))
            reward = rewarder.score([expert_step_sample(parsed, expert)])[0]
            point = parsed.action.point if parsed.action is not None else None
            steps[s].append(
                Step(
                    index=0,
                    observation=obs,
                    action=parsed.action,
                    response=generation.text,
                    parse_error=parsed.failure,
                    reward=reward,
                    logprobs=tuple(generation.logprobs),
                    token_ids=generation.token_ids,
                    target_boxes=expert.target_boxes,
                    timings={"policy_batch": generate_s},
                    info={
                        "in_box": point is not None
                        and any(point_in_box(point, b) for b in expert.target_boxes),
                        "round": round_index,
                        "seed": seed,
                        "batch_size": len(chunk),
                        "finish_reason": generation.finish_reason,
                        "prompt_tokens": generation.prompt_tokens,
                    },
                )
            )
            model = model or generation.model
            if k == group_size - 1:
                del messages[s]  # its last member is answered: free the decoded screenshot
    total = time.perf_counter() - start
    return [
        [
            Trajectory(
                episode_id=uuid.uuid4().hex,
                task_id=sample.task_id,
                seed=sample.seed,
                env_id="grounding",
                policy_version=policy_version or model,
                steps=(step,),
                instruction=sample.instruction,
                timings={"total": total},
                info={
                    "sample_id": sample.episode_id,
                    "rollout": k,
                    "group_size": group_size,
                    "preset": config.preset,
                    "format": fmt,
                    "sampling": {
                        "temperature": config.temperature,
                        "top_p": config.top_p,
                        "max_tokens": config.max_tokens,
                        "seed": config.seed,
                    },
                },
            )
            for k, step in enumerate(group)
        ]
        for sample, group in zip(samples, steps)
    ]


__all__ = ["GroundingConfig", "grounding_rollouts", "iter_grounding_samples"]
