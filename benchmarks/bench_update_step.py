"""The trainer's update step against TRL's ``GRPOTrainer`` on the tiny Qwen2.5-VL: step time and peak memory.

Both sides train the same tiny VLM on the same prompt and the same pre-generated completions (sampled once
from the tiny model at temperature 1, ``--max-tokens`` each), one optimizer step per group of G:

* ``ours``: :func:`guiagent.trainer.update.policy_gradient_step` on a :class:`TorchEngine` (prefix sharing,
  one micro-batch of G rows), from trajectories whose screenshots are PNG bytes (the prompt is rebuilt and
  encoded inside the step, as in training);
* ``ours_plain``: the same with ``share_prefix=False`` (the model's own forward on a plain batch, response-only
  LM head): what the prefix sharing is worth on its own;
* ``trl``: ``GRPOTrainer`` with its generation replaced by the same completions (``_generate_single_turn``
  returns them), ``beta`` 0 (no reference model, like ours), one iteration per batch.

Workloads: the one-screenshot prompt (842 tokens, 230 image tokens: a 1080 x 2400 screen at
``max_pixels`` = 240·28²) and the two-screenshot history prompt (the previous screen and answer, then the
current screen), each at G = 4 and G = 8. Each (variant, workload) runs in its own process (peak RSS is that
process's ``ru_maxrss``); the step time is the median of ``--steps`` steps after ``--warmup`` steps. Every
(variant, workload) runs ``--repeats`` times, round-robin, and its fastest run counts (on a shared machine the
others carry other processes' load; all medians are in the JSON), with ``--threads`` torch threads. Ratios
are ours / TRL.

TRL is a benchmark-only dependency, not one of the project's::

    .venv/bin/pip install trl          # measured with trl 1.16.0
    .venv/bin/python benchmarks/bench_update_step.py
    .venv/bin/python benchmarks/bench_update_step.py --steps 5 --warmup 1 --groups 4
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import add_json_option, print_table, write_json

MAX_PIXELS = 240 * 28 * 28  # a 1080 x 2400 screen → 20 x 46 patches of 28 → 230 image tokens
INSTRUCTION = "open the settings app and turn on wifi"
PREVIOUS = '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [120, 300]}}\n</tool_call>'
VARIANTS = ("ours", "ours_plain", "trl")


def _prompt_config():
    from guiagent.actions import ActionSpaceConfig
    from guiagent.policy.prompts import PromptConfig

    return PromptConfig(actions=ActionSpaceConfig(format="qwen25vl_mobile", max_pixels=MAX_PIXELS), history_images=2)


def _screens() -> list[bytes]:
    """Two synthetic 1080 x 2400 phone screens as PNG bytes (the previous and the current one)."""
    from PIL import Image, ImageDraw

    shots = []
    for i in range(2):
        image = Image.new("RGB", (1080, 2400), (235 - 40 * i, 240, 250))
        draw = ImageDraw.Draw(image)
        for row in range(10):
            top = 200 + row * 210
            draw.rectangle([60, top, 1020, top + 150], fill=(30 * row % 255, 90 + 60 * i, 200 - 15 * row))
            draw.text((90, top + 60), f"Setting {row} on screen {i}", fill=(255, 255, 255))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        shots.append(buffer.getvalue())
    return shots


def _messages(screens: list[bytes], n_screens: int):
    from guiagent.policy.prompts import HistoryStep, build_messages

    history = [HistoryStep(response=PREVIOUS, screenshot=screens[0])] if n_screens == 2 else []
    return build_messages(INSTRUCTION, screens[1], history, _prompt_config())


def prepare(work: Path, model_dir: Path | None, max_group: int, max_tokens: int) -> dict:
    """Build the tiny model (unless given), write the screens, sample ``max_group`` completions per prompt."""
    from guiagent.policy.base import GenerationRequest, SamplingParams
    from guiagent.policy.local import LocalPolicy
    from guiagent.policy.prompts import encode_prompt
    from guiagent.policy.tiny import build_tiny_qwen25vl

    if model_dir is None:
        model_dir = build_tiny_qwen25vl(work / "tiny-qwen25vl", seed=0)
    policy = LocalPolicy.from_pretrained(model_dir)
    screens = _screens()
    paths = []
    for i, png in enumerate(screens):
        paths.append(str(work / f"screen{i}.png"))
        Path(paths[-1]).write_bytes(png)
    prompts = {}
    for n_screens in (1, 2):
        messages = _messages(screens, n_screens)
        encoded = encode_prompt(policy.processor, messages)
        # The random tiny model now and then samples a vision placeholder token, which TRL's forward (and the
        # model's own) would take for an image: keep only completions without one.
        vision = set(policy.processor.tokenizer.convert_tokens_to_ids(
            ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]))
        generations, seed = [], 0
        while len(generations) < max_group:
            sampling = SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=1000 * n_screens + seed)
            batch = policy.generate([GenerationRequest(messages)] * max_group, sampling)
            generations += [g for g in batch if not vision & set(g.token_ids)][: max_group - len(generations)]
            seed += 1
        prompts[str(n_screens)] = {
            "prompt_tokens": int(encoded.inputs["input_ids"].shape[1]), "image_tokens": encoded.n_image_tokens,
            "completions": [list(g.token_ids) for g in generations],
            "logprobs": [list(g.logprobs) for g in generations],
        }
    return {"model": str(model_dir), "screens": paths, "prompts": prompts}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_ours(spec: dict, n_screens: int, group: int, steps: int, share_prefix: bool) -> list[float]:
    """Step times of ``policy_gradient_step`` on G trajectories that end in the sampled step."""
    import torch

    from guiagent.policy.local import LocalPolicy
    from guiagent.trainer.engine import TorchEngine
    from guiagent.trainer.update import policy_gradient_step
    from guiagent.types import Observation, Step, Trajectory

    policy = LocalPolicy.from_pretrained(spec["model"])
    engine = TorchEngine(policy.model, lr=1e-5)
    screens = [Path(p).read_bytes() for p in spec["screens"]]
    sampled = spec["prompts"][str(n_screens)]
    trajectories = []
    for g in range(group):
        steps_ = []
        if n_screens == 2:  # the previous step: context only, its response in the history
            steps_.append(Step(index=0, observation=Observation(1080, 2400, screenshot=screens[0],
                                                                instruction=INSTRUCTION),
                               action=None, response=PREVIOUS, patched=True))
        steps_.append(Step(index=len(steps_), observation=Observation(1080, 2400, screenshot=screens[1],
                                                                      instruction=INSTRUCTION),
                           action=None, token_ids=tuple(sampled["completions"][g]), logprobs=tuple(sampled["logprobs"][g])))
        trajectories.append(Trajectory(episode_id=f"g{g}", task_id="bench", seed=0, env_id="bench",
                                       policy_version="base", steps=tuple(steps_), instruction=INSTRUCTION))
    per_row = torch.linspace(-1.0, 1.0, group)
    advantages = torch.stack([per_row] * n_screens, dim=1).flatten()  # context rows' values are never used
    times = []
    policy.model.train()
    for _ in range(steps):
        start = time.perf_counter()
        policy_gradient_step(engine, [trajectories], advantages, processor=policy.processor, prompt=_prompt_config(),
                             micro_batch_size=group, share_prefix=share_prefix)
        times.append(time.perf_counter() - start)
    return times


def run_trl(spec: dict, n_screens: int, group: int, steps: int, work: Path) -> list[float]:
    """Step times of TRL's ``GRPOTrainer`` with the pre-generated completions in place of its generation."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from datasets import Dataset

    screens = [Path(p).read_bytes() for p in spec["screens"]]
    completions = spec["prompts"][str(n_screens)]["completions"][:group]
    # TRL's dataset form of the same messages: content blocks with image placeholders, the (already resized)
    # images in an "images" column, filled back in by TRL in prompt order.
    prompt, images = [], []
    for message in _messages(screens, n_screens):
        parts = [{"type": "text", "text": message["content"]}] if isinstance(message["content"], str) else [
            {"type": "image"} if part["type"] == "image" else {"type": "text", "text": part["text"]}
            for part in message["content"]]
        images += [part["image"] for part in message["content"] if not isinstance(message["content"], str)
                   and part["type"] == "image"]
        prompt.append({"role": message["role"], "content": parts})
    dataset = Dataset.from_list([{"prompt": prompt, "images": images}])

    class PreGenerated(GRPOTrainer):
        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, **kwargs):
            self.prompt_tokens = len(prompt_ids[0])
            return [list(completions[i % group]) for i in range(len(prompt_ids))], None

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.start = [], 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self.start)

    def reward(completions, **kwargs):  # varied rewards, so the advantages are not all zero
        return [float(i % 2) for i in range(len(completions))]

    config = GRPOConfig(
        output_dir=str(work / "trl"), per_device_train_batch_size=group, num_generations=group,
        gradient_accumulation_steps=1, max_completion_length=max(len(c) for c in completions), learning_rate=1e-5,
        max_steps=steps, beta=0.0, num_iterations=1, logging_steps=10**6, save_strategy="no", report_to=[],
        use_cpu=True, bf16=False, dataloader_num_workers=0, seed=0,
    )
    timer = StepTimer()
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(spec["model"], dtype=torch.float32)
    trainer = PreGenerated(model=model, reward_funcs=reward, args=config, train_dataset=dataset,
                           processing_class=AutoProcessor.from_pretrained(spec["model"]), callbacks=[timer])
    trainer.train()
    if trainer.prompt_tokens != spec["prompts"][str(n_screens)]["prompt_tokens"]:
        raise RuntimeError(f"TRL's prompt has {trainer.prompt_tokens} tokens, ours "
                           f"{spec['prompts'][str(n_screens)]['prompt_tokens']}: not the same workload")
    return timer.times


