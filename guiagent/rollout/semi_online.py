"""UI-S1 semi-online rollouts: the policy plays expert trajectories on the expert's screens (arXiv 2509.11543).

For every expert trajectory, N rollouts run in lockstep. At expert step t every unfinished rollout sees
the expert screen S*_t and a prompt holding *its own* earlier responses; all unfinished rollouts of the
whole batch are answered by **one** batched ``policy.generate`` call per round. Each answer is parsed
and judged against the expert action with the rewards package's UI-S1 *training* matcher
(:func:`guiagent.rewards.match_action`), and scored by the configured reward (``config.reward``, through
:class:`guiagent.rewards.Rewarder`; by default UI-S1's step reward r = 0.1·fmt + 0.4·fmt·type +
0.5·fmt·type·acc). The matcher, not the reward, decides what happens next:

* matched → the response joins the rollout's history and the rollout goes on;
* mismatched and patches used < ε_patch → a *patch* replaces the response in the history (context for
  later steps only) and the rollout goes on;
* mismatched otherwise → the rollout ends at this step (it is still a sample).

Patch kinds (the paper's three): ``thought_free`` (default: the expert action in the model's format with
an empty thought); ``on_policy_thought`` (the policy itself writes the thought, prompted with the step's
own prompt plus a "next action hint" naming the expert action); ``off_policy_thought`` (the same hint
answered by an auxiliary model, ``thought_policy``). Thought writers answer all patches of a round in
one batched call; the thought is their ``<think>`` block (or their text up to the first tag).

What the trainer gets (the contract of :meth:`guiagent.algos.AdvantageBatch.from_trajectories`): one
:class:`~guiagent.types.Trajectory` per rollout, grouped per expert trajectory; one
:class:`~guiagent.types.Step` per *generated* response, ``Step.index`` = the expert step, ``Step.reward``
= its reward under ``config.reward``, ``Step.matched`` = the matcher's verdict (UI-S1 returns end their
segment at a mismatch), ``Step.response`` / ``Step.logprobs`` / ``Step.token_ids`` = what the policy generated,
``Step.patch`` = the patch that replaced a mismatched response in later prompts (its kind in the
trajectory's ``info["patch_kind"]``), ``info["round"]`` / ``info["seed"]`` = the batched round and its sampling seed,
``timings["policy_batch"]`` = seconds of that round's batched call (shared by all its steps).

Which rows are trained on: DESIGN.md says "every generated step is a sample; patched responses are
context only". With ``patched_steps="sample"`` (default) the response that was patched over is a
training sample like every other generated step (its low reward is the signal that pushes the wrong
action down) and the patch text lives only in ``Step.patch`` (never a row). With
``patched_steps="context"`` the step whose response was patched over is flagged ``Step.patched=True``,
which ``AdvantageBatch`` masks (context only, advantage 0) — the reading of the algos package's
hand-computed UI-S1 example. Either way the step's reward counts in returns and trajectory totals.

Prompts hold the history :func:`guiagent.policy.prompts.history_from_steps` makes of a rollout's earlier
steps (patches in place of patched-over responses), the rule the trainer uses too when it re-encodes the
prompts the rollout sampled with.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from guiagent.config import StrictModel
from guiagent.errors import ConfigError
from guiagent.policy.base import generate_all
from guiagent.policy.prompts import PromptConfig, build_messages, history_from_steps
from guiagent.rewards.format import format_has_think
from guiagent.rewards.registry import RewardConfig
from guiagent.rollout.experts import check_expert_trajectories
from guiagent.types import Step, Trajectory


def _uis1_reward(data: dict[str, Any]) -> RewardConfig:
    """The default reward: UI-S1's step reward as the paper defines it, whose fmt term asks for the
    ``<think>`` block exactly when the prompt's answer format has one (only ``uis1`` does)."""
    prompt = data.get("prompt") or PromptConfig()  # absent if the prompt failed validation (reported itself)
    think = format_has_think(prompt.actions.format)
    return RewardConfig(name="uis1_step", options={"variant": "paper", "require_think": think})


