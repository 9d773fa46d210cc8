"""Held-out MobileSim evaluation of a policy during training: online success and offline SOP.

Online: every held-out task is played once, greedily, and judged by the env (in-process MobileSim with the
trainer's own model, or on the farm by the served policy). Offline: SOP (UI-S1's protocol) of the same policy
on the oracle's demonstrations of those tasks. Both are written to ``RUN/eval/NAME.json``::

    {"name", "protocol", "success", "template_success", "sop", "per_template", "episodes",
     "store_episode_ids", "policy_version", "seconds"}
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from guiagent.types import Task, Trajectory

PROTOCOL = ("MobileSim held-out tasks, one greedy episode each, judged from the device state; success = "
            "episodes solved / episodes, template_success = mean over templates; SOP = UI-S1's semi-online "
            "performance on the oracle's demonstrations of the same tasks")


class HeldOutEvaluation:
    """Evaluates a policy on held-out MobileSim tasks.

    Args:
        tasks: The held-out tasks.
        out_dir: ``RUN/eval``.
        store: Trajectory store the evaluation episodes are written to (``RUN/store``).
        prompt: The policy's :class:`~guiagent.policy.prompts.PromptConfig`.
        max_tokens: Most tokens per greedy answer.
        max_steps: Step budget per episode (None: the task's).
        expert_store: Store of the oracle's demonstrations of ``tasks`` (for SOP), or None.
        play: ``(tasks, policy, policy_version, episode_prefix) -> trajectories``; None plays in-process on
            MobileSim with ``policy`` (the trainer's model).
    """

    def __init__(self, tasks: Sequence[Task], out_dir: Path, store: Any, prompt: Any, *, max_tokens: int = 64,
                 max_steps: int | None = None, expert_store: str | Path | None = None,
                 play: Callable[..., list[Trajectory]] | None = None):
        self.tasks, self.out_dir, self.store, self.prompt = list(tasks), Path(out_dir), store, prompt
        self.max_tokens, self.max_steps, self.expert_store = max_tokens, max_steps, expert_store
        self.play = play or self._play_in_process

    def _play_in_process(self, tasks: Sequence[Task], policy: Any, policy_version: str, prefix: str) -> list[Trajectory]:
        from guiagent.agent import PolicyAgent
        from guiagent.envs.sim.env import MobileSimEnv
        from guiagent.eval.online import run_online
        from guiagent.policy.base import SamplingParams

        agent = PolicyAgent(policy, self.prompt, SamplingParams(max_tokens=self.max_tokens, greedy=True,
                                                                temperature=0.0))
        return run_online(MobileSimEnv(env_id="heldout"), tasks, agent, policy_version=policy_version,
                          max_steps=self.max_steps, episode_prefix=prefix)

    def __call__(self, name: str, policy: Any, policy_version: str) -> dict[str, Any]:
        """Evaluate ``policy`` (the in-process model, for SOP and in-process play) as ``name``."""
        from guiagent.eval.online import online_metrics

        start = time.perf_counter()
        episodes = self.play(self.tasks, policy, policy_version, f"eval-{name}")
        for episode in episodes:
            if episode.episode_id not in self.store:
                self.store.put(episode)
        online = online_metrics(episodes)
        result: dict[str, Any] = {
            "name": name, "protocol": PROTOCOL, "policy_version": policy_version,
            "success": online["success_rate"], "template_success": online["template_success_rate"],
            "per_template": online["per_template"], "episodes": online["episodes"],
            "mean_steps": online["mean_steps"], "parse_failures": online["parse_failures"],
            "store_episode_ids": [e.episode_id for e in episodes], "sop": None}
        if self.expert_store is not None:
            from guiagent.eval.androidcontrol import score_sop
            from guiagent.eval.model import PolicyPredictor

            sop = score_sop(self.expert_store, PolicyPredictor(policy, self.prompt.actions, self.max_tokens),
                            self.prompt.actions, self.out_dir / f"{name}-sop")
            result.update(sop=sop["sop"]["score"], sop_pg=sop["sop"]["pg"], sop_tsr=sop["sop"]["tsr"],
                          step_accuracy=sop["step_sr"])
        result["seconds"] = round(time.perf_counter() - start, 2)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        return result


__all__ = ["PROTOCOL", "HeldOutEvaluation"]
