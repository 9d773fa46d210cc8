"""Expert episodes from MobileSim: the oracle plays through the one agent loop and every step is labelled
the way UI-S1's data is (arXiv 2509.11543): the target element's box from the UI dump and the action as
UI-S1 ``check_options``, so the semi-online rollout, SFT and the SOP evaluation read them like real data."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

from guiagent.actions import format_action
from guiagent.actions.coords import ModelGeometry
from guiagent.agent import OracleAgent, run_episode
from guiagent.envs.base import Env
from guiagent.envs.sim.oracle import target_box
from guiagent.errors import DataError, DeviceError
from guiagent.types import ActionType, Step, Task, Trajectory


def check_expert_trajectories(experts: Iterable[Trajectory]) -> None:
    """Refuse expert data a rollout cannot replay: an empty trajectory, or a step without its action.

    Raises:
        DataError: naming the episode (and step).
    """
    for expert in experts:
        if not expert.steps:
            raise DataError("expert trajectory has no steps", record=expert.episode_id)
        for step in expert.steps:
            if step.action is None:
                raise DataError("expert step has no action", record=f"{expert.episode_id} step {step.index}")


def label_expert_step(step: Step) -> Step:
    """``step`` with ``target_boxes`` (the clickable node under a point action, from the step's UI dump)
    and ``info["uis1"]["check_options"]`` (the action as UI-S1 JSON in screenshot pixels + its box)."""
    obs, action = step.observation, step.action
    box = None
    if action.point is not None and action.type is not ActionType.SWIPE and obs.a11y_tree is not None:
        box = target_box(obs.a11y_tree, (obs.width, obs.height), action.point)
    pixels = ModelGeometry(obs.width, obs.height, obs.width, obs.height)
    text = format_action(action, "uis1", pixels)
    options: dict[str, Any] = json.loads(text[text.index("{"): text.rindex("}") + 1])
    if box is not None:
        options["candidate_bbox"] = [list(box)]
    return dataclasses.replace(step, target_boxes=(box,) if box is not None else (),
                               info={**step.info, "uis1": {"check_options": options}})


def record_expert_episodes(env: Env, tasks: Iterable[Task], store: Any = None) -> list[Trajectory]:
    """Let the MobileSim oracle play each task on ``env``, label its steps, and write them to ``store``.

    Args:
        env: A MobileSim env (in-process or over adb): the oracle plans from its accessibility tree.
        tasks: The tasks; episode ids are ``{template}-{seed}``.
        store: A :class:`guiagent.data.store.TrajectoryStore` (None: keep them in memory only).

    Returns:
        The labelled trajectories; read back from ``store`` when given (screenshots as store paths).

    Raises:
        DeviceError: the oracle failed a task (the env's own check says so): the expert data would be wrong.
    """
    experts = []
    for task in tasks:
        played = run_episode(env, task, OracleAgent(), episode_id=f"{task.template}-{task.seed}",
                             policy_version="expert")
        if not played.outcome.success:
            raise DeviceError(f"the MobileSim oracle failed {task.task_id}: {played.outcome.message}")
        expert = dataclasses.replace(played, steps=tuple(label_expert_step(s) for s in played.steps))
        if store is not None:
            store.put(expert)
            expert = store.get(expert.episode_id)
        experts.append(expert)
    return experts
