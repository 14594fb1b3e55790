"""Benchmark of learning-rate schedules on real tasks: cosine, linear, WSD, schedule-free and refinement.

    python benchmarks/run_benchmark.py                 # the full benchmark, 14 tasks, about 4 hours on a 2-core CPU
    python benchmarks/run_benchmark.py --quick         # tiny sizes, 1 LR, 2 seeds: under a minute
    python benchmarks/run_benchmark.py --tasks heldout --out results/

Tasks are dev (defaults and options are chosen there) or held-out (reported only): results/protocol.json.
Baselines (linear, cosine, WSD, schedule-free) get their warmup tuned jointly with the peak LR (warmup fractions
{0, 2, 5, 10, 20} %; {0, 5, 10, 20} % on the long-run tasks) on the task's tuning seeds, as users tune them; an LR
grid grows (up to twice per side) while a schedule's best LR sits at its edge, and an edge that remains is flagged.
On the LoRA task every schedule uses the LR that is best for `linear`, to save time. The same seed gives the same
initial weights and data order for every schedule; the remaining seeds run at the tuned setting only.

Refined schedules (library defaults unless noted; no extra warmup: the table starts training):
  linear_refined              from the per-step gradient norms of the complete tuned `linear` run (linear's best
                              LR and warmup, same seed), at its own best LR from the grid;
  linear_refined_pilot_0.1    from a pilot: the first ceil(0.1*T) updates of the tuned-warmup `linear` run at the
                              cell's LR (the real `hf_lrschedule.run_pilot` on the Trainer task; in the torch loops
                              the same updates), mapped to the full run by `pilot_profile`;
  at linear's best LR and warmup  the same two schedules at linear's tuned LR with linear's tuned warmup kept as a
                              ramp before the table: what a user who only flips the flag gets;
  option study (dev tasks)    guard none / floor R=2 with tolerance 1, 1.5, 2 (bench_variants.OPTION_GRID).

The budget view (bench_budget.py) adds two variants, both with the LR tuned on the grid at the habitual warmup
(bench_variants.HABIT_WARMUP, 0): `linear_habit` (linear's own cells at that warmup) and
`linear_refined_habit_pilot_0.1` (the 10 % pilot at that warmup and the cell's LR, then the refined run: the
product as a user who never tuned a warmup runs it).

Outputs (under --out, default results/; results/quick/ with --quick):
  benchmark.json          {task: {schedule: {"eval_loss_mean", "eval_loss_std", "seeds": [{"seed", "eval_loss"}]}}}
                          for every schedule; eval_loss_std is the sample std (ddof=1) over seeds; a diverged seed
                          has eval_loss null (and the mean is null).
  benchmark_details.json  configuration, best LRs, per-data-set numbers, the option study, pilot cost, timings.
  benchmark.md            the tables, the targets on the held-out tasks (met / missed) and the option study.
  budget.json             {task: {"split", "family", "steps", "weight_decay", "noise", "budgets", "curves":
                          {schedule: [expected best eval loss per budget of B runs]}, ...}}: the budget view.
  budget.md               the budget targets and, per task, each schedule at B = 1, 2, 4 runs and its whole grid.
  budget_<task>.png       expected best eval loss against runs and against compute (a pilot counts its fraction).
  <task>.png              eval-loss curves and the LR schedules actually used; <task>_refined.png: the norms and the
                          refined schedule (library plot).
  cells/                  one JSON per finished run (written atomically): an interrupted benchmark resumes there.

The code: the tasks are entries in bench_registry.py (add a task there), their data, models and training loops are
in bench_tasks.py, the schedules and refinement options in bench_variants.py, the cells, cache and progress in
bench_runner.py, the results in bench_report.py, the budget view in bench_budget.py, the markdown in
bench_markdown.py and the PNGs in bench_plots.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "scripts")]  # the bench_* modules; recipe_data (the offline data)

from bench_plots import plot_refined, plot_task
from bench_registry import TASKS, aliases, protocol, select_tasks
from bench_report import schedule_shape, task_summary, write_results
from bench_runner import Progress, TaskRunner, compute_seconds, fmt_time, write_json
from bench_variants import library_defaults


def build_parser() -> argparse.ArgumentParser:
    tasks = "\n".join(f"  {task.group}. {task.name:<20} {task.describe(False)}" for task in TASKS.values())
    parser = argparse.ArgumentParser(
        description=__doc__, epilog=f"Tasks (offline, real data; full sizes):\n{tasks}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, 1 LR, 2 seeds: a smoke test of the whole pipeline")
    parser.add_argument("--tasks", nargs="+", default=["all"],
                        help=f"all (default), or any of: {' '.join(aliases())}, or full task names")
    parser.add_argument("--out", default=None, help="output folder (default: results/, or results/quick/ with --quick)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared 2-core CPU, 2 threads are often slower)")
    return parser


def run_task(runner: TaskRunner, progress: Progress, out: Path) -> dict[str, Any]:
    """Run (or load) every cell of one task, draw its PNGs and return its summary."""
    runner.progress = progress
    task_start = time.perf_counter()
    print(f"[bench] === task {runner.name} ({runner.task.describe(runner.quick)}) ===", flush=True)
    runner.run()
    check = runner.prefix_check()
    rows = runner.results()
    info = task_summary(runner, rows, check)
    info["seconds_this_invocation"] = time.perf_counter() - task_start
    info["refined_png"] = plot_refined(
        runner.name, rows, out, norm=runner.defaults["norm"], num_training_steps=runner.T
    )
    info["schedule_shape"] = schedule_shape(rows, runner.cfg["seeds"])
    plot_task(runner.name, info, rows, out)
    print(f"[bench] task {runner.name} finished in {fmt_time(time.perf_counter() - task_start)}", flush=True)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        selected = select_tasks(args.tasks)
    except ValueError as error:
        parser.error(str(error))

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    out = Path(args.out) if args.out else HERE.parent / ("results/quick" if args.quick else "results")
    out.mkdir(parents=True, exist_ok=True)
    defaults = library_defaults()
    write_json(out / "protocol.json", protocol())  # which tasks are dev (choices made there) and held-out
    print(f"[bench] tasks: {', '.join(selected)}; out: {out}; library defaults: {defaults}", flush=True)

    runners = {name: TaskRunner(TASKS[name], args.quick, out, defaults) for name in selected}
    plan = {name: runner.planned_cells() for name, runner in runners.items()}
    progress = Progress(plan, {name: runner.estimate_s() for name, runner in runners.items()})
    print(f"[bench] {int(sum(plan.values()))} runs planned (cached ones are skipped); "
          f"first ETA {fmt_time(progress.eta())}", flush=True)
    summary = {name: run_task(runner, progress, out) for name, runner in runners.items()}

    run = {
        "command": " ".join(["python benchmarks/run_benchmark.py", *(sys.argv[1:] if argv is None else argv)]),
        "quick": args.quick,
        "threads": args.threads,
        "start": start,
        "compute_s": compute_seconds(runners.values()),
    }
    write_results(out, summary, run, defaults)
    print(f"[bench] done in {fmt_time(time.perf_counter() - start)}: {out / 'benchmark.json'}, {out / 'benchmark.md'}",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
