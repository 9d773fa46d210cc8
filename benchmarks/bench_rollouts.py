"""Rollout throughput with the local backend on the tiny Qwen2.5-VL: batched rounds against one request per call.

* grounding: ``--prompts`` ScreenSpot-v2 samples (a generated 270 x 600 store) x ``--group-size`` answers, with
  ``GroundingConfig.batch_size`` = 1 (one request per ``generate`` call) and each of ``--batch-sizes``;
* semi-online: UI-S1 rollouts (``--rollouts`` per expert) of MobileSim oracle episodes, as the rollout batches
  them (all unfinished rollouts in one call per round) and with the backend wrapped to answer one request
  per call.

Samples/s counts generated responses (training rows) per second of wall time, prompt building, parsing and
rewards included. The tiny model's weights are random, so nearly every answer runs to ``--max-tokens``; the
table also gives generated tokens/s. The settings run in turn, ``--repeats`` times round; rates come from each
setting's fastest run (the machine is shared), its median time is reported beside it.

    .venv/bin/python benchmarks/bench_rollouts.py
    .venv/bin/python benchmarks/bench_rollouts.py --prompts 4 --repeats 1
    .venv/bin/python benchmarks/bench_rollouts.py --backend vllm --json benchmarks/results/bench_rollouts_vllm.json
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _report import add_json_option, print_table, write_json


class OneAtATime:
    """A backend that answers one request per ``generate`` call: the unbatched baseline."""

    def __init__(self, policy):
        self.policy = policy
        self.calls = 0

    def generate(self, requests, sampling):
        self.calls += len(requests)
        return [self.policy.generate([request], sampling)[0] for request in requests]


def _summary(seconds: list[float], groups, calls: int) -> dict:
    """The numbers of one setting: rates from its fastest run (the one least disturbed by other load on a
    shared machine), the median beside it, and what its last run generated."""
    steps = [s for g in groups for t in g for s in t.steps]
    best = min(seconds)
    tokens = sum(len(s.token_ids) for s in steps)
    return {
        "samples": len(steps),
        "calls": calls,
        "tokens": tokens,
        "min_s": round(best, 3),
        "median_s": round(statistics.median(seconds), 3),
        "samples_per_s": round(len(steps) / best, 2),
        "tokens_per_s": round(tokens / best, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=8, help="grounding prompts (ScreenSpot samples)")
    parser.add_argument("--group-size", type=int, default=4, help="grounding answers per prompt (G)")
    parser.add_argument("--batch-sizes", default="4,16,32", help="batched grounding batch sizes, comma-separated")
    parser.add_argument("--experts", type=int, default=2, help="semi-online expert episodes (MobileSim oracle)")
    parser.add_argument("--rollouts", type=int, default=4, help="semi-online rollouts per expert (N)")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens per response")
    parser.add_argument("--max-pixels", type=int, default=256 * 28 * 28, help="model image bound (smart_resize)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting (median reported)")
    parser.add_argument("--backend", choices=("local", "vllm"), default="local",
                        help="local transformers in this process, or the tiny model served by vLLM's CPU build "
                             "(batched = the round's requests in flight together)")
    add_json_option(parser, __file__)
    args = parser.parse_args()

    import torch

    from guiagent.actions import ActionSpaceConfig
    from guiagent.data import samples as sample_files
    from guiagent.data.convert import convert
    from guiagent.envs.sim.env import MobileSimEnv
    from guiagent.envs.sim.tasks import make_task
    from guiagent.policy.local import LocalPolicy
    from guiagent.policy.prompts import PromptConfig
    from guiagent.policy.tiny import build_tiny_qwen25vl
    from guiagent.rollout.experts import record_expert_episodes
    from guiagent.rollout.grounding import GroundingConfig, grounding_rollouts, iter_grounding_samples
    from guiagent.rollout.semi_online import SemiOnlineConfig, semi_online_rollouts

    prompt = PromptConfig(actions=ActionSpaceConfig(max_pixels=args.max_pixels))
    rows = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        tmp = Path(tmp)
        model = build_tiny_qwen25vl(tmp / "tiny")
        if args.backend == "vllm":
            from guiagent.policy.client import VLLMClient
            from guiagent.policy.serve import cpu_server

            server = stack.enter_context(cpu_server(model, tmp / "vllm.log"))
            policy = stack.enter_context(VLLMClient(server.url, "tiny", timeout=600, max_concurrency=64))
        else:
            policy = LocalPolicy.from_pretrained(model)
        per_platform = -(-args.prompts // 3)  # the sample writer makes three platforms
        sample_files.write_screenspot_sample(tmp / "raw", "v2", per_platform=per_platform, width=270, height=600)
        convert("screenspot_v2", tmp / "raw", tmp / "store")
        samples = list(iter_grounding_samples(tmp / "store"))[: args.prompts]
        tasks = [make_task("SettingsToggleWifi", seed) for seed in range(args.experts)]
        experts = record_expert_episodes(MobileSimEnv(), tasks)
        print(f"torch threads: {torch.get_num_threads()}", file=sys.stderr)

        def grounding(batch_size):
            config = GroundingConfig(group_size=args.group_size, batch_size=batch_size, max_tokens=args.max_tokens,
                                     prompt=prompt)
            n = len(samples) * args.group_size
            return lambda: (grounding_rollouts(policy, samples, config, image_root=tmp / "store"),
                            -(-n // batch_size))

        def semi_online(batched):
            config = SemiOnlineConfig(n_rollouts=args.rollouts, max_tokens=args.max_tokens, prompt=prompt)

            def run():
                backend = policy if batched else OneAtATime(policy)
                groups = semi_online_rollouts(backend, experts, config)
                calls = backend.calls if not batched else max(len(t) for g in groups for t in g)
                return groups, calls

            return run

        grounding(args.group_size)()  # warm-up: first-call allocations and lazy imports
        settings = [("grounding", "1 per call", grounding(1))]
        settings += [("grounding", f"batch {b}", grounding(b)) for b in map(int, args.batch_sizes.split(","))]
        settings += [("semi_online", "1 per call", semi_online(False)), ("semi_online", "batched", semi_online(True))]
        # Repeats go round the settings, so a burst of load from elsewhere on the machine hits them all alike.
        seconds: list[list[float]] = [[] for _ in settings]
        last: list = [None] * len(settings)
        for repeat in range(args.repeats):
            for i, (_, _, run) in enumerate(settings):
                t0 = time.perf_counter()
                last[i] = run()
                seconds[i].append(time.perf_counter() - t0)
            print(f"  repeat {repeat + 1} of {args.repeats} done", file=sys.stderr)
        for (kind, mode, _), times, (groups, calls) in zip(settings, seconds, last):
            rows.append({"rollout": kind, "mode": mode, **_summary(times, groups, calls)})
    for kind in ("grounding", "semi_online"):
        base = next(r for r in rows if r["rollout"] == kind and r["mode"] == "1 per call")
        for row in rows:
            if row["rollout"] == kind:
                row["speedup"] = round(row["samples_per_s"] / base["samples_per_s"], 2)

    print(f"rollout throughput, tiny Qwen2.5-VL, {args.backend} backend (CPU), {args.max_tokens} tokens per response, "
          f"grounding {args.prompts} prompts x G={args.group_size}, semi-online {args.experts} experts x "
          f"N={args.rollouts}, best of {args.repeats}")
    keys = ["rollout", "mode", "samples", "calls", "min_s", "median_s", "samples_per_s", "tokens_per_s", "speedup"]
    print_table(["rollout", "mode", "samples", "calls", "min s", "median s", "samples/s", "tokens/s", "speedup"],
                [[row[k] for k in keys] for row in rows], 11)
    write_json(args.json, "rollout_throughput", backend=args.backend, max_tokens=args.max_tokens, prompts=args.prompts,
               group_size=args.group_size, experts=args.experts, rollouts=args.rollouts,
               max_pixels=args.max_pixels, repeats=args.repeats, rows=rows)


if __name__ == "__main__":
    main()
