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


def time_refine(n: int, repeats: int = 5, as_list: bool = False) -> float:
    """Median seconds of `refine_schedule` on n norms, given as a numpy array or (what a JSON file gives) a list."""
    from hf_lrschedule import refine_schedule

    norms = np.random.default_rng(0).lognormal(size=n)
    if as_list:
        norms = norms.tolist()
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


def step_times(record: str, steps: int, out: Path) -> list[float]:
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
    args = TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=8, learning_rate=1e-3,
                             logging_steps=50, report_to="none", save_strategy="no", disable_tqdm=True, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[clock])
    if record == "attach":
        GradNormRecorderCallback(path=out / "norms.json").attach(trainer)
    elif record == "attach_l2_only":
        GradNormRecorderCallback(path=out / "norms.json", record_l1=False).attach(trainer)
    elif record == "callback":
        trainer.add_callback(GradNormRecorderCallback(path=out / "norms.json"))
    trainer.train()
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
    results["refine_seconds_list_input"] = {str(n): time_refine(n, as_list=True) for n in (10_000, 100_000, 1_000_000)}
    results["scheduler_step_seconds"] = {str(T): time_scheduler_step(T) for T in (1_000, 1_000_000)}
    modes = ("none", "attach", "attach_l2_only", "callback")
    medians = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for mode in modes:  # alternated, side by side
                medians[mode].append(statistics.median(step_times(mode, args.steps, Path(tmp) / f"{mode}{repeat}")))
                print(f"repeat {repeat} recorder={mode}: median step {medians[mode][-1] * 1e3:.1f} ms", flush=True)
    results["recording"] = {
        "model": "Llama 4 layers, hidden 256, vocab 256 (3.2M parameters), batch 8 x 64, AdamW, CPU",
        "median_step_seconds": medians,
        "overhead_ratio_median": {
            mode: statistics.median(w / wo for w, wo in zip(medians[mode], medians["none"])) for mode in modes[1:]
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
