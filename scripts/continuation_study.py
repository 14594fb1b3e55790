"""Evidence for the bound's two tools on the benchmark's Llama tasks: continuation of a finished run, LR transfer.

    python scripts/continuation_study.py            # both studies, both tasks (about 40 min on 2 cores, 1 thread)
    python scripts/continuation_study.py --quick    # the same code on tiny sizes (about a minute)

Tasks: the benchmark's `shakespeare_llama` (dev) and `kjv_llama` (held-out), at the benchmark's model, data,
optimizer (AdamW, clip 1) and evaluation (`benchmarks/bench_tasks.py`).

Continuation. A finished linear run of T updates (the task's tuned LR and warmup from
`results/benchmark_details.json`) is trained on to 2T four ways, 3 seeds:
  (a) the bound-optimal continuation (`hf_lrschedule.continuation.continue_schedule`) from the run's own l2 norms,
      as `hf-lrschedule extend` does on a run directory with norms; (a2) the same with constant norms;
  (b) rewarm to the peak LR over the run's warmup length, then linear decay to zero at 2T;
  (c) warmup-stable-decay from the start, cooled down at T (a branch) and again at 2T (cooldown 20 % of T);
  (d) a fresh linear run of 2T updates (the compute-hungry reference).
Compute is counted in updates: (a), (b) spend T more on the finished run; (c) 2T plus the branch's cooldown;
(d) 2T more.

Transfer. On an LR grid (factor 2) the best base LR of linear, cosine (both with a 5 % warmup) and linear_refined
(refined from the norms of the best linear run at T) is measured at T, 2T and 4T on seed 0;
`hf_lrschedule.transfer.transfer_learning_rate` predicts each from linear's best at T. A prediction is a hit when
it lies within one grid step (a factor 2) of the measured best.

Writes results/continuation.json and results/continuation.md (the docs publish them).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "scripts")]

TASKS = {"shakespeare_llama": "dev", "kjv_llama": "held-out"}
SEEDS = (0, 1, 2)
WSD_COOLDOWN = 0.2  # of T, as the benchmark's warmup_stable_decay
TRANSFER_WARMUP = 0.05
LR_GRID = (1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2)
HORIZONS = (1, 2, 4)
TRANSFER_SCHEDULES = ("linear", "cosine", "linear_refined")


class Trainer:
    """The benchmark's loop, driven by an explicit LR per update, able to go on from a saved state."""

    def __init__(self, task: str, quick: bool):
        import bench_registry
        import torch

        torch.set_num_threads(1)
        self.task = bench_registry.TASKS[task]
        self.cfg = self.task.config(quick)
        self.problem = self.task.problem(self.cfg, "main")
        self.steps = self.cfg["steps"]

    def start(self, seed: int) -> dict[str, Any]:
        import bench_tasks
        import torch

        torch.manual_seed(seed)
        model = self.problem.make_model()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = bench_tasks._make_optimizer(self.problem, params, 1.0, False, 0)
        return {"model": model, "params": params, "optimizer": optimizer,
                "generator": torch.Generator().manual_seed(seed), "done": 0}

    @staticmethod
    def copy(state: dict[str, Any]) -> dict[str, Any]:
        """An independent copy: model and optimizer in one deepcopy (so the optimizer keeps the copied parameters)."""
        import copy

        import torch

        twin = copy.deepcopy({key: state[key] for key in ("model", "params", "optimizer")})
        generator = torch.Generator()
        generator.set_state(state["generator"].get_state())
        return {**twin, "generator": generator, "done": state["done"]}

    def train(self, state: dict[str, Any], lrs: np.ndarray) -> list[float]:
        """Apply one update per entry of `lrs` (absolute learning rates); the l2 norm (pre-clip) of each."""
        import torch

        norms = []
        state["model"].train()
        for lr in lrs:
            for group in state["optimizer"].param_groups:
                group["lr"] = float(lr)
            loss = self.problem.loss_on_batch(state["model"], state["generator"])
            state["optimizer"].zero_grad(set_to_none=True)
            loss.backward()
            norm = float(torch.nn.utils.clip_grad_norm_(state["params"], self.problem.clip or float("inf")))
            norms.append(norm if math.isfinite(norm) and math.isfinite(float(loss.detach())) else float("nan"))
            state["optimizer"].step()
            state["done"] += 1
        return norms

    def evaluate(self, state: dict[str, Any]) -> float:
        import torch

        state["model"].eval()
        with torch.no_grad():
            value = float(self.problem.evaluate(state["model"]))
        state["model"].train()
        return value


