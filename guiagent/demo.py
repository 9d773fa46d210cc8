"""The CPU demo: ``python -m guiagent.demo [--out DIR] [--quick]`` (``bash scripts/run.sh demo``).

The most complete end-to-end job guiagent has, told as a short script of library calls, each phase
timed. It downloads nothing and runs on 2 CPU cores in about 2.5 minutes (``--quick``: about 30 s):

1. ``model``: build the tiny random Qwen2.5-VL into ``DIR/tiny-qwen25vl`` (reused when there) and load it.
2. ``data``: the MobileSim oracle plays one task per simulated app (two with ``--quick``) through the
   agent loop; its steps are labelled like UI-S1 data and written to the trajectory store ``DIR/data``.
3. ``sft``: warm the tiny model up on that store (teacher-forced cross-entropy on the expert actions).
4. ``online``: the oracle and the warmed-up policy play over the **real adb path** (MobileSim behind its
   virtual adbd, a private Debian ``adb`` server, ``AndroidEnv`` on adbutils); the env judges every
   episode. Episodes go to the store ``DIR/online``.
5. ``offline_eval``: SOP (UI-S1's evaluation matcher) of the tiny policy on the expert episodes, and of the
   oracle's own actions written as model text — an upper bound that must score 1.0.
6. ``semi_online``: UI-S1 semi-online rollouts, N = 4 per expert trajectory; ``uis1`` and ``grpo`` advantages.
7. ``update``: one ``ppo_clip`` step with the ``uis1`` advantages.

Then ``DIR/report.json``, ``DIR/report.md``, ``DIR/sft_loss.png`` and ``DIR/semi_online.png``. The warm-up
trains on the oracle's demonstrations of the same seeded tasks it is then evaluated on, so success and SOP
measure memorisation, and the report says so. Every server the demo starts is stopped in ``finally``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

FULL_TASKS = ("SettingsToggleWifi", "ContactsAnswerPhone", "BrowserSearchQuery", "ShoppingDeleteItem",
              "ClockToggleAlarm", "CalculatorAnswerProduct")
QUICK_TASKS = ("SettingsToggleWifi", "ClockToggleAlarm")
TASK_SEED = 0
NOT_INCLUDED = (
    "The RL training loop (repeated rollout -> update, weight sync, checkpoints) is not part of the demo yet: "
    "the weights change only in the SFT warm-up and in the one policy-gradient step of the update phase."
)
NOTES = (
    "The tiny Qwen2.5-VL starts from random weights (nothing is downloaded) and is warmed up by SFT on the "
    "oracle's trajectories of the very tasks (same seeds) it is then evaluated on: online success, SOP and "
    "semi-online rewards measure memorisation of those demonstrations, not a GUI agent that generalises.",
    "The oracle SOP is a sanity upper bound: the expert's own actions, written as model text and scored "
    "through the same parse and match path, must score 1.0.",
    "Semi-online patches are thought-free (expert action, empty thought), epsilon_patch = 1; every generated "
    "response is a sample, patches are context only.",
    NOT_INCLUDED,
)


@dataclass(frozen=True)
class DemoSettings:
    """What one demo mode runs: the MobileSim tasks (seed ``TASK_SEED``), how many of them the tiny policy
    plays over adb and with what step budget, generation length, the model image's pixel bound, SFT steps,
    batch and learning rate, semi-online rollouts per expert trajectory (UI-S1's N), the update's lr."""

    tasks: tuple[str, ...]
    policy_online_tasks: int
    policy_step_budget: int
    sft_steps: int
    max_tokens: int = 40  # an expert answer is 27-36 tokens with the tiny tokenizer, plus the stop token
    max_pixels: int = 64 * 28 * 28  # small: CPU time grows with image tokens
    sft_batch_size: int = 4
    sft_lr: float = 2e-3
    n_rollouts: int = 4
    update_lr: float = 1e-4


FULL = DemoSettings(FULL_TASKS, policy_online_tasks=2, policy_step_budget=6, sft_steps=200)
QUICK = DemoSettings(QUICK_TASKS, policy_online_tasks=1, policy_step_budget=4, sft_steps=30)


def fresh_store(root: Path, dataset: str = "trajectories") -> Any:
    """An empty trajectory store at ``root`` (the demo's own output: a previous run's is replaced)."""
    from guiagent.data.store import TrajectoryStore

    shutil.rmtree(root, ignore_errors=True)
    return TrajectoryStore(root, dataset=dataset)


def measure_update(policy: Any, groups: Any, advantages: Any, root: Path, prompt: Any, lr: float) -> dict[str, Any]:
    """One ``ppo_clip`` step (no weight decay: what moves, moved because of the advantages) and how far
    the weights moved."""
    import torch

    from guiagent.trainer.update import policy_gradient_step

    before = [p.detach().clone() for p in policy.model.parameters()]
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=lr, weight_decay=0.0)
    metrics = policy_gradient_step(policy.model, optimizer, groups, advantages, processor=policy.processor,
                                   prompt=prompt, image_root=root, loss_name="ppo_clip")
    deltas = [p.detach() - b for p, b in zip(policy.model.parameters(), before)]
    return {**metrics, "advantage": "uis1", "loss_name": "ppo_clip", "lr": lr,
            "nonzero_advantages": int((advantages != 0).sum()),
            "parameter_tensors_changed": sum(bool(d.any()) for d in deltas), "parameter_tensors": len(deltas),
            "weight_change_l2": float(torch.sqrt(sum((d.double() ** 2).sum() for d in deltas)))}


def run_demo(out: Path, quick: bool) -> dict[str, Any]:
    """Run every phase, write ``report.json`` / ``report.md`` / the plots, and return the report.

    A failing phase stops the run; the report is still written, naming the phase and its error.
    """
    from guiagent.actions import ActionSpaceConfig
    from guiagent.agent import OracleAgent, PolicyAgent
    from guiagent.algos import AdvantageBatch, get_advantage
    from guiagent.envs.sim.env import MobileSimEnv
    from guiagent.envs.sim.served import adb_served_mobilesim
    from guiagent.envs.sim.tasks import make_task
    from guiagent.eval.androidcontrol import score_sop
    from guiagent.eval.model import ExpertTextPredictor, PolicyPredictor
    from guiagent.eval.online import episode_row, online_metrics, run_online
    from guiagent.policy.base import SamplingParams
    from guiagent.policy.prompts import PromptConfig
    from guiagent.policy.tiny import load_tiny_policy
    from guiagent.rollout.experts import record_expert_episodes
    from guiagent.rollout.semi_online import SemiOnlineConfig, rollout_summary, semi_online_rollouts
    from guiagent.trainer.phases import PhaseTimer
    from guiagent.trainer.plots import plot_curve, plot_rewards_and_advantages
    from guiagent.trainer.sft import expert_samples, sft_warmup
    from guiagent.types import dumps

    settings = QUICK if quick else FULL
    out.mkdir(parents=True, exist_ok=True)
    timer = PhaseTimer("[demo]")
    space = ActionSpaceConfig(format="qwen25vl_mobile", max_pixels=settings.max_pixels)
    prompt = PromptConfig(actions=space)
    tasks = [make_task(name, TASK_SEED) for name in settings.tasks]
    report: dict[str, Any] = {
        "mode": "quick" if quick else "full", "not_included": NOT_INCLUDED, "settings": dataclasses.asdict(settings),
        "action_space": space.model_dump(), "notes": list(NOTES),
        "environment": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
    }
    try:
        with timer.phase("model", "build (or reuse) and load the tiny Qwen2.5-VL"):
            policy, built = load_tiny_policy(out / "tiny-qwen25vl")
            report["model"] = {"path": str(out / "tiny-qwen25vl"), "built_now": built, "name": policy.name,
                               "parameters": sum(p.numel() for p in policy.model.parameters())}

        with timer.phase("data", f"MobileSim oracle expert trajectories for {len(tasks)} tasks -> store"):
            data = out / "data"
            # Labelled like UI-S1 data (check_options, target boxes), so the SOP evaluation reads the store as such.
            store = fresh_store(data, dataset="uis1")
            experts = record_expert_episodes(MobileSimEnv(env_id="mobilesim-expert"), tasks, store)
            report["data"] = {"store": str(data), "episodes": len(experts), "steps": sum(map(len, experts)),
                              "tasks": [e.task_id for e in experts]}

        with timer.phase("sft", f"SFT warm-up: {settings.sft_steps} steps of {settings.sft_batch_size} samples"):
            samples = expert_samples(experts, policy.processor, prompt, data)
            sft = sft_warmup(policy.model, policy.processor, samples, steps=settings.sft_steps, lr=settings.sft_lr,
                             batch_size=settings.sft_batch_size, seed=0)
            policy.name = f"{policy.name}-sft{settings.sft_steps}"  # the policy version later phases record
            plot_curve(sft["losses"], out / "sft_loss.png", title="SFT warm-up on the expert store",
                       ylabel="cross-entropy per token", log=True)
            report["sft"] = {**sft, "lr": settings.sft_lr, "batch_size": settings.sft_batch_size,
                             "policy_version": policy.name, "plot": str(out / "sft_loss.png")}

        with timer.phase("online", "oracle and tiny policy episodes over the real adb path"):
            online = fresh_store(out / "online")
            greedy = SamplingParams(max_tokens=settings.max_tokens, greedy=True, temperature=0.0)
            with adb_served_mobilesim() as served:
                episodes = run_online(served.env, tasks, OracleAgent(), policy_version="oracle", store=online)
                episodes += run_online(served.env, tasks[: settings.policy_online_tasks],
                                       PolicyAgent(policy, prompt, greedy), policy_version=policy.name,
                                       max_steps=settings.policy_step_budget, store=online)
                counters = dict(served.env.counters)
            report["online"] = {"store": str(out / "online"), "adb_server_port": served.adb_port,
                                "adb_counters": counters, "episodes": [episode_row(e) for e in episodes],
                                "metrics": {agent: online_metrics(e for e in episodes if e.policy_version == agent)
                                            for agent in ("oracle", policy.name)}}

        with timer.phase("offline_eval", "SOP of the tiny policy (greedy) and of the oracle's own actions"):
            report["offline_eval"] = {
                "tiny_policy": score_sop(data, PolicyPredictor(policy, space, settings.max_tokens), space,
                                         out / "eval" / "tiny"),
                "oracle_text": score_sop(data, ExpertTextPredictor(experts, space, data), space,
                                         out / "eval" / "oracle"),
            }

        with timer.phase("semi_online", f"UI-S1 semi-online rollouts, N = {settings.n_rollouts}, uis1 + grpo"):
            config = SemiOnlineConfig(n_rollouts=settings.n_rollouts, max_tokens=settings.max_tokens, prompt=prompt)
            groups = semi_online_rollouts(policy, experts, config, image_root=data)
            batch = AdvantageBatch.from_trajectories(groups)
            uis1 = get_advantage("uis1")(batch)
            summary, rows = rollout_summary(groups, batch, {"uis1": uis1.tolist(),
                                                            "grpo": get_advantage("grpo")(batch).tolist()})
            (out / "semi_online").mkdir(exist_ok=True)
            with open(out / "semi_online" / "trajectories.jsonl", "w", encoding="utf-8") as f:
                f.writelines(dumps(t) + "\n" for group in groups for t in group)
            plot_rewards_and_advantages([r["reward"] for r in rows],
                                        {"uis1 (A^E + A^S)": [r["adv_uis1"] for r in rows],
                                         "grpo": [r["adv_grpo"] for r in rows]},
                                        out / "semi_online.png", reward_values=(0.0, 0.1, 0.5, 1.0))
            report["semi_online"] = {"summary": summary, "rows": rows, "plot": str(out / "semi_online.png")}

        with timer.phase("update", "one ppo_clip policy-gradient step with the semi-online uis1 advantages"):
            report["update"] = measure_update(policy, groups, uis1, data, prompt, settings.update_lr)
    finally:
        report["phases"] = timer.phases
        report["total_seconds"] = timer.total_seconds
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        (out / "report.md").write_text(render_report(report), encoding="utf-8")
    return report


def _md_table(columns: list[str], rows: list[list[Any]]) -> list[str]:
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows)]


def render_report(report: dict[str, Any]) -> str:
    """The Markdown form of ``report.json``."""
    lines = ["# guiagent CPU demo", "", f"Mode: **{report['mode']}**. {report['not_included']}", "", "## Phases", "",
             *_md_table(["phase", "what", "seconds", "status"],
                        [[p["name"], p["what"], p["seconds"], p["status"]] for p in report["phases"]])]
    if sft := report.get("sft"):
        lines += ["", "## SFT warm-up on the expert store", "",
                  f"{sft['steps']} AdamW steps (lr {sft['lr']}) of {sft['batch_size']} samples drawn from "
                  f"{sft['samples']} expert steps, {sft['tokens_per_step']:.0f} response tokens per step: token-mean "
                  f"cross-entropy {sft['loss_start']:.3f} (first 10 steps) -> {sft['loss_end']:.4f} (last 10), "
                  f"{sft['seconds']:.1f} s. Loss curve: `sft_loss.png`. Later phases run `{sft['policy_version']}`."]
    if online := report.get("online"):
        lines += ["", "## Online episodes over adb (AndroidEnv → adb server → virtual adbd → MobileSim)", "",
                  *_md_table(list(online["episodes"][0]), [list(e.values()) for e in online["episodes"]])]
    if offline := report.get("offline_eval"):
        lines += ["", "## Offline SOP on the expert episodes (UI-S1 evaluation matcher)", "",
                  *_md_table(["predictor", "PG", "TSR", "SOP score", "type acc", "step SR", "parse failures"],
                             [[name, m["sop"]["pg"], m["sop"]["tsr"], m["sop"]["score"], m["type_acc"],
                               m["step_sr"], m["parse_failures"]] for name, m in offline.items()])]
    if semi := report.get("semi_online"):
        s = semi["summary"]
        lines += ["", "## Semi-online rollouts (UI-S1), rewards and advantages", "",
                  f"{s['expert_trajectories']} expert trajectories × N = {s['n_rollouts']} rollouts: {s['samples']} "
                  f"samples in {s['rounds']} batched rounds; parsed {s['parsed_fraction']:.0%}, matched "
                  f"{s['matched_fraction']:.0%}, mean reward {s['mean_reward']:.3f}, {s['patches']} thought-free "
                  f"patches, {s['ended_by_mismatch']} rollouts ended by a second mismatch; dynamic sampling "
                  f"(std > {s['dynamic_sampling']['eta']}) keeps {s['dynamic_sampling']['tasks_kept']} of "
                  f"{s['dynamic_sampling']['tasks']} tasks.", "",
                  *_md_table(list(semi["rows"][0]), [list(r.values()) for r in semi["rows"]])]
    if update := report.get("update"):
        keys = ("samples", "context_rows", "tokens", "nonzero_advantages", "loss", "pg_loss", "grad_norm",
                "clip_fraction", "ratio_mean", "approx_kl_old", "max_abs_logprob_diff", "parameter_tensors_changed",
                "weight_change_l2")
        lines += ["", "## One policy-gradient step (ppo_clip, uis1 advantages)", "",
                  *_md_table(["metric", "value"], [[k, update[k]] for k in keys])]
    lines += ["", "## Notes", "", *(f"- {note}" for note in report["notes"]), ""]
    return "\n".join(lines)


def print_summary(report: dict[str, Any]) -> None:
    """The phase table and the headline numbers, on stdout."""
    print("\nphase          seconds  status")
    for p in report["phases"]:
        print(f"{p['name']:<14} {p['seconds']:>7.2f}  {p['status']}")
    print(f"{'total':<14} {report['total_seconds']:>7.2f}")
    s = report["sft"]
    print(f"sft     {s['steps']} steps  loss {s['loss_start']:.3f} -> {s['loss_end']:.4f}  ({s['seconds']:.1f} s)")
    for e in report["online"]["episodes"]:
        print(f"online  {e['agent']:<8} {e['task']:<40} steps {e['steps']:>2}  parse failures "
              f"{e['parse_failures']:>2}  success {e['success']}")
    for name, m in report["offline_eval"].items():
        print(f"SOP     {name:<12} PG {m['sop']['pg']:.3f}  TSR {m['sop']['tsr']:.3f}  score {m['sop']['score']:.3f}")
    s = report["semi_online"]["summary"]
    print(f"semi-online  samples {s['samples']}  mean reward {s['mean_reward']:.3f}  matched "
          f"{s['matched_fraction']:.0%}  max |A_uis1| {s['max_abs_adv_uis1']:.3f}")
    u = report["update"]
    print(f"update  ppo_clip on {u['samples']} samples  loss {u['loss']:.4f}  grad norm {u['grad_norm']:.3f}  "
          f"parameter tensors changed {u['parameter_tensors_changed']}/{u['parameter_tensors']}  "
          f"max |logprob - rollout's| {u['max_abs_logprob_diff']:.2e}")
    print(NOT_INCLUDED)


def main(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Output directory (the tiny model is cached here)."),
    quick: bool = typer.Option(False, "--quick", help="Two tasks, 30 SFT steps: under a minute."),
) -> None:
    """Run the CPU demo and write DIR/report.json, DIR/report.md, DIR/sft_loss.png and DIR/semi_online.png."""
    try:
        report = run_demo(out, quick)
    except Exception as exc:  # the report names the failed phase; say where it is and fail
        print(f"[demo] failed: {type(exc).__name__}: {exc}; see {out / 'report.md'}", file=sys.stderr)
        raise typer.Exit(code=1) from None
    print_summary(report)
    written = [out / name for name in ("report.json", "report.md", "sft_loss.png", "semi_online.png")]
    print("wrote " + ", ".join(str(path) for path in written))


if __name__ == "__main__":
    typer.run(main)
