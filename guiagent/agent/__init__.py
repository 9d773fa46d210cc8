"""The agent loop and the agents it drives (below both the farm and the rollouts; imports no torch).

- :func:`run_episode` — the one loop: reset → observe → act → execute → record → evaluate.
- :class:`Agent` / :class:`Decision` — the protocol every agent implements.
- :class:`PolicyAgent` — a local or served policy; :class:`OracleAgent`, :class:`ReplayAgent`,
  :class:`RandomAgent` — scripted agents.
"""

from guiagent.agent.base import Agent, Decision
from guiagent.agent.loop import run_episode
from guiagent.agent.policy import PolicyAgent
from guiagent.agent.scripted import OracleAgent, RandomAgent, ReplayAgent

__all__ = ["Agent", "Decision", "OracleAgent", "PolicyAgent", "RandomAgent", "ReplayAgent", "run_episode"]
