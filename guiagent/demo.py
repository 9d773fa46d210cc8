"""The main job: ``python -m guiagent.demo [--out DIR] [--seeds N] [--quick]`` (``bash scripts/run.sh demo``).

On CPU, with nothing downloaded, for each seed:

1. ``rl``: ``guiagent train configs/demo/mobilesim_cpu.yaml`` — the tiny Qwen2.5-VL is built, the MobileSim
   oracle demonstrates the training tasks, the SFT warm-up imitates them, a local farm (redis-server + MobileSim
   workers) and a vLLM CPU server start, the held-out tasks are evaluated, and then online GRPO with GiGPO step
   credit runs on the farm for a fixed wall time (rollout → reward → advantage → update → sync_weights →
   evaluate → checkpoint), followed by the same held-out evaluation.
2. ``control``: from the same SFT warm-up (the RL run's step-0 checkpoint), more SFT on the same
   demonstrations for the same wall time as the RL loop took, then the same held-out evaluation.

Then ``DIR/report.json``, ``DIR/report.md`` and ``DIR/compare.png``: held-out success and SOP before RL
(the SFT warm-up), after RL, and for the same-time SFT control, per seed, their mean and spread, per-template
success and episode counts, with links to each run's report, metrics and recorded trajectories. The report
states what the numbers show and nothing more.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

import typer

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "demo" / "mobilesim_cpu.yaml"
ARMS = ("before_rl", "after_rl", "control")
# --quick: the same job, sized for a test (two templates, short SFT, a few updates).
QUICK = {"trainer": {"max_seconds": 25, "local_farm": 2, "checkpoint_every": 2},
         "online": {"group_size": 2, "max_steps": 4},
         "sft": {"steps": 30},
         "data": {"templates": ["SettingsToggleWifi", "SettingsSetTwoToggles"], "seeds": [0, 1]},
         "evaluation": {"templates": ["SettingsToggleWifi", "SettingsSetTwoToggles"], "seeds": [100], "max_steps": 4}}


def merged(config: Any, overrides: dict[str, dict[str, Any]]) -> Any:
    """``config`` with each section's fields replaced by ``overrides`` (re-validated)."""
    data = config.model_dump(mode="json")
    for section, fields in overrides.items():
        data[section] = {**(data.get(section) or {}), **fields}
    return type(config).model_validate(data)


