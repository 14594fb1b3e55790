"""Issue 17, part 3: refinements of the method that might keep real gains, chosen on dev tasks, reported on held-out.

    python benchmarks/method_study.py --bench-out /tmp/bench_long                     # the long-run tasks
    python benchmarks/method_study.py --bench-out /tmp/bench_long --tasks shakespeare_llama_long --out /tmp/ms

It runs on a finished benchmark invocation's cells (`run_benchmark.py --tasks ... --out DIR`): every candidate
starts from the tuned linear run of the same seed (its per-step norms) and runs at linear's tuned LR and warmup
(the user's warmup ramps to the table's first value, as `--warmup_steps` does with `linear_refined`): what a user
who flips the flag and keeps the rest gets. Candidates (every refinement option not named is the library's
default):

  default      the library's defaults (tolerance 2): the benchmark's own flag-flip cells
  band_off     tolerance 1: every departure of the smoothed norms from their median shapes the schedule
  noise_band   the band scaled to the measured noise: tolerance exp(3 s), s the robust std of log(norm / smoothed
               norm) divided by sqrt(filter width) (the smoothed series' own noise)
  decay_only   band_off's table held at its peak before the peak: the refined decay, no refined warmup (the
               user's warmup is the warmup)
  re_refined   band_off again, refined from the band_off run's own norms (the paper's iterated refinement)

The decision rule (fixed before the held-out tasks run): a candidate is adopted when, on every dev task, it is not
worse than linear beyond the noise and it beats linear beyond the noise on at least one; the best mean gain wins.
Noise: the larger seeds' standard deviation of linear and the candidate. Writes ``<out>/method_study.json`` and
``<out>/method_study.md`` (default out: results/). Cells are cached under the benchmark's cells folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "scripts")]

from bench_registry import TASKS
from bench_runner import Progress, TaskRunner, write_json
from bench_variants import library_defaults, refine
from scipy.ndimage import median_filter

from hf_lrschedule.formats import atomic_write_text
from hf_lrschedule.refine import filter_width

#: Training fractions where the study reports band_off's multiplier (linear decay: 1 - fraction).
SHAPE_AT = (0.05, 0.25, 0.5, 0.75, 0.9, 0.95)
CANDIDATES = ("band_off", "noise_band", "decay_only", "re_refined")
DEFAULT_TASKS = ("shakespeare_llama_long", "kjv_llama_long")


def noise_tolerance(norms: np.ndarray, num_training_steps: int, smoothing: float) -> float:
    """exp(3 s): s is the noise of the median-filtered log norms (robust std of the residuals / sqrt(width))."""
    logs = np.log(norms)
    width = max(1, filter_width(smoothing, num_training_steps) * norms.size // num_training_steps)
    residual = logs - median_filter(logs, size=width, mode="nearest")
    spread = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    return float(math.exp(3.0 * spread / math.sqrt(width)))


def norm_profile(norms: np.ndarray, parts: int = 10) -> list[float]:
    """The median norm of each tenth of the run: does it rise late?"""
    return [float(np.median(chunk)) for chunk in np.array_split(np.asarray(norms, dtype=float), parts)]


def hold_peak(table: np.ndarray) -> np.ndarray:
    """The table with everything before its peak raised to the peak: the refined decay without a refined warmup."""
    out = np.asarray(table, dtype=float).copy()
    out[: int(np.argmax(out))] = out.max()
    return out


class Study:
    def __init__(self, runner: TaskRunner):
        self.runner = runner

    def run_table(self, problem: str, name: str, table: np.ndarray, lr: float, seed: int, warmup: float, extra_meta):
        r = self.runner
        spec = {"kind": "table", "table": [float(f"{v:.7g}") for v in table]}
        # the table's hash in the cache key: a change in the refinement code reruns the cell
        digest = hashlib.sha256(json.dumps(spec["table"]).encode()).hexdigest()[:12]
        meta = {"variant": f"_method_{name}", "lr": lr, "seed": seed, "warmup": warmup, "table": digest, **extra_meta}
        return r.auxiliary_cell(
            r.cell_path(problem, f"_method_{name}", lr, seed, warmup), meta, f"method {name} lr={lr:g} seed={seed}",
            lambda: r.execute(problem, spec, lr, seed, {"refined_warmup_steps": r.warmup_steps(warmup)}),
        )

    def problem_results(self, problem: str) -> dict[str, Any]:
        r = self.runner
        lr, warmup = r.best_lr[(problem, "linear")], r.linear_warmup(problem)
        smoothing = r.defaults["smoothing"]
        rows: dict[str, list[float | None]] = {name: [] for name in ("linear", "default", *CANDIDATES)}
        tolerances, profiles, shapes = [], [], []
        for seed in r.cfg["seeds"]:
            linear = r.cell(problem, "linear", lr, seed, warmup, count=False)
            rows["linear"].append(linear.get("eval_loss"))
            rows["default"].append(r.cell(problem, "linear_refined", lr, seed, warmup or None, count=False)
                                   .get("eval_loss"))
            norms = np.asarray(linear["grad_norms_l2"], dtype=float)
            band_off = refine(norms, r.T, {"norm": "l2", "guard": "floor", "max_norm_ratio": 2.0, "tolerance": 1.0,
                                           "name": "band_off"}).multipliers
            profiles.append(norm_profile(norms))
            shapes.append(band_off[[round(f * r.T) for f in SHAPE_AT]])
            tolerance = noise_tolerance(norms, r.T, smoothing)
            tolerances.append(tolerance)
            noise_band = refine(norms, r.T, {"norm": "l2", "guard": "floor", "max_norm_ratio": 2.0,
                                             "tolerance": tolerance, "name": "noise_band"}).multipliers
            source = {"source_lr": lr, "source_warmup": warmup}
            first = self.run_table(problem, "band_off", band_off, lr, seed, warmup, source)
            rows["band_off"].append(first.get("eval_loss"))
            rows["noise_band"].append(self.run_table(problem, "noise_band", noise_band, lr, seed, warmup,
                                                     {**source, "tolerance": round(tolerance, 6)}).get("eval_loss"))
            rows["decay_only"].append(self.run_table(problem, "decay_only", hold_peak(band_off), lr, seed, warmup,
                                                     source).get("eval_loss"))
            again = refine(np.asarray(first["grad_norms_l2"], dtype=float), r.T,
                           {"norm": "l2", "guard": "floor", "max_norm_ratio": 2.0, "tolerance": 1.0,
                            "name": "re_refined"}).multipliers
            rows["re_refined"].append(self.run_table(problem, "re_refined", again, lr, seed, warmup,
                                                     {**source, "from": "band_off"}).get("eval_loss"))
        return {
            "lr": lr, "warmup": warmup, "noise_band_tolerance": tolerances, "seeds": rows,
            # seeds' mean: the tuned linear run's median norm per tenth of training, and band_off's multipliers
            "norm_profile": np.mean(profiles, axis=0).tolist(),
            "band_off_shape": dict(zip([f"{f:g}" for f in SHAPE_AT], np.mean(shapes, axis=0).tolist())),
        }


def judge(losses: dict[str, list[float | None]]) -> dict[str, Any]:
    """Per candidate: mean, delta vs linear (%), noise, and "better" / "worse" / "inside the noise"."""
    def stats(values):
        if any(v is None for v in values):
            return None, None
        return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    base, base_std = stats(losses["linear"])
    out = {}
    for name, values in losses.items():
        mean, std = stats(values)
        if mean is None or base is None:
            out[name] = {"mean": mean, "verdict": "diverged"}
            continue
        noise = max(base_std, std)
        diff = mean - base
        verdict = "better" if diff < -noise else "worse" if diff > noise else "inside the noise"
        out[name] = {"mean": mean, "std": std, "delta_pct": 100 * diff / base, "noise": noise, "verdict": verdict}
    return out


def decide(dev: dict[str, dict[str, Any]]) -> str | None:
    """The decision rule of the module docstring, on the dev tasks' verdicts."""
    adopted = []
    for name in ("default", *CANDIDATES):
        verdicts = [task[name]["verdict"] for task in dev.values()]
        if verdicts and "worse" not in verdicts and "diverged" not in verdicts and "better" in verdicts:
            adopted.append((np.mean([task[name]["delta_pct"] for task in dev.values()]), name))
    return min(adopted)[1] if adopted else None


