"""Rollouts: how the policy's trajectories are produced for training.

* :mod:`guiagent.rollout.semi_online` — UI-S1 semi-online rollouts over expert trajectories (arXiv 2509.11543).
* :mod:`guiagent.rollout.grounding` — single-step grounding: G answers per (screenshot, instruction), rule rewards.
* :mod:`guiagent.rollout.hierarchical` — Hi-Agent: G subgoals and G′ actions per state, foresight rewards (arXiv 2510.14388).
"""