def run_seed(base: Any, out: Path, seed: int, rl_seconds: float | None) -> dict[str, Any]:
    """The RL run and its same-time SFT control for one seed; returns the three evaluations and the timings."""
    from guiagent.trainer.loop import train
    from guiagent.ui.report import write_report

    rl_config = merged(base, {"trainer": {} if rl_seconds is None else {"max_seconds": rl_seconds}})
    rl_config = rl_config.model_copy(update={"seed": seed})
    rl = train(rl_config, out / "rl")
    write_report(out / "rl")
    spent = sum(p["seconds"] for p in rl["phases"])  # the RL loop's wall time, setup and evaluations aside
    control_config = merged(rl_config, {
        "trainer": {"model": str(out / "rl" / "checkpoints" / "step-000000" / "model"), "rollout": "sft",
                    "max_seconds": max(spent - _evaluation_seconds(rl), 1.0), "local_farm": 0,
                    "groups_per_step": rl_config.sft.batch_size // 2 or 1},
        "optimizer": {"lr": rl_config.sft.lr * 0.1},
        "sft": {"steps": 0},
        "evaluation": {"before": False},
        "sync": {"backend": "local"}})
    control = train(control_config, out / "control")
    write_report(out / "control")
    before = json.loads((out / "rl" / "eval" / "before_rl.json").read_text(encoding="utf-8"))
    return {"seed": seed, "before_rl": before, "after_rl": rl["final_eval"], "control": control["final_eval"],
            "rl_updates": rl["steps_done"], "control_updates": control["steps_done"],
            "rl_loop_seconds": round(spent, 1), "control_loop_seconds": round(sum(p["seconds"] for p in control["phases"]), 1),
            "runs": {"rl": str(out / "rl"), "control": str(out / "control")}}


def _evaluation_seconds(summary: dict[str, Any]) -> float:
    return sum(p["seconds"] for p in summary["phases"] if p["name"] == "evaluate")


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def aggregate(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread over seeds of each arm's held-out success, template success and SOP; per template."""
    out: dict[str, Any] = {}
    for arm in ARMS:
        runs = [s[arm] for s in seeds]
        templates = sorted({t for r in runs for t in r["per_template"]})
        out[arm] = {
            "success": _spread([r["success"] for r in runs]),
            "template_success": _spread([r["template_success"] for r in runs]),
            "sop": _spread([r["sop"] for r in runs]) if all(r["sop"] is not None for r in runs) else None,
            "per_template": {t: statistics.fmean(r["per_template"].get(t, 0.0) for r in runs) for t in templates},
            "episodes": sum(r["episodes"] for r in runs)}
    gain = [s["after_rl"]["success"] - s["control"]["success"] for s in seeds]
    out["rl_minus_control_success"] = _spread(gain)
    return out


def verdict(summary: dict[str, Any], n: int) -> str:
    """One sentence on what the numbers show, no more."""
    gain = summary["rl_minus_control_success"]
    spread = max(summary["after_rl"]["success"]["std"], summary["control"]["success"]["std"])
    if n < 2:
        return (f"One seed: RL minus the same-time SFT control is {gain['mean']:+.3f} held-out success; one seed "
                "cannot separate that from seed-to-seed noise (run with --seeds 3).")
    if gain["mean"] > spread and gain["min"] > 0:
        return (f"RL beat the same-time SFT control on held-out success in every seed (mean {gain['mean']:+.3f}, "
                f"larger than the seed-to-seed spread {spread:.3f}).")
    return (f"RL did not beat the same-time SFT control beyond the seed-to-seed spread: held-out success RL minus "
            f"control {gain['mean']:+.3f} (min {gain['min']:+.3f}, max {gain['max']:+.3f}), spread {spread:.3f}.")


def plot(seeds: list[dict[str, Any]], path: Path) -> None:
    from guiagent.trainer.plots import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key, title in ((axes[0], "success", "held-out success"), (axes[1], "sop", "held-out SOP")):
        for i, arm in enumerate(ARMS):
            values = [s[arm][key] for s in seeds if s[arm].get(key) is not None]
            if values:
                ax.bar(i, statistics.fmean(values), color=("#999999", "#4c72b0", "#dd8452")[i])
                ax.scatter([i] * len(values), values, color="black", s=12, zorder=3)
        ax.set_xticks(range(len(ARMS)), ["SFT warm-up", "after RL", "same-time SFT"])
        ax.set(title=title, ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render(report: dict[str, Any]) -> str:
    """The Markdown form of ``report.json``."""
    s = report["summary"]
    lines = ["# guiagent main job: SFT, then RL on MobileSim through the local farm", "",
             f"**{report['verdict']}**", "",
             f"Config `{report['config']}`; seeds {report['seeds']}; {report['split']}", "",
             "| arm | held-out success (mean ± std over seeds) | template success | SOP | episodes |",
             "|---|---|---|---|---|"]
    for arm, name in zip(ARMS, ("SFT warm-up (before RL)", "after RL", "same-time SFT control")):
        a = s[arm]
        sop = f"{a['sop']['mean']:.3f} ± {a['sop']['std']:.3f}" if a["sop"] else "-"
        lines.append(f"| {name} | {a['success']['mean']:.3f} ± {a['success']['std']:.3f} | "
                     f"{a['template_success']['mean']:.3f} ± {a['template_success']['std']:.3f} | {sop} | "
                     f"{a['episodes']} |")
    templates = sorted(s["before_rl"]["per_template"])
    lines += ["", "Per template (held-out success, mean over seeds):", "",
              "| template | " + " | ".join(ARMS) + " |", "|---" * (len(ARMS) + 1) + "|"]
    lines += [f"| {t} | " + " | ".join(f"{s[arm]['per_template'].get(t, 0.0):.2f}" for arm in ARMS) + " |"
              for t in templates]
    lines += ["", "| seed | RL updates | RL loop s | control updates | control loop s | RL run | control run |",
              "|---|---|---|---|---|---|---|"]
    for seed in report["per_seed"]:
        lines.append(f"| {seed['seed']} | {seed['rl_updates']} | {seed['rl_loop_seconds']} | {seed['control_updates']} | "
                     f"{seed['control_loop_seconds']} | [{seed['runs']['rl']}]({seed['runs']['rl']}/report.html) | "
                     f"[{seed['runs']['control']}]({seed['runs']['control']}/report.html) |")
    lines += ["", "Recorded trajectories: each run's `store/` (`guiagent view RUN`); curves: each run's `plots/`.", ""]
    return "\n".join(lines)


def run_demo(out: Path, seeds: list[int], quick: bool, rl_seconds: float | None) -> dict[str, Any]:
    from guiagent.config import load_config
    from guiagent.schema import GuiAgentConfig

    base = load_config(CONFIG, GuiAgentConfig)
    if quick:
        base = merged(base, QUICK)
    out.mkdir(parents=True, exist_ok=True)
    per_seed = [run_seed(base, out / f"seed-{seed}", seed, rl_seconds) for seed in seeds]
    summary = aggregate(per_seed)
    report = {"config": str(CONFIG.relative_to(REPO)), "quick": quick, "seeds": seeds, "summary": summary,
              "verdict": verdict(summary, len(seeds)), "per_seed": per_seed,
              "split": (f"training tasks {base.data.templates} x seeds {base.data.seeds}; held-out tasks "
                        f"{base.evaluation.templates} x seeds {base.evaluation.seeds}")}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(render(report), encoding="utf-8")
    plot(per_seed, out / "compare.png")
    return report


def main(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Output directory."),
    seeds: int = typer.Option(1, "--seeds", min=1, max=10, help="How many seeds (0..N-1): one RL run and one "
                              "same-time SFT control each."),
    quick: bool = typer.Option(False, "--quick", help="A small, fast version of the same job (tests)."),
    rl_seconds: float = typer.Option(None, "--rl-seconds", min=1, help="Override the RL loop's wall time."),
) -> None:
    """Run the main job and write DIR/report.json, DIR/report.md and DIR/compare.png."""
    from guiagent.errors import GuiAgentError
    from guiagent.trainer.loop import stop_on_sigterm

    stop_on_sigterm()
    try:
        report = run_demo(out, list(range(seeds)), quick, rl_seconds)
    except GuiAgentError as exc:
        print(f"[demo] failed: {exc}", file=sys.stderr)
        raise typer.Exit(code=1) from None
    print((out / "report.md").read_text(encoding="utf-8"))
    print(f"wrote {out / 'report.json'}, {out / 'report.md'}, {out / 'compare.png'}")


if __name__ == "__main__":
    typer.run(main)
