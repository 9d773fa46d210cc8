"""What an agent is: something that looks at the screen and the episode so far and decides one action.

Every way guiagent acts on a device — a served or local policy, the MobileSim oracle, a replay of a
recorded episode, a random baseline, a person at a terminal — is an :class:`Agent`, and
:func:`guiagent.agent.run_episode` is the one loop that drives any of them on any
:class:`~guiagent.envs.base.Env`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from guiagent.types import Action, JSONValue, Observation, Step, Task


@dataclass(frozen=True)
class Decision:
    """One decision of an agent: what it said and what it wants done.

    Attributes:
        action: The canonical action (device pixels), or None when the response did not parse.
        response: The raw text the agent wrote ("" for scripted agents).
        parse_error: ``"reason: detail"`` of the parse failure when ``action`` is None.
        token_ids: The response's token ids, when the agent sampled them from a model.
        logprobs: Their log-probabilities under the sampling policy (same length as ``token_ids``).
        info: Anything else worth recording on the step (JSON values only).
    """

    action: Action | None
    response: str = ""
    parse_error: str | None = None
    token_ids: tuple[int, ...] | None = None
    logprobs: tuple[float, ...] | None = None
    info: Mapping[str, JSONValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action is None and not self.parse_error:
            raise ValueError("a Decision without an action needs the parse_error that explains it")


@runtime_checkable
class Agent(Protocol):
    """Turns an observation and the episode so far into a :class:`Decision`."""

    def reset(self, task: Task) -> None:
        """Start a new episode of ``task`` (forget the previous one's plan or state)."""
        ...

    def act(self, observation: Observation, history: Sequence[Step]) -> Decision:
        """Decide the next action on ``observation``; ``history`` holds this episode's earlier steps.

        Raises:
            PolicyError: the model behind the agent failed (a response that does not parse is not an
                error: it is a Decision with ``parse_error``).
        """
        ...