def multipliers(name: str, steps: int, warmup: float, norms=None) -> np.ndarray:
    from hf_lrschedule.transfer import schedule_multipliers

    return schedule_multipliers(name, steps, warmup_fraction=warmup, grad_norms=norms)


def tuned_linear(task: str) -> tuple[float, float]:
    """linear's tuned LR and warmup fraction of the benchmark (results/benchmark_details.json)."""
    details = json.loads((ROOT / "results" / "benchmark_details.json").read_text())
    linear = details["tasks"][task]["schedules"]["linear"]
    return float(linear["best_lr"]), float(linear["warmup_fraction"])


def continuation_study(trainer: Trainer, task: str, seeds) -> dict[str, Any]:
    from hf_lrschedule.continuation import continue_schedule

    T = trainer.steps
    lr, warmup = tuned_linear(task)
    cooldown = max(1, round(WSD_COOLDOWN * T))
    rows = []
    for seed in seeds:
        t0 = time.perf_counter()
        base = trainer.start(seed)
        planned = multipliers("linear", T, warmup)
        norms = trainer.train(base, lr * planned)
        row = {"seed": seed, "base_T": trainer.evaluate(base)}

        found = continue_schedule(planned, 2 * T, planned_multipliers=planned, grad_norms=norms)
        state = trainer.copy(base)
        trainer.train(state, lr * found.multipliers[T : 2 * T])
        row["a_bound_optimal"] = trainer.evaluate(state)
        row["a_rewarm_multiplier"] = found.rewarm

        found = continue_schedule(planned, 2 * T, planned_multipliers=planned)  # constant norms (Schaipp et al.)
        state = trainer.copy(base)
        trainer.train(state, lr * found.multipliers[T : 2 * T])
        row["a2_bound_optimal_constant_norms"] = trainer.evaluate(state)
        row["a2_rewarm_multiplier"] = found.rewarm

        rewarm_steps = math.ceil(warmup * T)
        rewarm = multipliers("linear", T, rewarm_steps / T if rewarm_steps else 0.0)
        state = trainer.copy(base)
        trainer.train(state, lr * rewarm)
        row["b_rewarm_linear"] = trainer.evaluate(state)

        wsd = trainer.start(seed)  # stable from the start; cooled down at T on a branch, and at 2T
        warm = math.ceil(warmup * 2 * T)
        ramp = np.minimum(1.0, np.arange(1, T - cooldown + 1) / warm) if warm else np.ones(T - cooldown)
        trainer.train(wsd, lr * ramp)
        decay = 1.0 - np.arange(1, cooldown + 1) / cooldown  # linear cooldown to zero
        branch = trainer.copy(wsd)
        trainer.train(branch, lr * decay)
        row["c_wsd_at_T"] = trainer.evaluate(branch)
        stable = np.minimum(1.0, np.arange(T - cooldown + 1, 2 * T - cooldown + 1) / warm) if warm else np.ones(T)
        trainer.train(wsd, lr * stable)
        trainer.train(wsd, lr * decay)
        row["c_wsd"] = trainer.evaluate(wsd)

        fresh = trainer.start(seed)
        trainer.train(fresh, lr * multipliers("linear", 2 * T, warmup))
        row["d_fresh_2T"] = trainer.evaluate(fresh)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(f"[continuation] {task} seed {seed}: " + ", ".join(
            f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float) and k != "seconds"), flush=True)
    ways = ("a_bound_optimal", "a2_bound_optimal_constant_norms", "b_rewarm_linear", "c_wsd", "d_fresh_2T")
    summary = {way: _mean_std([r[way] for r in rows]) for way in (*ways, "base_T", "c_wsd_at_T")}
    paired = {
        "a_minus_b": _mean_std([r["a_bound_optimal"] - r["b_rewarm_linear"] for r in rows]),
        "a_minus_d": _mean_std([r["a_bound_optimal"] - r["d_fresh_2T"] for r in rows]),
        "a_minus_c": _mean_std([r["a_bound_optimal"] - r["c_wsd"] for r in rows]),
        "a2_minus_b": _mean_std([r["a2_bound_optimal_constant_norms"] - r["b_rewarm_linear"] for r in rows]),
    }
    noise = float(np.std([r["d_fresh_2T"] for r in rows], ddof=1)) if len(rows) > 1 else float("nan")
    return {
        "split": TASKS[task], "T": T, "lr": lr, "warmup_fraction": warmup, "cooldown_steps": cooldown,
        "compute_updates": {"a_bound_optimal": T, "a2_bound_optimal_constant_norms": T, "b_rewarm_linear": T, "c_wsd": 2 * T + cooldown, "d_fresh_2T": 2 * T},
        "seeds": rows, "mean": summary, "paired": paired, "noise": noise,
        "a_better_than_b_beyond_noise": paired["a_minus_b"]["mean"] < -noise,
        "a2_better_than_b_beyond_noise": paired["a2_minus_b"]["mean"] < -noise,
        "a_within_noise_of_d": abs(paired["a_minus_d"]["mean"]) <= noise,
    }


