"""Performance numbers quoted in the docs: refinement time, scheduler step cost, recording and health-check overhead.

    python scripts/bench_performance.py --repeats 5 --steps 80   # writes results/performance.json (~8 minutes)
    python scripts/bench_performance.py --repeats 5 --steps 80 --only health   # that section only (~5 minutes)

Recording overhead: the same Trainer run (a ~3M-parameter Llama, AdamW, CPU) with and without
GradNormRecorderCallback, alternated `--repeats` times; the median per-step time of each, and their ratio.

Health-check overhead: the same run with `HealthCallback` attached, at the runs' logging interval (50 steps) and at
every step (its worst case: it works once per log), each beside the run without it; plus the time spent inside the
callback itself, as a share of the median step (a direct measurement, finer than the ratio's run-to-run noise).
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


#: The variants run side by side: (recorder mode, health callback, logging_steps).
VARIANTS = {
    "none": ("none", False, 50),
    "attach": ("attach", False, 50),
    "attach_l2_only": ("attach_l2_only", False, 50),
    "callback": ("callback", False, 50),
    "health": ("none", True, 50),
    "none_log_every_step": ("none", False, 1),
    "health_log_every_step": ("none", True, 1),
}
#: Each variant's baseline for the overhead ratio: the run without it, logging as often.
BASELINE = {"health_log_every_step": "none_log_every_step"}


def step_times(record: str, steps: int, out: Path, health: bool = False, logging_steps: int = 50
               ) -> tuple[list[float], float]:
    """Per-step times (warm-up dropped) and the seconds spent inside `HealthCallback.on_log` (0 without it)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from hf_lrschedule import GradNormRecorderCallback, HealthCallback

    class TimedHealthCallback(HealthCallback):
        seconds = 0.0

        def on_log(self, *args, **kwargs):
            start = time.perf_counter()
            super().on_log(*args, **kwargs)
            self.seconds += time.perf_counter() - start

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
                             logging_steps=logging_steps, report_to="none", save_strategy="no", disable_tqdm=True,
                             seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[clock])
    checker = TimedHealthCallback().attach(trainer) if health else None
    if record == "attach":
        GradNormRecorderCallback(path=out / "norms.json").attach(trainer)
    elif record == "attach_l2_only":
        GradNormRecorderCallback(path=out / "norms.json", record_l1=False).attach(trainer)
    elif record == "callback":
        trainer.add_callback(GradNormRecorderCallback(path=out / "norms.json"))
    trainer.train()
    return clock.times[5:], checker.seconds if checker is not None else 0.0  # drop warm-up steps


MODEL = "Llama 4 layers, hidden 256, vocab 256 (3.2M parameters), batch 8 x 64, AdamW, CPU"
RECORDER_MODES = ("attach", "attach_l2_only", "callback")
HEALTH_NAMES = ("health", "health_log_every_step")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", default=str(ROOT / "results" / "performance.json"))
    parser.add_argument("--only", choices=("health",), help="measure only this section; keep the others in --out")
    args = parser.parse_args()
    import tempfile

    import torch

    from hf_lrschedule.formats import atomic_write_json

    if args.only:
        results = json.loads(Path(args.out).read_text(encoding="utf-8")) if Path(args.out).is_file() else {}
        variants = {name: VARIANTS[name] for name in ("none", *HEALTH_NAMES, "none_log_every_step")}
    else:
        results = {"refine_seconds": {str(n): time_refine(n) for n in (10_000, 100_000, 1_000_000)}}
        results["refine_seconds_list_input"] = {str(n): time_refine(n, as_list=True) for n in (10_000, 100_000, 1_000_000)}
        results["scheduler_step_seconds"] = {str(T): time_scheduler_step(T) for T in (1_000, 1_000_000)}
        variants = VARIANTS
    results["machine"] = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                          f"{platform.python_version()}")
    medians = {name: [] for name in variants}
    inside = {name: [] for name, (_, health, _) in variants.items() if health}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for name, (record, health, logging_steps) in variants.items():  # alternated, side by side
                times, seconds = step_times(record, args.steps, Path(tmp) / f"{name}{repeat}", health, logging_steps)
                medians[name].append(statistics.median(times))
                if health:  # the callback's own time per step, as a share of this run's median step
                    inside[name].append(seconds / args.steps / medians[name][-1])
                print(f"repeat {repeat} {name}: median step {medians[name][-1] * 1e3:.1f} ms", flush=True)

    def ratio(name: str) -> float:
        base = medians[BASELINE.get(name, "none")]
        return statistics.median(w / wo for w, wo in zip(medians[name], base))

    if not args.only:
        results["recording"] = {
            "model": MODEL,
            "median_step_seconds": {name: medians[name] for name in ("none", *RECORDER_MODES)},
            "overhead_ratio_median": {name: ratio(name) for name in RECORDER_MODES},
        }
    shown = ("none", *HEALTH_NAMES, "none_log_every_step")
    results["health"] = {
        "model": MODEL,
        "repeats": args.repeats,
        "steps": args.steps,
        "logging_steps": {name: VARIANTS[name][2] for name in shown},
        "median_step_seconds": {name: medians[name] for name in shown},
        "baseline": {name: BASELINE.get(name, "none") for name in HEALTH_NAMES},
        "overhead_ratio_median": {name: ratio(name) for name in HEALTH_NAMES},
        "callback_share_of_step_median": {name: statistics.median(inside[name]) for name in HEALTH_NAMES},
    }
    atomic_write_json(args.out, results)
    print(json.dumps(results["health"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
