"""Hi-Agent hierarchical rollouts: a high level writes subgoals, a low level acts on them (arXiv 2510.14388).

At every *state* (an expert step's screen, as in the semi-online rollout, or any observation wrapped in a
one-step trajectory with its reference action) the high-level policy writes G subgoals
``<reasoning>…</reasoning><instruction>…</instruction>`` from the task, the previous actions and the screen;
for every subgoal that parses, the low-level policy writes G′ actions from the screen and the subgoal alone.
Both levels are sampled at the same state and never rolled forward from their own outputs, so n states
cost n·G high-level and at most n·G·G′ low-level samples (not G^n): the paper's answer to GRPO's path
explosion on long tasks.

Rewards:

* low level: action match against the expert action (:func:`guiagent.rewards.match_action`, UI-S1's
  training rule, with the step's target box): 1 on a match, else 0 (the registered ``action_match``); or any
  registered reward in ``low_level_reward``, e.g. UI-S1's graded step reward 0/0.1/0.5/1 (``uis1_step``),
  which also rewards format and action type;
* high level: :func:`guiagent.algos.advantages.foresight_reward` — 1 for the format plus the success rate of
  the low level's G′ samples executing that subgoal (their exact-match fraction); 0 for a subgoal that does
  not parse (nothing can execute it, so it gets no low-level samples).

Batching: all high-level prompts of the call go to the policy in **one** ``generate`` call, then all
low-level prompts in one more (none when no subgoal parsed).

One model or two (DESIGN.md: "two LoRA adapters of one base model on one vLLM server"): with
``high_model = low_model = None`` one model plays both roles, told apart by their prompts; naming
``high_model`` / ``low_model`` sends each level's requests to that served model (``GenerationRequest.model``,
e.g. two LoRA adapters); a separate backend object for the low level can be passed as ``low_policy``.

What the trainer gets (the contract of :meth:`guiagent.algos.AdvantageBatch.from_trajectories` and the
registered ``hi_agent`` estimator, used unchanged): a list of groups; each sample is a one-step
:class:`~guiagent.types.Trajectory`, and each group holds the samples one GRPO normalisation compares —

* per state, one high-level group of its G subgoals;
* per state, the low-level samples: one group per parsed subgoal (its G′ actions, which share one prompt:
  ``low_level_groups="subgoal"``, the default) or one group of all of them (``"state"``).

``hi_agent`` normalises rewards within (group, step); since every group here is one state of one level,
that is exactly "GRPO-normalised per state at each level", and the two levels never mix. ``Step.index`` is
the expert step, ``Step.reward`` the reward above, ``Step.token_ids`` / ``Step.logprobs`` what was
generated. ``Trajectory.info["level"]`` is ``"high"`` or ``"low"`` (with two adapters the trainer routes each
row's loss to its level's adapter by it; ``policy_version`` records the model that sampled it). The
low-level match verdict lives in ``Step.info`` (``exact_match``, ``type_match``, ``fmt``), not in
``Step.matched``: ``from_trajectories`` takes ``matched`` from every step or from none, and a subgoal is not
an action that could match. :func:`guiagent.policy.prompts.step_messages` rebuilds any sample's prompt exactly (for re-scoring and the update).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from guiagent.config import StrictModel
from guiagent.policy.base import generate_all
from guiagent.policy.prompts import PromptConfig, high_level_messages, load_image, low_level_messages
from guiagent.rewards.registry import RewardConfig
from guiagent.rollout.experts import check_expert_trajectories
from guiagent.types import Step, Trajectory

# Subgoal parse failure reasons (SubgoalFailure.reason).
NOT_TEXT = "not_text"  # the model output is not a string
NO_INSTRUCTION = "no_instruction"  # no closed <instruction>…</instruction> block
EMPTY_INSTRUCTION = "empty_instruction"  # the instruction block holds only whitespace
NO_REASONING = "no_reasoning"  # no non-empty <reasoning>…</reasoning> block before the instruction

_REASONING = re.compile(r"<reasoning>(.*?)</reasoning>", re.DOTALL)
_INSTRUCTION = re.compile(r"<instruction>(.*?)</instruction>", re.DOTALL)


@dataclass(frozen=True)
class Subgoal:
    """A parsed high-level answer.

    Attributes:
        reasoning: The text of the ``<reasoning>`` block, stripped.
        instruction: The subgoal for the low level, stripped.
    """

    reasoning: str
    instruction: str


@dataclass(frozen=True)
class SubgoalFailure:
    """Why high-level text is not a subgoal.

    Attributes:
        reason: Machine code: ``not_text``, ``no_instruction``, ``empty_instruction`` or ``no_reasoning``.
        detail: Human-readable explanation.
        text: The model text (its ``repr`` when it was not a string).
    """

    reason: str
    detail: str
    text: str


def parse_subgoal(text: Any) -> Subgoal | SubgoalFailure:
    """Parse ``<reasoning>…</reasoning><instruction>…</instruction>``; never raises on model text.

    The reasoning block must come first and hold some text (the format asks the planner to reason first);
    text around the blocks is ignored; the first instruction block after the reasoning is the subgoal.

    Returns:
        The :class:`Subgoal`, or a :class:`SubgoalFailure` whose ``reason`` rewards and metrics count.
    """
    if not isinstance(text, str):
        return SubgoalFailure(NOT_TEXT, f"model output must be str, got {type(text).__name__}", repr(text)[:200])
    reasoning = _REASONING.search(text)
    start = reasoning.end() if reasoning is not None else 0
    instruction = _INSTRUCTION.search(text, start)
    if instruction is None:
        if reasoning is not None and _INSTRUCTION.search(text):
            return SubgoalFailure(NO_REASONING, "the <reasoning> block must come before <instruction>", text)
        return SubgoalFailure(NO_INSTRUCTION, "no closed <instruction>…</instruction> block", text)
    if reasoning is None or not reasoning.group(1).strip():
        return SubgoalFailure(NO_REASONING, "no non-empty <reasoning>…</reasoning> block before the instruction", text)
    subgoal = instruction.group(1).strip()
    if not subgoal:
        return SubgoalFailure(EMPTY_INSTRUCTION, "the <instruction> block is empty", text)
    return Subgoal(reasoning=reasoning.group(1).strip(), instruction=subgoal)


class HierarchicalConfig(StrictModel):
    """Settings of Hi-Agent hierarchical rollouts (arXiv 2510.14388)."""

    n_subgoals: int = Field(4, ge=1, description="G: subgoals the high level writes per state (one GRPO group).")
    n_actions: int = Field(
        4, ge=1, description="G′: actions the low level writes per parsed subgoal (its foresight sample)."
    )
    low_level_groups: Literal["subgoal", "state"] = Field(
        "subgoal",
        description="Low-level GRPO groups: the G′ actions of one subgoal (same prompt), or all low-level "
        "samples of the state.",
    )
    low_level_reward: RewardConfig = Field(
        default_factory=lambda: RewardConfig(name="action_match"),
        description="Registered low-level reward: action_match (1/0), or e.g. uis1_step (UI-S1's graded "
        "0/0.1/0.5/1). The foresight reward counts exact matches either way.",
    )
    prompt: PromptConfig = Field(
        default_factory=PromptConfig,
        description="The low level's answer format and resize bounds (prompt.actions, which the parser uses); "
        "the high level sees the same image and history_text_steps previous actions as text.",
    )
    high_model: str | None = Field(
        None, description="Served model (e.g. LoRA adapter) that writes subgoals; None: the backend's default."
    )
    low_model: str | None = Field(
        None, description="Served model (e.g. LoRA adapter) that writes actions; None: the backend's default."
    )
    high_max_tokens: int = Field(256, ge=1, description="Most tokens per subgoal (reasoning + instruction).")
    low_max_tokens: int = Field(128, ge=1, description="Most tokens per low-level action.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of both levels.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass of both levels.")
    seed: int | None = Field(
        None,
        description="Sampling seed (high level: seed, low level: seed + 1); None draws fresh randomness. vLLM "
        "seeds each request, so a seeded call answers identical prompts identically: the G samples of a "
        "state would all be the same there.",
    )


# --- Prompts --------------------------------------------------------------------------------------------


def previous_action_lines(steps: Sequence[Step], prompt: PromptConfig) -> list[str]:
    """What the high level is told about earlier steps: each step's own step instruction when the data has
    one (AndroidControl/UI-S1 ``step_instruction``, i.e. a subgoal), else its action in the answer format."""
    from guiagent.actions import format_action

    lines = []
    for step in steps:
        obs = step.observation
        written = obs.extras.get("step_instruction")
        if isinstance(written, str) and written.strip():
            lines.append(written.strip())
        elif step.action is not None:
            lines.append(format_action(step.action, prompt.actions.format, prompt.geometry(obs.width, obs.height)))
        else:
            lines.append(step.response)
    return lines


# --- Rollouts -------------------------------------------------------------------------------------------


def _generate(policy: Any, requests: list[Any], sampling: Any) -> tuple[list[Any], float]:
    """One batched ``policy.generate`` call, checked to answer every request, and its seconds."""
    start = time.perf_counter()
    generations = generate_all(policy, requests, sampling)
    return generations, time.perf_counter() - start


@dataclass(frozen=True)
class _State:
    """One state both levels are sampled at."""

    expert: Trajectory
    step: Step
    screen: Any  # the decoded model image, shared by every prompt of the state
    previous_actions: list[str]


def hierarchical_rollouts(
    policy: Any,
    experts: Sequence[Trajectory],
    config: HierarchicalConfig | None = None,
    *,
    low_policy: Any = None,
    image_root: str | os.PathLike | None = None,
    policy_version: str | None = None,
) -> list[list[Trajectory]]:
    """Sample both Hi-Agent levels at every step of ``experts`` and reward them.

    Args:
        policy: Anything with ``generate(requests, sampling) -> [Generation]``; it answers the high level,
            and the low level too unless ``low_policy`` is given.
        experts: Trajectories whose steps are the states: each step needs its expert ``action`` (device
            pixels) and its observation's screenshot; ``target_boxes[0]`` is the target the match uses.
        config: G, G′, groups, rewards, prompt, model names, sampling (default: ``HierarchicalConfig()``).
        low_policy: A separate backend for the low level (e.g. a second local model).
        image_root: Directory relative screenshot paths resolve against (the episode store root).
        policy_version: Recorded on every sample; default: the model name the backend reports.

    Returns:
        Groups in state order (expert → step), each state's high-level group first, then its low-level
        group(s); a state whose subgoals all fail to parse has no low-level group. Every sample is a
        one-step trajectory (see the module docstring for its fields).

    Raises:
        DataError: an expert trajectory is empty or a step has no expert action.
        PolicyError: a backend failed or dropped answers.
    """
    from guiagent.algos.advantages import foresight_reward
    from guiagent.policy.base import GenerationRequest, SamplingParams
    from guiagent.rewards import match_action, parse_response
    from guiagent.rewards.scoring import Rewarder, expert_step_sample

    config = config or HierarchicalConfig()
    rewarder = Rewarder(config.low_level_reward)
    check_expert_trajectories(experts)
    prompt = config.prompt
    fmt = prompt.actions.format
    g, g_low = config.n_subgoals, config.n_actions
    start = time.perf_counter()
    states = [
        _State(expert, step, load_image(step.observation.screenshot_source(image_root), prompt.actions),
               previous_action_lines(expert.steps[:t], prompt))
        for expert in experts
        for t, step in enumerate(expert.steps)
    ]

    # High level: G requests per state in one call; high sample i belongs to state i // g.
    high_requests = []
    for state in states:
        instruction = state.expert.instruction or state.step.observation.instruction
        messages = high_level_messages(instruction, state.screen, state.previous_actions, prompt, state.screen.size)
        high_requests += [GenerationRequest(messages, model=config.high_model)] * g
    sampling = {"temperature": config.temperature, "top_p": config.top_p}
    high_seed = config.seed
    high_sampling = SamplingParams(max_tokens=config.high_max_tokens, seed=high_seed, **sampling)
    highs, high_s = _generate(policy, high_requests, high_sampling)
    subgoals = [parse_subgoal(generation.text) for generation in highs]

    # Low level: G′ requests per parsed subgoal in one call; owners[j] = the high sample request j executes.
    low_requests, owners = [], []
    for i, subgoal in enumerate(subgoals):
        if isinstance(subgoal, Subgoal):
            screen = states[i // g].screen
            messages = low_level_messages(subgoal.instruction, screen, prompt, screen.size)
            low_requests += [GenerationRequest(messages, model=config.low_model)] * g_low
            owners += [i] * g_low
    low_seed = None if config.seed is None else config.seed + 1
    low_sampling = SamplingParams(max_tokens=config.low_max_tokens, seed=low_seed, **sampling)
    lows, low_s = _generate(low_policy if low_policy is not None else policy, low_requests, low_sampling)

    def generated(generation: Any, seed: int | None, batch_size: int) -> dict[str, Any]:
        return {"seed": seed, "finish_reason": generation.finish_reason,
                "prompt_tokens": generation.prompt_tokens, "batch_size": batch_size}

    executed: dict[int, list[tuple[Step, str]]] = {i: [] for i in range(len(highs))}  # high i → (step, model)
    for i, generation in zip(owners, lows):
        expert_step = states[i // g].step
        obs = expert_step.observation
        parsed = parse_response(generation.text, fmt, prompt.geometry(obs.width, obs.height))
        # The training matcher takes one box: the expert target's, which readers put first.
        box = expert_step.target_boxes[0] if expert_step.target_boxes else None
        match = match_action(parsed.action, expert_step.action, box, (obs.width, obs.height))
        reward = rewarder.score([expert_step_sample(parsed, expert_step)])[0]
        step = Step(
            index=expert_step.index,
            observation=obs,
            action=parsed.action,
            response=generation.text,
            parse_error=parsed.failure,
            reward=reward,
            logprobs=tuple(generation.logprobs),
            token_ids=generation.token_ids,
            timings={"policy_batch": low_s},
            info={"subgoal": subgoals[i].instruction, "fmt": match.fmt, "type_match": match.type_match,
                  "exact_match": match.exact_match, **generated(generation, low_seed, len(low_requests))},
        )
        executed[i].append((step, generation.model))

    high_steps = []
    for i, (generation, subgoal) in enumerate(zip(highs, subgoals)):
        state, parsed_ok = states[i // g], isinstance(subgoal, Subgoal)
        correct = [bool(step.info["exact_match"]) for step, _ in executed[i]]
        high_steps.append(Step(
            index=state.step.index,
            observation=state.step.observation,
            action=None,  # a subgoal is not a device action
            response=generation.text,
            parse_error=None if parsed_ok else f"{subgoal.reason}: {subgoal.detail}",
            reward=foresight_reward(parsed_ok, correct),
            logprobs=tuple(generation.logprobs),
            token_ids=generation.token_ids,
            timings={"policy_batch": high_s},
            info={"subgoal": subgoal.instruction if parsed_ok else None,
                  "reasoning": subgoal.reasoning if parsed_ok else None,
                  "low_level_correct": correct,
                  "success_rate": sum(correct) / len(correct) if correct else None,
                  "previous_actions": state.previous_actions,
                  **generated(generation, high_seed, len(high_requests))},
        ))

    total = time.perf_counter() - start
    common = {
        "n_subgoals": g,
        "n_actions": g_low,
        "low_level_groups": config.low_level_groups,
        "low_level_reward": config.low_level_reward.model_dump(),
        "format": fmt,
        "sampling": {**sampling, "high_max_tokens": config.high_max_tokens, "low_max_tokens": config.low_max_tokens,
                     "seed": config.seed},
    }

    def sample(state: _State, step: Step, model: str, info: dict[str, Any]) -> Trajectory:
        return Trajectory(
            episode_id=uuid.uuid4().hex,
            task_id=state.expert.task_id,
            seed=state.expert.seed,
            env_id="hierarchical",
            policy_version=policy_version or model,
            steps=(step,),
            instruction=state.expert.instruction,
            timings={"total": total},
            info={"expert_episode_id": state.expert.episode_id, "state": state.step.index, **info, **common},
        )

    groups: list[list[Trajectory]] = []
    for s, state in enumerate(states):
        low_groups = []
        for k in range(s * g, (s + 1) * g):
            low_groups.append([
                sample(state, step, model, {"level": "low", "subgoal_sample": k - s * g, "action_sample": a})
                for a, (step, model) in enumerate(executed[k])
            ])
        groups.append([sample(state, high_steps[k], highs[k].model, {"level": "high", "subgoal_sample": k - s * g})
                       for k in range(s * g, (s + 1) * g)])
        if config.low_level_groups == "subgoal":
            groups += [group for group in low_groups if group]
        elif any(low_groups):
            groups.append([t for group in low_groups for t in group])
    return groups


__all__ = [
    "HierarchicalConfig",
    "Subgoal",
    "SubgoalFailure",
    "hierarchical_rollouts",
    "parse_subgoal",
    "previous_action_lines",
]
