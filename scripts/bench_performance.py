"""Performance numbers quoted in the README: refinement time, scheduler step cost, recording overhead.

    python scripts/bench_performance.py            # writes results/performance.json (about 3 minutes)

Recording overhead: the same Trainer run (a ~3M-parameter Llama, AdamW, CPU) with and without
GradNormRecorderCallback, alternated `--repeats` times; the median per-step time of each, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def time_refine(n: int, repeats: int = 5) -> float:
    from hf_lrschedule import refine_schedule

    norms = np.random.default_rng(0).lognormal(size=n)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        refine_schedule(norms, n)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_scheduler_step(T: int, steps: int = 2000) -> float:
    import torch

    from hf_lrschedule import get_linear_refined_schedule

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_linear_refined_schedule(opt, 0, T, grad_norms=np.random.default_rng(0).lognormal(size=1000).tolist())
    start = time.perf_counter()
    for _ in range(steps):
        sched.step()
    return (time.perf_counter() - start) / steps


def step_times(record: bool, steps: int, out: Path) -> list[float]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from hf_lrschedule import GradNormRecorderCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.times, self.last = [], None

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            if self.last is not None:
                self.times.append(now - self.last)
            self.last = now

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=256, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128)
    model = LlamaForCausalLM(config)
    data = [{"input_ids": torch.randint(0, 256, (64,)), "labels": torch.randint(0, 256, (64,))} for _ in range(512)]
    clock = StepClock()
    callbacks = [clock] + ([GradNormRecorderCallback(path=out / "norms.json")] if record else [])
    args = TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=8, learning_rate=1e-3,
                             logging_steps=50, report_to="none", save_strategy="no", disable_tqdm=True, seed=0)
    Trainer(model=model, args=args, train_dataset=data, callbacks=callbacks).train()
    return clock.times[5:]  # drop warm-up steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", default=str(ROOT / "results" / "performance.json"))
    args = parser.parse_args()
    import tempfile

    import torch

    results = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {platform.python_version()}"}
    results["refine_seconds"] = {str(n): time_refine(n) for n in (10_000, 100_000, 1_000_000)}
    results["scheduler_step_seconds"] = {str(T): time_scheduler_step(T) for T in (1_000, 1_000_000)}
    medians = {"without": [], "with": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for record in (False, True):  # alternated, side by side
                times = step_times(record, args.steps, Path(tmp) / f"{record}{repeat}")
                medians["with" if record else "without"].append(statistics.median(times))
                print(f"repeat {repeat} recorder={record}: median step {medians['with' if record else 'without'][-1] * 1e3:.1f} ms", flush=True)
    ratios = [w / wo for w, wo in zip(medians["with"], medians["without"])]
    results["recording"] = {
        "model": "Llama 4 layers, hidden 256, vocab 256 (3.2M parameters), batch 8 x 64, AdamW, CPU",
        "median_step_seconds_without": medians["without"],
        "median_step_seconds_with": medians["with"],
        "overhead_ratio_median": statistics.median(ratios),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
