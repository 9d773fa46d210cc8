"""What a reward function sees about one generated step.

A :class:`RewardInput` is built by the rollout/trainer from the policy's raw text (see
:func:`guiagent.rewards.format.parse_response`) and the expert's step, and handed to the registered reward
functions. All coordinates are device pixels of the screenshot the policy saw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from guiagent.types import Action, Outcome, PixelBox


def check_box(box: Sequence[float], name: str = "box") -> PixelBox:
    """Validate and normalise a ``(x1, y1, x2, y2)`` box.

    Raises:
        ValueError: not four finite numbers, or x2 < x1 / y2 < y1.
    """
    if len(box) != 4:
        raise ValueError(f"{name} must be (x1, y1, x2, y2), got {box!r}")
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise ValueError(f"{name} has a non-finite coordinate: {box!r}")
    if x2 < x1 or y2 < y1:
        raise ValueError(f"{name} must have x1 <= x2 and y1 <= y2, got {box!r}")
    return (x1, y1, x2, y2)


@dataclass(frozen=True)
class RewardInput:
    """One policy step, scored by the registered rewards.

    Attributes:
        response: The policy's raw text.
        action: The parsed action in device pixels, or None when the response did not parse.
        think: Text inside ``<think>…</think>`` (stripped), or None when there is no such block.
        screen_size: ``(width, height)`` of the screenshot in device pixels.
        expert: The expert's action for this step (offline / semi-online), None online.
        expert_box: Target element box of the expert action in device pixels, when the dataset has one.
        history: Short text summaries of the previous actions, oldest first (HAR's history window).
        memory_used: A :class:`~guiagent.rewards.memory.MemoryJudge`'s verdict on ``think``; HAR needs it.
        outcome: The environment's verdict on the episode (online task-success reward).
        parse_error: Why ``response`` did not parse, when ``action`` is None.
    """

    response: str
    action: Action | None
    screen_size: tuple[int, int]
    think: str | None = None
    expert: Action | None = None
    expert_box: PixelBox | None = None
    history: tuple[str, ...] = field(default_factory=tuple)
    memory_used: bool | None = None
    outcome: Outcome | None = None
    parse_error: str | None = None

    def __post_init__(self) -> None:
        width, height = self.screen_size
        if width <= 0 or height <= 0:
            raise ValueError(f"screen_size must be positive, got {self.screen_size!r}")
        object.__setattr__(self, "screen_size", (int(width), int(height)))
        if self.expert_box is not None:
            object.__setattr__(self, "expert_box", check_box(self.expert_box, "expert_box"))
        object.__setattr__(self, "history", tuple(self.history))