def child(args: argparse.Namespace) -> None:
    spec = json.loads(args.work.read_text())
    total = args.warmup + args.steps
    if args.child == "trl":
        times = run_trl(spec, args.screens, args.group, total, args.work.parent)
    else:
        times = run_ours(spec, args.screens, args.group, total, share_prefix=args.child == "ours")
    measured = times[args.warmup:]
    print(json.dumps({"median_s": statistics.median(measured), "times_s": measured,
                      "peak_rss_mb": _peak_rss_mb()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="measured steps per run (median)")
    parser.add_argument("--warmup", type=int, default=2, help="steps run first and not measured")
    parser.add_argument("--groups", type=int, nargs="+", default=[4, 8], help="group sizes G")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens per pre-generated completion")
    parser.add_argument("--repeats", type=int, default=2, help="processes per (variant, workload); the fastest counts")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per process (1: on a shared machine a multi-threaded step stalls whenever "
                             "another process holds a core)")
    parser.add_argument("--model", type=Path, help="a tiny Qwen2.5-VL directory (default: build one)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--screens", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--group", type=int, help=argparse.SUPPRESS)
    add_json_option(parser, __file__)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if "trl" in args.variants:
        try:
            import trl
        except ImportError:
            sys.exit("TRL is not installed (a benchmark-only dependency): .venv/bin/pip install trl")
        trl_version = trl.__version__
    else:
        trl_version = None

    workloads = [(n_screens, group) for n_screens in (1, 2) for group in args.groups]
    runs: dict[tuple[int, int, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-update-") as tmp:
        work = Path(tmp)
        spec = prepare(work, args.model, max(args.groups), args.max_tokens)
        (work / "work.json").write_text(json.dumps(spec))
        # Round-robin over repeats, workloads and variants, so a burst of load from other processes on a
        # shared machine falls on all of them alike.
        for repeat in range(args.repeats):
            for n_screens, group in workloads:
                for variant in args.variants:
                    command = [sys.executable, __file__, "--child", variant, "--work", str(work / "work.json"),
                               "--screens", str(n_screens), "--group", str(group), "--steps", str(args.steps),
                               "--warmup", str(args.warmup)]
                    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
                    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
                    if done.returncode != 0:
                        sys.exit(f"{variant} (screens {n_screens}, G {group}) failed:\n{done.stderr[-3000:]}")
                    run = json.loads(done.stdout.strip().splitlines()[-1])
                    runs.setdefault((n_screens, group, variant), []).append(run)
                    print(f"  [{repeat + 1}/{args.repeats}] {variant:>10} screens={n_screens} G={group}: "
                          f"{run['median_s']:.3f} s/step, peak RSS {run['peak_rss_mb']:.0f} MB", flush=True)
    results = []
    for n_screens, group in workloads:
        row = {"screens": n_screens, "group": group,
               **{k: spec["prompts"][str(n_screens)][k] for k in ("prompt_tokens", "image_tokens")}}
        for variant in args.variants:
            # The least disturbed run (smallest median) stands for the variant; every run is in the JSON.
            tries = runs[(n_screens, group, variant)]
            row[variant] = {**min(tries, key=lambda r: r["median_s"]), "medians_s": [r["median_s"] for r in tries]}
        if "ours" in row and "trl" in row:
            row["time_ratio"] = row["ours"]["median_s"] / row["trl"]["median_s"]
            row["rss_ratio"] = row["ours"]["peak_rss_mb"] / row["trl"]["peak_rss_mb"]
        results.append(row)

    header = ["screens", "G", "prompt tok", *(f"{v} s" for v in args.variants), *(f"{v} MB" for v in args.variants),
              "time ours/trl", "RSS ours/trl"]
    rows = [[r["screens"], r["group"], r["prompt_tokens"], *(round(r[v]["median_s"], 3) for v in args.variants),
             *(round(r[v]["peak_rss_mb"]) for v in args.variants),
             round(r["time_ratio"], 3) if "time_ratio" in r else None,
             round(r["rss_ratio"], 3) if "rss_ratio" in r else None] for r in results]
    print_table(header, rows, width=12)
    write_json(args.json, "bench_update_step", trl_version=trl_version, steps=args.steps, warmup=args.warmup,
               repeats=args.repeats, threads=args.threads, max_tokens=args.max_tokens,
               load_average=os.getloadavg(), results=results)


if __name__ == "__main__":
    main()
