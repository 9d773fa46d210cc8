"""Online GRPO group throughput on the local farm (``guiagent.rollout.online.collect_groups``).

A local farm of ``--devices`` MobileSim workers plays ``--tasks`` tasks × G = ``--group-size`` episodes per
round, with the scripted oracle (no model: the farm's own cost) and, with ``--vllm``, with the tiny
Qwen2.5-VL served by vLLM's CPU build (the policy's cost on 2 cores dominates; episodes capped at
``--policy-steps`` steps). Reported: groups/s, episodes/s and steps/s over ``--rounds`` rounds after a
warm-up round.

    .venv/bin/python benchmarks/bench_online_groups.py
    .venv/bin/python benchmarks/bench_online_groups.py --vllm --devices 4 --rounds 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _report import add_json_option, print_table, write_json


def measure(client, store, tasks, agent, config, rounds: int, label: str) -> dict:
    from guiagent.rollout.online import collect_groups, summary

    collect_groups(client, store, tasks, agent, config, policy_version=f"{label}-warmup")
    start, groups, episodes, steps = time.perf_counter(), 0, 0, 0
    for r in range(rounds):
        batch = collect_groups(client, store, tasks, agent, config, policy_version=f"{label}-{r}")
        numbers = summary(batch)
        groups, episodes, steps = groups + numbers["groups"], episodes + numbers["episodes"], steps + numbers["steps"]
    seconds = time.perf_counter() - start
    return {"agent": label, "groups": groups, "episodes": episodes, "steps": steps, "seconds": round(seconds, 2),
            "groups_per_s": round(groups / seconds, 2), "episodes_per_s": round(episodes / seconds, 2),
            "steps_per_s": round(steps / seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=8, help="MobileSim device workers")
    parser.add_argument("--tasks", type=int, default=4, help="tasks (groups) per round")
    parser.add_argument("--group-size", type=int, default=4, help="G")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds")
    parser.add_argument("--vllm", action="store_true", help="also measure the tiny model served by vLLM (CPU)")
    parser.add_argument("--policy-steps", type=int, default=3, help="step budget of policy episodes")
    add_json_option(parser, __file__)
    args = parser.parse_args()

    from guiagent.data.store import TrajectoryStore
    from guiagent.envs.sim.tasks import TEMPLATES, make_task
    from guiagent.farm.client import FarmClient
    from guiagent.farm.local import LocalFarm
    from guiagent.farm.specs import AgentSpec, policy_agent_spec
    from guiagent.rollout.online import OnlineConfig

    names = [n for n in TEMPLATES if n.startswith(("Settings", "Clock", "Shopping"))][: args.tasks]
    tasks = [make_task(name, 0) for name in names]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, LocalFarm(Path(tmp) / "farm", sims=args.devices, width=540,
                                                         height=1200) as farm:
        with FarmClient(farm.config) as client:
            store = TrajectoryStore(farm.config.store_url)
            config = OnlineConfig(group_size=args.group_size)
            rows.append(measure(client, store, tasks, AgentSpec("oracle"), config, args.rounds, "oracle"))
            if args.vllm:
                from guiagent.policy.base import SamplingParams
                from guiagent.policy.prompts import PromptConfig
                from guiagent.policy.serve import cpu_server
                from guiagent.policy.tiny import build_tiny_qwen25vl

                model = build_tiny_qwen25vl(Path(tmp) / "tiny")
                prompt = PromptConfig.model_validate({"actions": {"max_pixels": 64 * 28 * 28}})
                with cpu_server(model, Path(tmp) / "vllm.log") as server:
                    print("vLLM server up", file=sys.stderr)
                    agent = policy_agent_spec(server.url, "tiny", prompt, SamplingParams(max_tokens=24, seed=0),
                                              [(540, 1200)])
                    policy_config = config.model_copy(update={"max_steps": args.policy_steps})
                    rows.append(measure(client, store, tasks, agent, policy_config, args.rounds, "vllm-tiny"))
    print(f"{args.devices} devices, {args.tasks} tasks x G={args.group_size} per round, {args.rounds} rounds")
    print_table(["agent", "groups/s", "episodes/s", "steps/s", "seconds"],
                [[r["agent"], r["groups_per_s"], r["episodes_per_s"], r["steps_per_s"], r["seconds"]] for r in rows])
    write_json(args.json, "online_groups", devices=args.devices, tasks=args.tasks, group_size=args.group_size,
               rounds=args.rounds, rows=rows)


if __name__ == "__main__":
    main()