class SemiOnlineConfig(StrictModel):
    """Settings of UI-S1 semi-online rollouts (defaults: the paper's)."""

    n_rollouts: int = Field(4, ge=1, description="Rollouts N per expert trajectory (one comparison group).")
    patch_budget: int = Field(
        1, ge=0, description="epsilon_patch: patches a rollout may use before a mismatch ends it."
    )
    patch_kind: Literal["thought_free", "on_policy_thought", "off_policy_thought"] = Field(
        "thought_free",
        description="Patch: expert action with an empty thought, or with a thought written from a next-action "
        "hint by the policy (on-policy) or by thought_policy (off-policy).",
    )
    patched_steps: Literal["sample", "context"] = Field(
        "sample",
        description="'sample': a patched-over response is trained on like every generated step (DESIGN.md); "
        "'context': it is flagged Step.patched and masked out of training.",
    )
    prompt: PromptConfig = Field(
        default_factory=PromptConfig,
        description="The policy's prompt: answer format and resize bounds (prompt.actions, which the parser "
        "and the patches use too) and the history window.",
    )
    # After prompt: the default reads the validated prompt's answer format.
    reward: RewardConfig = Field(
        default_factory=_uis1_reward,
        description="Registered reward scoring every generated response. Default: UI-S1's step reward, paper "
        "variant (uis1_step; options.variant 'code' is the released code's), fmt needing <think> iff the "
        "answer format has one.",
    )
    max_tokens: int = Field(256, ge=1, description="Most tokens per generated response.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    seed: int = Field(
        0, description="Base sampling seed; round r samples with seed + r, recorded on every step."
    )


def _patch_thoughts(
    config: SemiOnlineConfig,
    rows: list[int],
    judged: list[tuple],
    requests: list[Any],
    writer: Any,
    sampling: Any,
) -> dict[int, str | None]:
    """Thoughts of this round's patches, by row: None for thought-free patches, else the writer's thought.

    The writer sees the row's own prompt plus a hint naming the expert action, all rows in one call.
    """
    if config.patch_kind == "thought_free" or not rows:
        return {i: None for i in rows}
    from guiagent.actions import format_action
    from guiagent.policy.base import GenerationRequest
    from guiagent.rewards import extract_think

    hints = []
    for i in rows:
        r, _, geometry, _, _ = judged[i]
        action = format_action(r.expert.steps[r.t].action, config.prompt.actions.format, geometry)
        messages = [dict(m) for m in requests[i].messages]
        messages[-1]["content"] = [
            *messages[-1]["content"],
            {
                "type": "text",
                "text": (
                    f"Hint: the correct next action is {action}\nWrite the reasoning that leads to this action "
                    "inside <think></think>."
                ),
            },
        ]
        hints.append(GenerationRequest(messages))
    texts = [g.text for g in generate_all(writer, hints, sampling)]
    return {i: extract_think(text) or text.split("<")[0].strip() for i, text in zip(rows, texts)}


@dataclass
class _Rollout:
    """Mutable state of one rollout while its rounds run."""

    expert: Trajectory
    group: int
    member: int
    steps: list[Step] = field(default_factory=list)
    patches: int = 0
    end: str | None = None  # "mismatch" or "expert_end" once finished
    model: str = ""  # the model name the backend reported

    @property
    def t(self) -> int:
        return len(self.steps)


