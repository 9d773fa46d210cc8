"""Format checks: turn the policy's raw text into what rewards score.

The action itself is parsed by :func:`guiagent.actions.parse_action` (which never raises on model text: it
returns an ``Action`` in device pixels or a ``ParseFailure``); this module adds the reasoning block. A
response is *well formatted* (fmt = 1) iff its action parses and, for formats that ask for one, it has a
non-empty ``<think>…</think>`` block.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from guiagent.rewards.sample import RewardInput
from guiagent.types import Action, Outcome, PixelBox

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
# Answer formats (ActionSpaceConfig.format) whose responses carry a <think> block: UI-S1's only. For the
# tool-call formats "well formatted" means just "it parsed".
THINK_FORMATS = frozenset({"uis1"})


def format_has_think(fmt: str) -> bool:
    """Whether answers in format ``fmt`` carry a ``<think>`` block (so fmt = 1 requires one)."""
    return fmt in THINK_FORMATS


def extract_think(text: str) -> str | None:
    """The stripped text of the first ``<think>…</think>`` block, or None when there is none or it is empty.

    A response that has ``</think>`` without an opening tag (chat templates that put ``<think>`` in the
    prompt, as Qwen3's does) counts everything before ``</think>`` as the block.
    """
    match = _THINK.search(text)
    if match is not None:
        body = match.group(1)
    elif "</think>" in text and "<think>" not in text:
        body = text.split("</think>", 1)[0]
    else:
        return None
    return body.strip() or None


@dataclass(frozen=True)
class ParsedResponse:
    """A model response split into what rewards need.

    Attributes:
        text: The raw response.
        action: The parsed action in device pixels, or None.
        think: The reasoning block's text, or None.
        failure: ``"reason: detail"`` of the parse failure when ``action`` is None.
    """

    text: str
    action: Action | None
    think: str | None
    failure: str | None

    def fmt_ok(self, require_think: bool) -> bool:
        """fmt = 1: the action parsed, and the think block is there when the format requires it."""
        return self.action is not None and (self.think is not None or not require_think)


def parse_response(text: str, fmt: str, geometry: Any) -> ParsedResponse:
    """Parse a model response with :func:`guiagent.actions.parse_action` and extract its think block.

    Never raises on model text: a response that does not parse gives ``action=None`` and the failure reason.

    Args:
        text: The model's raw output.
        fmt: The model output format name (``ActionSpaceConfig.format``: ``"qwen25vl_mobile"``, ``"uis1"``, ...).
        geometry: The screenshot ↔ model-image geometry from ``guiagent.actions.model_geometry``.
    """
    from guiagent.actions import ParseFailure, parse_action  # the parser lives with the action formats

    parsed = parse_action(text, fmt, geometry)
    think = extract_think(text)
    if isinstance(parsed, ParseFailure):
        detail = f"{parsed.reason}: {parsed.detail}" if parsed.detail else str(parsed.reason)
        return ParsedResponse(text=text, action=None, think=think, failure=detail)
    return ParsedResponse(text=text, action=parsed, think=think, failure=None)


def sample_from_response(
    parsed: ParsedResponse,
    screen_size: tuple[int, int],
    *,
    expert: Action | None = None,
    expert_box: PixelBox | None = None,
    history: Sequence[str] = (),
    memory_used: bool | None = None,
    outcome: Outcome | None = None,
) -> RewardInput:
    """Build the :class:`RewardInput` the registered rewards take from a parsed response."""
    return RewardInput(
        response=parsed.text,
        action=parsed.action,
        screen_size=screen_size,
        think=parsed.think,
        expert=expert,
        expert_box=expert_box,
        history=tuple(history),
        memory_used=memory_used,
        outcome=outcome,
        parse_error=parsed.failure,
    )