def transfer_study(trainer: Trainer, task: str) -> dict[str, Any]:
    from hf_lrschedule.transfer import transfer_learning_rate

    T = trainer.steps
    grid = [lr for lr in LR_GRID]
    measured: dict[str, dict[int, dict[float, float]]] = {s: {h: {} for h in HORIZONS} for s in TRANSFER_SCHEDULES}
    norms_at: dict[float, list[float]] = {}
    for lr in grid:  # linear at T first: its best run's norms refine the linear_refined runs
        state = trainer.start(0)
        norms_at[lr] = trainer.train(state, lr * multipliers("linear", T, TRANSFER_WARMUP))
        measured["linear"][1][lr] = trainer.evaluate(state)
    base_lr = min(grid, key=lambda lr: _finite(measured["linear"][1][lr]))
    norms = [n for n in norms_at[base_lr] if math.isfinite(n)]
    for schedule in TRANSFER_SCHEDULES:
        for h in HORIZONS:
            if schedule == "linear" and h == 1:
                continue
            shape = multipliers(schedule, h * T, TRANSFER_WARMUP, norms if schedule == "linear_refined" else None)
            for lr in grid:
                state = trainer.start(0)
                trainer.train(state, lr * shape)
                measured[schedule][h][lr] = trainer.evaluate(state)
            print(f"[transfer] {task} {schedule} {h}T: " + ", ".join(
                f"{lr:g} {v:.4f}" for lr, v in measured[schedule][h].items()), flush=True)
    pairs = []
    for schedule in TRANSFER_SCHEDULES:
        for h in HORIZONS:
            if schedule == "linear" and h == 1:
                continue
            best = min(grid, key=lambda lr: _finite(measured[schedule][h][lr]))
            predicted = transfer_learning_rate(
                base_lr, schedule="linear", num_training_steps=T, to_schedule=schedule, to_num_training_steps=h * T,
                warmup_fraction=TRANSFER_WARMUP, grad_norms=norms,
            ).learning_rate
            steps_off = abs(math.log2(predicted / best))
            pairs.append({
                "schedule": schedule, "horizon": h * T, "predicted_lr": predicted, "measured_best_lr": best,
                "predicted_ratio": predicted / base_lr, "measured_ratio": best / base_lr,
                "grid_steps_off": round(steps_off, 3), "hit": steps_off <= 1.0 + 1e-9,
                "grid": {str(lr): v for lr, v in measured[schedule][h].items()},
            })
    return {"split": TASKS[task], "T": T, "grid": grid, "warmup_fraction": TRANSFER_WARMUP, "base_lr": base_lr,
            "linear_at_T": {str(lr): v for lr, v in measured["linear"][1].items()}, "pairs": pairs}


def _finite(value: float) -> float:
    return value if math.isfinite(value) else float("inf")