def markdown(record: dict[str, Any]) -> str:
    lines = [
        "# Method study (issue 17, part 3): chosen on dev, reported on held-out",
        "",
        (f"Command: `{record['command']}`. Every candidate runs at linear's tuned LR and warmup, from the tuned "
         "linear run's norms of the same seed (benchmarks/method_study.py says how each is built). Delta: mean eval "
         "loss over the seeds against linear's; noise: the larger seeds' std of the two."),
        "",
        "| task | split | candidate | eval loss | vs linear | noise | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, entry in record["tasks"].items():
        for name, row in entry["verdicts"].items():
            if row["verdict"] == "diverged":
                lines.append(f"| {task} | {entry['split']} | {name} | — | — | — | diverged |")
                continue
            delta = "" if name == "linear" else f"{row['delta_pct']:+.2f} %"
            lines.append(f"| {task} | {entry['split']} | {name} | {row['mean']:.4f} | {delta} | {row['noise']:.4f} | "
                         f"{'' if name == 'linear' else row['verdict']} |")
    lines += ["", "## Norm profiles and what band_off makes of them", "",
              ("The tuned linear run's median l2 gradient norm per tenth of training (mean over seeds), and band_off's "
              "multipliers at some training fractions (linear decay: 1 - fraction)."), ""]
    for task, entry in record["tasks"].items():
        profile = ", ".join(f"{v:.3g}" for v in entry["norm_profile"])
        shape = ", ".join(f"{k}: {v:.3f}" for k, v in entry["band_off_shape"].items())
        lines += [(f"- {task}: norms {profile}; band_off {shape}; the noise band's tolerance "
                  f"{np.mean(entry['noise_band_tolerance']):.3f}")]
    chosen = record["decision"]
    lines += ["", "## Decision (dev tasks only)", ""]
    if chosen is None:
        lines.append("No candidate passes the rule on the dev tasks: the default stays, nothing is adopted.")
    else:
        lines.append(f"Adopted on the dev tasks: **{chosen}**. On the held-out tasks: " + ", ".join(
            f"{task} {entry['verdicts'][chosen]['delta_pct']:+.2f} % ({entry['verdicts'][chosen]['verdict']})"
            for task, entry in record["tasks"].items() if entry["split"] == "heldout") + ".")
    return "\n".join(lines) + "\n"


def cells_folder(folders: list[Path], task: str) -> Path:
    """The first benchmark output folder with cells of `task` (the study runs missing cells into the first)."""
    return next((f for f in folders if any((f / "cells").glob(f"{task}-*"))), folders[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench-out", type=Path, nargs="+", required=True,
                        help="benchmark invocations' --out folders (their cells); a task's cells are looked up in order")
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    parser.add_argument("--quick", action="store_true", help="the tasks' quick sizes (a smoke test)")
    parser.add_argument("--out", type=Path, default=HERE.parent / "results")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    defaults = library_defaults()
    record: dict[str, Any] = {"command": " ".join(["python benchmarks/method_study.py", *(argv or sys.argv[1:])]),
                              "tasks": {}}
    start = time.perf_counter()
    for name in args.tasks:
        if name not in TASKS:
            parser.error(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
        runner = TaskRunner(TASKS[name], args.quick, cells_folder(args.bench_out, name), defaults)
        runner.progress = Progress({name: runner.planned_cells()}, {name: runner.estimate_s()})
        runner.run()  # loads the benchmark's cells (runs what is missing)
        study = Study(runner)
        problems = runner.cfg["problems"]
        for problem in problems:  # each data set of a multi-data-set task is judged on its own
            runner.current_problem = problem
            result = study.problem_results(problem)
            key = name if len(problems) == 1 else f"{name}/{problem}"
            record["tasks"][key] = {"split": TASKS[name].split, **result, "verdicts": judge(result["seeds"])}
    dev = {t: e["verdicts"] for t, e in record["tasks"].items() if e["split"] == "dev"}
    record["decision"] = decide(dev)
    record["wall_s"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "method_study.json", record)
    atomic_write_text(args.out / "method_study.md", markdown(record))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
