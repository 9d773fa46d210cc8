"""Environment-farm throughput at 1 / 4 / 16 / 64 MobileSim devices, its per-episode overhead, and the memory
of one device worker.

- Throughput: a local farm (Redis + N device workers, each a Celery worker with one pool process owning one
  MobileSim) whose inputs take ``--step-latency`` (200 ms) of wall time and almost no CPU: the screen is
  small and the oracle plays the same task every episode, so after the first episode every frame comes from
  MobileSim's render cache. The oracle is the zero-latency agent. ``--per-device`` episodes per device are
  submitted at once after a warm-up round; throughput is device steps (inputs; the closing TERMINATE
  touches no device) per second from the first submit to the last result, against the ideal of
  ``devices / step_latency``. Each device count gets its own farm with exactly that many workers.
- Overhead: the same episode run ``--overhead-episodes`` times with ``run_episode`` in this process and,
  one at a time, through a farm of one worker with no step latency (submit to result in the client).
  The overhead is the difference of the medians.
- Memory: RSS and PSS (``/proc/PID/smaps_rollup``) of each worker's main process plus its pool process,
  read after the measured episodes; the 64-worker total PSS against this machine's memory.
- CPU: user+system seconds the workers' main processes, their pool processes, Redis and this client
  spent during the measured episodes, per episode; ``farm CPU`` is all of it as a share of the machine's
  cores, ``other CPU`` the share everything else on the machine used meanwhile (its cores may be shared).

    .venv/bin/python benchmarks/bench_farm.py
    .venv/bin/python benchmarks/bench_farm.py --devices 1 4 --per-device 5 --json /tmp/farm.json
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _report import add_json_option, print_table, write_json

TICK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(c) for c in f.read().split()]
    except FileNotFoundError:
        return []


def _memory_kib(pid: int) -> dict[str, int]:
    """``{"rss": KiB, "pss": KiB}`` of one process from its smaps_rollup."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss"):
                fields[name.lower()] = int(rest.split()[0])
    return fields


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def _farm_pids(farm) -> dict[str, list[int]]:
    """The worker main processes, their pool processes and Redis of a running farm."""
    mains = [p.pid for p in farm.workers.values()]
    return {"worker_main": mains, "worker_pool": [c for pid in mains for c in _children(pid)],
            "redis": [farm.redis.pid]}


def _cpu(pids: dict[str, list[int]]) -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {**{role: sum(_cpu_seconds(p) for p in group) for role, group in pids.items()},
            "client": usage.ru_utime + usage.ru_stime}


