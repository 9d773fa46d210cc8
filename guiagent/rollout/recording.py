"""Trajectory recording: every rollout kind writes its groups to the trajectory store, the same way.

A recorded trajectory holds everything needed to audit and replay a training sample: the screens (as
store images), the raw outputs and parsed actions (or parse failures), token ids and log-probs, rewards,
the advantages once computed (``Step.advantage``), timings, the policy version, and the prompt settings the
responses were sampled with (``info["prompt"]``; with the instruction, the earlier steps and the screen they
rebuild each prompt exactly, :func:`guiagent.policy.prompts.build_messages`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from guiagent.data.store import TrajectoryStore
from guiagent.errors import DataError
from guiagent.types import Trajectory


def _with_screens(trajectory: Trajectory, image_root: str | os.PathLike | None) -> Trajectory:
    """Screenshots held as paths (relative to ``image_root``) read into bytes, so the store keeps its own copy."""
    steps = []
    for step in trajectory.steps:
        observation = step.observation
        if observation.screenshot is None:
            source = observation.screenshot_source(None if image_root is None else str(image_root))
            try:
                with open(source, "rb") as f:
                    data = f.read()
            except OSError as exc:
                raise DataError(f"cannot read the screenshot to record: {exc}", file=str(source),
                                record=f"{trajectory.episode_id} step {step.index}") from None
            observation = dataclasses.replace(observation, screenshot=data, screenshot_path=None)
        steps.append(dataclasses.replace(step, observation=observation))
    return dataclasses.replace(trajectory, steps=tuple(steps))


def record_groups(
    store: TrajectoryStore,
    groups: Sequence[Sequence[Trajectory]],
    *,
    advantages: Sequence[float] | Any = None,
    prompt: Any = None,
    image_root: str | os.PathLike | None = None,
    rollout: str | None = None,
) -> int:
    """Write ``groups`` to ``store`` (idempotent by episode id).

    Args:
        store: The trajectory store.
        groups: Groups of trajectories, rows in ``AdvantageBatch.from_trajectories`` order.
        advantages: One advantage per row (a sequence or a 1-D tensor), written to ``Step.advantage``.
        prompt: The :class:`~guiagent.policy.prompts.PromptConfig` the responses were sampled with.
        image_root: Directory the trajectories' relative screenshot paths resolve against.
        rollout: The rollout kind (``"online"``, ``"semi_online"``, ``"grounding"``, ``"hierarchical"``).

    Returns:
        How many trajectories this call stored (the others were stored already).

    Raises:
        DataError: ``advantages`` has a different number of rows, or a screenshot cannot be read.
    """
    values = None if advantages is None else [float(a) for a in (advantages.tolist() if hasattr(advantages, "tolist")
                                                                  else advantages)]
    rows = sum(len(t) for group in groups for t in group)
    if values is not None and len(values) != rows:
        raise DataError(f"{len(values)} advantages for {rows} rows")
    row, stored = 0, 0
    extra = {k: v for k, v in (("prompt", prompt.model_dump() if prompt is not None else None),
                               ("rollout", rollout)) if v is not None}
    for g, group in enumerate(groups):
        for trajectory in group:
            steps = []
            for step in trajectory.steps:
                if values is not None:
                    step = dataclasses.replace(step, advantage=values[row])
                steps.append(step)
                row += 1
            trajectory = dataclasses.replace(trajectory, steps=tuple(steps),
                                             info={**trajectory.info, **extra, "group_index": g})
            stored += store.put(_with_screens(trajectory, image_root))
    return stored