def semi_online_rollouts(
    policy: Any,
    experts: Sequence[Trajectory],
    config: SemiOnlineConfig = SemiOnlineConfig(),
    *,
    image_root: str | os.PathLike | None = None,
    policy_version: str | None = None,
    thought_policy: Any = None,
) -> list[list[Trajectory]]:
    """Run ``config.n_rollouts`` UI-S1 semi-online rollouts of each expert trajectory.

    Args:
        policy: Anything with ``generate(requests, sampling) -> [Generation]`` (the local backend or the
            vLLM client, :class:`guiagent.policy.base.Policy`).
        experts: E expert trajectories; every step needs ``action`` (the expert action, device pixels)
            and its observation's screenshot (bytes, or a path relative to ``image_root``).
        config: N, ε_patch, reward, prompt (answer format, resize bounds, history window), sampling.
        image_root: Directory relative screenshot paths resolve against (the episode store root).
        policy_version: Recorded on every trajectory; default: the model name the backend reports.
        thought_policy: The auxiliary model of ``off_policy_thought`` patches (same ``generate`` interface).

    Returns:
        E groups (in ``experts`` order) of N trajectories each. Trajectory ``k`` of group ``e`` has one
        step per generated response (1 ≤ len ≤ len(experts[e])), rewards on every step,
        ``Step.matched`` on every step, and ``info`` = expert episode id, rollout index, patches used,
        how it ended, the sampling settings.

    Raises:
        DataError: an expert trajectory is empty or a step has no expert action.
        ConfigError: ``off_policy_thought`` without a ``thought_policy``.
        PolicyError: the backend (or an LLM memory judge) failed.
    """
    from guiagent.actions import format_action
    from guiagent.policy.base import GenerationRequest, SamplingParams
    from guiagent.rewards import Rewarder, expert_step_sample, match_action, parse_response

    check_expert_trajectories(experts)
    if config.patch_kind == "off_policy_thought" and thought_policy is None:
        raise ConfigError("patch_kind 'off_policy_thought' needs a thought_policy (the auxiliary model)")
    thought_writer = policy if config.patch_kind == "on_policy_thought" else thought_policy
    rewarder = Rewarder(config.reward)
    prompt = config.prompt
    fmt = prompt.actions.format  # the prompt's answer format is the one parsed, judged and patched in
    start = time.perf_counter()
    rollouts = [_Rollout(expert, g, k) for g, expert in enumerate(experts) for k in range(config.n_rollouts)]
    round_index = 0
    while True:
        active = [r for r in rollouts if r.end is None]
        if not active:
            break
        seed = config.seed + round_index
        sampling = SamplingParams(
            max_tokens=config.max_tokens, temperature=config.temperature, top_p=config.top_p, seed=seed
        )
        requests, histories = [], []
        for r in active:
            expert_step = r.expert.steps[r.t]
            screen = expert_step.observation.screenshot_source(image_root)
            instruction = r.expert.instruction or expert_step.observation.instruction
            history = history_from_steps(r.steps, image_root)
            requests.append(GenerationRequest(build_messages(instruction, screen, history, prompt)))
            # The reward's history (HAR's memory judge): what each earlier step left in this prompt.
            histories.append([h.response for h in history])
        t0 = time.perf_counter()
        generations = generate_all(policy, requests, sampling)
        generate_s = time.perf_counter() - t0
        judged, samples = [], []
        for r, generation, history in zip(active, generations, histories):
            expert_step = r.expert.steps[r.t]
            obs = expert_step.observation
            geometry = prompt.geometry(obs.width, obs.height)
            parsed = parse_response(generation.text, fmt, geometry)
            sample = expert_step_sample(parsed, expert_step, history)
            match = match_action(sample.action, sample.expert, sample.expert_box, sample.screen_size)
            judged.append((r, generation, geometry, parsed, match))
            samples.append(sample)
        rewards = rewarder.score(samples)
        to_patch = [
            i
            for i, (r, _, _, _, match) in enumerate(judged)
            if not match.exact_match and r.patches < config.patch_budget
        ]
        thoughts = _patch_thoughts(config, to_patch, judged, requests, thought_writer, sampling)
        for i, (r, generation, geometry, parsed, match) in enumerate(judged):
            expert_step = r.expert.steps[r.t]
            info: dict[str, Any] = {
                "fmt": match.fmt,
                "type_match": match.type_match,
                "round": round_index,
                "seed": seed,
                "finish_reason": generation.finish_reason,
                "prompt_tokens": generation.prompt_tokens,
                "batch_size": len(active),
            }
            patch = None
            patched = False
            if i in thoughts:
                # The expert action in the model's own format, after the patch kind's thought.
                thought = thoughts[i] if thoughts[i] is not None else ("" if format_has_think(fmt) else None)
                patch = format_action(expert_step.action, fmt, geometry, thought=thought)
                r.patches += 1
                patched = config.patched_steps == "context"
            elif not match.exact_match:
                r.end = "mismatch"
            step = Step(
                index=expert_step.index,
                observation=expert_step.observation,
                action=parsed.action,
                response=generation.text,
                parse_error=parsed.failure,
                reward=rewards[i],
                logprobs=tuple(generation.logprobs),
                token_ids=generation.token_ids,
                matched=match.exact_match,
                patch=patch,
                patched=patched,
                timings={"policy_batch": generate_s},
                info=info,
            )
            r.steps.append(step)
            r.model = r.model or generation.model
            if r.end is None and r.t == len(r.expert.steps):
                r.end = "expert_end"
        round_index += 1
    total = time.perf_counter() - start
    groups: list[list[Trajectory]] = [[] for _ in experts]
    for r in rollouts:
        groups[r.group].append(
            Trajectory(
                episode_id=uuid.uuid4().hex,
                task_id=r.expert.task_id,
                seed=r.expert.seed,
                env_id="semi-online",
                policy_version=policy_version or r.model,
                steps=tuple(r.steps),
                instruction=r.expert.instruction,
                timings={"total": total},
                info={
                    "expert_episode_id": r.expert.episode_id,
                    "rollout": r.member,
                    "patches_used": r.patches,
                    "end": r.end,
                    "n_rollouts": config.n_rollouts,
                    "patch_budget": config.patch_budget,
                    "patch_kind": config.patch_kind,
                    "patched_steps": config.patched_steps,
                    "sampling": {
                        "temperature": config.temperature,
                        "top_p": config.top_p,
                        "max_tokens": config.max_tokens,
                        "seed": config.seed,
                    },
                    "reward": config.reward.model_dump(mode="json", exclude_none=True),
                    "format": fmt,
                },
            )
        )
    return groups