def _mean_std(values) -> dict[str, float]:
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if values.size > 1 else float("nan")}


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Continuation and LR transfer on the Llama tasks", "",
             (f"Written by `{result['command']}` in {result['wall_s'] / 60:.0f} min "
             f"({'quick sizes: a smoke test, not evidence' if result['quick'] else 'full sizes'})."), ""]
    lines += ["## Continuing a finished T-step linear run to 2T", "",
              "Eval loss at 2T, mean ± std over seeds; paired differences against (a); noise = the seeds' std of (d).",
              "", ("| task | split | T | base at T | (a) bound-optimal | (a2) same, constant norms | (b) rewarm + linear | "
              "(c) WSD | (d) fresh 2T | (a)−(b) | (a2)−(b) | (a)−(d) | noise | updates a/b/c/d |"), "|" + "---|" * 14]
    for task, r in result["continuation"].items():
        m, p, c = r["mean"], r["paired"], r["compute_updates"]
        lines.append(
            f"| {task} | {r['split']} | {r['T']} | {_fmt(m['base_T'])} | {_fmt(m['a_bound_optimal'])} | "
            f"{_fmt(m['a2_bound_optimal_constant_norms'])} | {_fmt(m['b_rewarm_linear'])} | {_fmt(m['c_wsd'])} | "
            f"{_fmt(m['d_fresh_2T'])} | {p['a_minus_b']['mean']:+.4f} | {p['a2_minus_b']['mean']:+.4f} | "
            f"{p['a_minus_d']['mean']:+.4f} | {r['noise']:.4f} | "
            f"{c['a_bound_optimal']}/{c['b_rewarm_linear']}/{c['c_wsd']}/{c['d_fresh_2T']} |")
    targets = result["targets"]
    lines += ["", "Targets:", "",
              (f"* (a) better than (b) beyond the noise: **{targets['a_beats_b']}** (with constant norms, (a2): "
              f"{targets['a2_beats_b']})"),
              f"* (a) within the noise of (d) (moonshot): **{targets['a_matches_d']}**", ""]
    lines += ["## LR transfer from linear's best at T", "",
              "| task | schedule | horizon | predicted LR | measured best LR | grid steps off | hit |", "|" + "---|" * 7]
    for task, r in result["transfer"].items():
        for pair in r["pairs"]:
            lines.append(f"| {task} | {pair['schedule']} | {pair['horizon']} | {pair['predicted_lr']:.2e} | "
                         f"{pair['measured_best_lr']:g} | {pair['grid_steps_off']:.2f} | {'yes' if pair['hit'] else 'no'} |")
    lines += ["", f"* within one grid step on at least three quarters of the pairs: **{targets['transfer']}**", ""]
    return "\n".join(lines)


def _fmt(entry: dict[str, float]) -> str:
    return f"{entry['mean']:.4f} ± {entry['std']:.4f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test of the code)")
    parser.add_argument("--out", default=str(ROOT / "results"), help="folder for continuation.json/.md")
    parser.add_argument("--skip-transfer", action="store_true")
    args = parser.parse_args(argv)
    from hf_lrschedule.formats import atomic_write_json, atomic_write_text, library_versions

    start = time.perf_counter()
    result: dict[str, Any] = {"command": "python scripts/continuation_study.py" + (" --quick" if args.quick else ""),
                              "quick": args.quick, "continuation": {}, "transfer": {}}
    for task in TASKS:
        trainer = Trainer(task, args.quick)
        result["continuation"][task] = continuation_study(trainer, task, SEEDS[:2] if args.quick else SEEDS)
        if not args.skip_transfer:
            result["transfer"][task] = transfer_study(trainer, task)
    conts = list(result["continuation"].values())
    pairs = [p for r in result["transfer"].values() for p in r["pairs"]]
    hits = sum(p["hit"] for p in pairs)
    result["targets"] = {
        "a2_beats_b": f"{sum(r['a2_better_than_b_beyond_noise'] for r in conts)} of {len(conts)} tasks",
        "a_beats_b": f"{'met' if all(r['a_better_than_b_beyond_noise'] for r in conts) else 'missed'} "
                     f"({sum(r['a_better_than_b_beyond_noise'] for r in conts)} of {len(conts)} tasks)",
        "a_matches_d": f"{'met' if all(r['a_within_noise_of_d'] for r in conts) else 'missed'} "
                       f"({sum(r['a_within_noise_of_d'] for r in conts)} of {len(conts)} tasks)",
        "transfer": (f"{'met' if pairs and hits >= 0.75 * len(pairs) else 'missed'} ({hits} of {len(pairs)} pairs)"
                     if pairs else "not evaluated"),
    }
    result["wall_s"] = time.perf_counter() - start
    result["versions"] = library_versions()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "continuation.json", result)
    atomic_write_text(out / "continuation.md", markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