def _machine_busy() -> float:
    """CPU seconds this machine's cores have been busy (all processes, ours and others')."""
    with open("/proc/stat", encoding="ascii") as f:
        ticks = [int(t) for t in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / TICK


def _specs(task, agent, count: int, tag: str):
    from guiagent.farm.specs import EpisodeSpec

    return [EpisodeSpec(f"{tag}-{uuid.uuid4().hex[:12]}", task, agent) for _ in range(count)]


def _start(directory: Path, devices: int, args, step_latency: float):
    """A started LocalFarm; stopped here if it fails to come up."""
    from guiagent.farm.local import LocalFarm

    farm = LocalFarm(directory, sims=devices, step_latency=step_latency, width=args.size[0], height=args.size[1])
    try:
        farm.start(ready_timeout=args.ready_timeout)
    except BaseException:
        farm.stop()
        raise
    return farm


def measure_overhead(args, task, directory: Path) -> dict:
    """Median wall time of one episode in-process and through a one-worker farm (no step latency)."""
    from guiagent.agent import OracleAgent, run_episode
    from guiagent.envs.sim.env import MobileSimEnv
    from guiagent.farm.client import FarmClient
    from guiagent.farm.specs import AgentSpec

    env = MobileSimEnv(width=args.size[0], height=args.size[1], env_id="sim-0")
    local = []
    for i in range(args.overhead_episodes + 3):  # the first episodes fill the render cache
        t0 = time.perf_counter()
        run_episode(env, task, OracleAgent())
        if i >= 3:
            local.append(time.perf_counter() - t0)

    farm = _start(directory / "overhead", 1, args, 0.0)
    try:
        with FarmClient(farm.config) as client:
            remote, worker_side = [], []
            pids = _farm_pids(farm)
            cpu0, busy0, t_start = _cpu(pids), _machine_busy(), time.perf_counter()
            for i, spec in enumerate(_specs(task, AgentSpec("oracle"), args.overhead_episodes + 3, "overhead")):
                t0 = time.perf_counter()
                [result] = client.run([spec], timeout=60)
                if result.status != "success":
                    raise RuntimeError(f"farm episode {result.episode_id}: {result.status} {result.message}")
                if i >= 3:
                    remote.append(time.perf_counter() - t0)
                    worker_side.append(result.seconds)
            cpu1, busy1, wall = _cpu(pids), _machine_busy(), time.perf_counter() - t_start
    finally:
        farm.stop()
    in_process_ms = 1000 * statistics.median(local)
    farm_ms = 1000 * statistics.median(remote)
    return {"episodes": args.overhead_episodes, "in_process_ms": round(in_process_ms, 2),
            "farm_ms": round(farm_ms, 2), "overhead_ms": round(farm_ms - in_process_ms, 2),
            "worker_episode_ms": round(1000 * statistics.median(worker_side), 2),
            "farm_p90_ms": round(1000 * statistics.quantiles(remote, n=10)[-1], 2),
            "others_busy": round(max(0.0, (busy1 - busy0) - sum(cpu1[r] - cpu0[r] for r in cpu0)) / wall
                                 / os.cpu_count(), 2)}


def measure_throughput(args, task, inputs: int, devices: int, directory: Path) -> dict:
    """One farm of ``devices`` workers: warm-up round, then ``per_device`` episodes per device at once."""
    from guiagent.farm.client import FarmClient
    from guiagent.farm.specs import AgentSpec

    t0 = time.perf_counter()
    farm = _start(directory / f"n{devices}", devices, args, args.step_latency)
    try:
        startup_s = time.perf_counter() - t0
        print(f"  {devices} workers ready after {startup_s:.1f} s", file=sys.stderr)
        with FarmClient(farm.config) as client:
            # Warm-up: every device plays the task once or more, filling its render cache.
            for result in client.run(_specs(task, AgentSpec("oracle"), 2 * devices, "warm"), timeout=600):
                if result.status != "success":
                    raise RuntimeError(f"warm-up episode {result.episode_id}: {result.status} {result.message}")
            pids = _farm_pids(farm)
            specs = _specs(task, AgentSpec("oracle"), args.per_device * devices, "run")
            cpu0, busy0 = _cpu(pids), _machine_busy()
            t0 = time.perf_counter()
            results = client.run(specs, timeout=600)
            wall = time.perf_counter() - t0
            cpu1, busy1 = _cpu(pids), _machine_busy()
            memory = [[_memory_kib(pid) for pid in (main, *_children(main))] for main in pids["worker_main"]]
            redis_kib = _memory_kib(farm.redis.pid)["rss"]
    finally:
        farm.stop()
    failed = [r for r in results if r.status != "success"]
    if failed:
        raise RuntimeError(f"{len(failed)} episodes did not succeed, e.g. {failed[0]}")
    per_worker: dict[str, int] = {}
    for r in results:
        per_worker[r.worker] = per_worker.get(r.worker, 0) + 1
    steps_per_s = len(results) * inputs / wall
    ideal = devices / args.step_latency
    rss = [sum(p["rss"] for p in worker) / 1024 for worker in memory]
    pss = [sum(p["pss"] for p in worker) / 1024 for worker in memory]
    main_rss, main_pss = (statistics.mean(worker[0][k] / 1024 for worker in memory) for k in ("rss", "pss"))
    cpu_ms = {role: round(1000 * (cpu1[role] - cpu0[role]) / len(results), 2) for role in cpu0}
    return {
        "devices": devices, "episodes": len(results), "startup_s": round(startup_s, 1), "wall_s": round(wall, 2),
        "steps_per_s": round(steps_per_s, 1), "ideal_steps_per_s": round(ideal, 1),
        "fraction_of_ideal": round(steps_per_s / ideal, 3),
        "episodes_per_worker": [min(per_worker.values()), max(per_worker.values())],
        "worker_rss_mib": round(statistics.mean(rss), 1), "worker_pss_mib": round(statistics.mean(pss), 1),
        "main_process_rss_mib": round(main_rss, 1), "main_process_pss_mib": round(main_pss, 1),
        "workers_pss_total_mib": round(sum(pss), 1), "redis_rss_mib": round(redis_kib / 1024, 1),
        "cpu_ms_per_episode": cpu_ms,
        "cpu_busy": round(sum(cpu1[r] - cpu0[r] for r in cpu0) / wall / os.cpu_count(), 2),
        # The rest of the machine's busy time: other users of these (shared) cores.
        "others_busy": round(max(0.0, (busy1 - busy0) - sum(cpu1[r] - cpu0[r] for r in cpu0)) / wall
                             / os.cpu_count(), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 4, 16, 64], help="device counts")
    parser.add_argument("--per-device", type=int, default=10, help="measured episodes per device")
    parser.add_argument("--step-latency", type=float, default=0.2, help="seconds each device input takes")
    parser.add_argument("--size", type=int, nargs=2, default=[320, 480], help="screen width height")
    parser.add_argument("--task", default="SettingsToggleWifi", help="MobileSim task template the oracle plays")
    parser.add_argument("--overhead-episodes", type=int, default=50, help="episodes for the overhead medians")
    parser.add_argument("--ready-timeout", type=float, default=900.0, help="seconds to wait for the workers")
    add_json_option(parser, __file__)
    args = parser.parse_args()

    from guiagent.agent import OracleAgent, run_episode
    from guiagent.envs.sim.env import MobileSimEnv
    from guiagent.envs.sim.tasks import make_task

    task = make_task(args.task, seed=0)
    probe = run_episode(MobileSimEnv(width=args.size[0], height=args.size[1]), task, OracleAgent())
    if not probe.outcome.success:
        raise SystemExit(f"the oracle fails {task.task_id} at {args.size[0]}x{args.size[1]}: {probe.outcome}")
    inputs = sum(1 for s in probe.steps if s.action.type.value != "terminate")

    with tempfile.TemporaryDirectory(prefix="bench_farm-") as tmp:
        overhead = measure_overhead(args, task, Path(tmp))
        print(f"  overhead: {overhead}", file=sys.stderr)
        rows = []
        for devices in args.devices:
            rows.append(measure_throughput(args, task, inputs, devices, Path(tmp)))
            print(f"  {rows[-1]}", file=sys.stderr)

    memory_mib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    per_worker_pss = rows[-1]["worker_pss_mib"]
    print(f"farm throughput: oracle on {task.task_id} ({inputs} inputs + TERMINATE per episode), "
          f"{args.size[0]}x{args.size[1]} screens, {1000 * args.step_latency:.0f} ms per input, "
          f"{args.per_device} episodes per device")
    header = ["devices", "episodes", "wall s", "steps/s", "ideal", "of ideal", "start s", "RSS MiB", "PSS MiB",
              "CPU ms/ep", "farm CPU", "other CPU"]
    print_table(header, [[r["devices"], r["episodes"], r["wall_s"], r["steps_per_s"], r["ideal_steps_per_s"],
                          f"{100 * r['fraction_of_ideal']:.1f} %", r["startup_s"], r["worker_rss_mib"],
                          r["worker_pss_mib"], round(sum(r["cpu_ms_per_episode"].values()), 1),
                          f"{100 * r['cpu_busy']:.0f} %", f"{100 * r['others_busy']:.0f} %"] for r in rows])
    print("CPU ms per episode by process:", {r["devices"]: r["cpu_ms_per_episode"] for r in rows})
    print(f"per-episode overhead (median of {overhead['episodes']}, no step latency): in-process "
          f"{overhead['in_process_ms']} ms, through a 1-worker farm {overhead['farm_ms']} ms "
          f"(p90 {overhead['farm_p90_ms']} ms; on the worker {overhead['worker_episode_ms']} ms) "
          f"-> overhead {overhead['overhead_ms']} ms; other CPU meanwhile {100 * overhead['others_busy']:.0f} %")
    print(f"memory: {per_worker_pss} MiB PSS per worker (main + pool process): 64 workers "
          f"{64 * per_worker_pss / 1024:.1f} GiB of {memory_mib / 1024:.1f} GiB")
    targets = {"throughput_64_at_least_90_percent": rows[-1]["devices"] == 64 and rows[-1]["fraction_of_ideal"] >= 0.9,
               "overhead_at_most_10_ms": overhead["overhead_ms"] <= 10,
               "64_workers_under_half_the_memory": 64 * per_worker_pss < memory_mib / 2}
    print("targets:", ", ".join(f"{name} {'met' if met else 'MISSED'}" for name, met in targets.items()))
    write_json(args.json, "farm", targets=targets, task=task.task_id, inputs_per_episode=inputs, screen=args.size,
               step_latency_s=args.step_latency, per_device=args.per_device, rows=rows, overhead=overhead,
               memory_total_mib=round(memory_mib), workers64_pss_mib=round(64 * per_worker_pss, 1))


if __name__ == "__main__":
    main()