__all__ = ["SemiOnlineConfig", "semi_online_rollouts"]


def rollout_summary(
    groups: Sequence[Sequence[Trajectory]], batch: Any, advantages: dict[str, Sequence[float]], eta: float = 0.3
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What a batch of semi-online rollouts did: one row per sample and the totals.

    Args:
        groups: The rollout groups, as :func:`semi_online_rollouts` returns them.
        batch: Their :class:`guiagent.algos.AdvantageBatch` (row order = group → rollout → step).
        advantages: Estimator name → one advantage per row (``adv_<name>`` in each row).
        eta: UI-S1's dynamic-sampling threshold: a task is kept when its rollouts' returns spread by more.

    Returns:
        ``(summary, rows)``; a row holds task, rollout, expert step, parsed, reward, matched, patched over,
        trained, and the advantages.
    """
    from guiagent.algos.filters import dynamic_sampling_mask

    rows, i = [], 0
    for group in groups:
        for trajectory in group:
            for step in trajectory.steps:
                rows.append({"task": trajectory.task_id, "rollout": trajectory.info["rollout"], "step": step.index,
                             "parsed": step.action is not None, "reward": step.reward, "matched": step.matched,
                             "patched_over": step.patch is not None, "trained": bool(batch.mask[i]),
                             **{f"adv_{name}": values[i] for name, values in advantages.items()}})
                i += 1
    rewards = [r["reward"] for r in rows]
    trajectories = [t for g in groups for t in g]
    summary = {
        "n_rollouts": max(len(g) for g in groups),
        "expert_trajectories": len(groups),
        "samples": len(rows),
        "rounds": max(len(t) for t in trajectories),
        "parsed_fraction": sum(r["parsed"] for r in rows) / len(rows),
        "matched_fraction": sum(bool(r["matched"]) for r in rows) / len(rows),
        "mean_reward": sum(rewards) / len(rewards),
        "reward_counts": {str(v): rewards.count(v) for v in sorted(set(rewards))},
        "patches": sum(r["patched_over"] for r in rows),
        "ended_by_mismatch": sum(t.info["end"] == "mismatch" for t in trajectories),
        "dynamic_sampling": {"eta": eta, "tasks": len(groups),
                             "tasks_kept": len(set(batch.group_ids[dynamic_sampling_mask(batch, eta=eta)].tolist()))},
        **{f"max_abs_adv_{name}": max(abs(a) for a in values) for name, values in advantages.items()},
    }
    return summary, rows
