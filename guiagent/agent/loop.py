"""``run_episode``: the one agent loop.

reset → observe → ``agent.act`` → ``env.execute`` → record → … → ``env.evaluate(task)``. The farm
worker, the online rollouts and evaluations, ``guiagent sim run``, the MobileSim oracle and the demo
all call it; none keeps a loop of its own (``tests/test_agent_loop.py`` fails if one appears).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from guiagent.agent.base import Agent
from guiagent.envs.base import Env
from guiagent.errors import ActionError
from guiagent.types import ActionType, EpisodeStatus, Outcome, Step, Task, Trajectory


def run_episode(
    env: Env,
    task: Task,
    agent: Agent,
    *,
    max_steps: int | None = None,
    episode_id: str | None = None,
    policy_version: str = "unknown",
    require_done: bool = False,
    on_step: Callable[[Step], None] | None = None,
) -> Trajectory:
    """Play one episode of ``task`` on ``env`` with ``agent`` and judge it through the env.

    Each step records the observation the agent acted on, its response, the parsed action or the parse
    failure, token ids and log-probs when the agent has them, the device's refusal of an action (the
    episode goes on from the same screen) and the seconds spent deciding and acting. The episode ends
    when the agent executes TERMINATE or after ``max_steps`` steps; an ANSWER is recorded by the env
    (``env.answer``) and the episode goes on until the agent declares it done.

    Args:
        env: The device.
        task: The task; ``env.reset(task)`` brings the device to its initial state.
        agent: Who decides.
        max_steps: Step budget (default ``task.max_steps``).
        episode_id: The episode's id (default a fresh uuid); episodes are idempotent by it downstream.
        policy_version: The weights that sampled it (``"expert"``, ``"step-120"``), recorded on the trajectory.
        require_done: The AndroidWorld protocol: success only when the agent executed TERMINATE and the
            env's check holds.
        on_step: Called with every recorded step (progress output, live dashboards).

    Returns:
        The trajectory; ``outcome`` is ``env.evaluate(task)``, with status TIMEOUT when the budget ran out
        on an unfinished task. ``info["end"]`` is ``"terminate"``, ``"budget"``
        or ``"env"`` (the device ended the episode: :attr:`Env.done`).

    Raises:
        DeviceError: the device failed (the caller decides on recovery and retries).
        PolicyError: the agent's model failed.
    """
    budget = task.max_steps if max_steps is None else max_steps
    start = time.perf_counter()
    agent.reset(task)
    observation = env.reset(task)
    timings = {"reset": time.perf_counter() - start, "decide": 0.0, "act": 0.0, "observe": 0.0}
    steps: list[Step] = []
    end = "budget"
    while len(steps) < budget:
        t0 = time.perf_counter()
        decision = agent.act(observation, steps)
        t1 = time.perf_counter()
        refused = None
        if decision.action is not None:
            try:
                env.execute(decision.action)
            except ActionError as exc:  # the device refuses it before touching anything
                refused = str(exc)
        t2 = time.perf_counter()
        step = Step(
            index=len(steps),
            observation=observation,
            action=decision.action,
            response=decision.response,
            parse_error=decision.parse_error,
            refused=refused,
            logprobs=decision.logprobs,
            token_ids=decision.token_ids,
            timings={"decide": t1 - t0, "act": t2 - t1},
            info=decision.info,
        )
        steps.append(step)
        timings["decide"] += t1 - t0
        timings["act"] += t2 - t1
        if on_step is not None:
            on_step(step)
        if decision.action is not None and decision.action.type is ActionType.TERMINATE and refused is None:
            end = "terminate"
            break
        if env.done:  # the device ended the episode (e.g. MiniWoB++'s check or timer)
            end = "env"
            break
        t3 = time.perf_counter()
        observation = env.observe()
        timings["observe"] += time.perf_counter() - t3
    t4 = time.perf_counter()
    outcome = env.evaluate(task)
    timings["evaluate"] = time.perf_counter() - t4
    if outcome.success and require_done and end != "terminate":
        outcome = Outcome(EpisodeStatus.FAILURE, reward=0.0, message="the task holds but the agent never declared it done")
    elif not outcome.success and end == "budget" and outcome.status is EpisodeStatus.FAILURE:
        outcome = Outcome(EpisodeStatus.TIMEOUT, reward=outcome.reward, message=outcome.message or f"{budget} steps")
    timings["total"] = time.perf_counter() - start
    return Trajectory(
        episode_id=episode_id or uuid.uuid4().hex,
        task_id=task.task_id,
        seed=task.seed,
        env_id=env.env_id,
        policy_version=policy_version,
        steps=tuple(steps),
        outcome=outcome,
        instruction=task.instruction,
        timings=timings,
        info={"template": task.template, "end": end, **({"answer": env.answer} if env.answer is not None else {})},
    )
