"""The benchmark's pictures: per task, eval-loss curves with the schedules used, the library's refinement plot, and
the budget view (expected best eval loss against runs and against compute)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from bench_variants import MAIN_SCHEDULES, refine

COLORS = {
    "cosine": "C2", "linear": "k", "warmup_stable_decay": "C4", "schedule_free": "C5", "linear_refined": "C0",
    "linear_refined_pilot_0.05": "C1", "linear_refined_pilot_0.1": "C3", "linear_refined_pilot_0.2": "C6",
    "linear_habit": "C7",
}


def mean_curve(cells: list[dict[str, Any]], key: str = "curve") -> tuple[np.ndarray, np.ndarray] | None:
    curves = [c.get(key) for c in cells if c.get(key)]
    if not curves:
        return None
    length = min(len(c) for c in curves)
    steps = np.asarray([p[0] for p in curves[0][:length]], dtype=float)
    values = np.asarray([[p[1] if p[1] is not None else np.nan for p in c[:length]] for c in curves], dtype=float)
    return steps, np.nanmean(values, axis=0)


def plot_task(task: str, info: dict[str, Any], rows: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    problems = list(rows)
    panels = len(problems) + 1
    cols = min(3, panels)
    nrows = math.ceil(panels / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 3.8 * nrows), squeeze=False)
    flat = axes.ravel()
    lora = info["kind"] == "lora"
    for axis, problem in zip(flat, problems):
        finals = []
        for name in (n for n in MAIN_SCHEDULES if n in rows[problem]):
            row = rows[problem][name]
            if lora:
                train = mean_curve(row["cells"], "train_loss")
                if train is not None:
                    steps, values = train
                    window = max(1, len(values) // 20)
                    smooth = np.convolve(values, np.ones(window) / window, mode="valid")
                    axis.plot(steps[window - 1 :], smooth, color=COLORS[name], lw=1.0, alpha=0.8, label=name)
            curve = mean_curve(row["cells"])
            if curve is not None:
                steps, values = curve
                axis.plot(steps, values, color=COLORS[name], lw=1.4 if not lora else 0, marker="o", ms=3,
                          label=None if lora else name)
                finals.append(values[-1])
        if finals and np.all(np.isfinite(finals)):
            low, high = float(np.min(finals)), float(np.max(finals))
            spread = max(high - low, 0.02 * abs(low) + 1e-6)
            axis.set_ylim(low - 0.5 * spread, high + 4 * spread)
        what = " (train loss, smoothed; o = eval)" if lora else " (eval loss, mean of seeds)"
        axis.set_title(f"{task}" + (f" / {problem}" if problem != "main" else "") + what, fontsize=9)
        axis.set_xlabel("optimizer step")
        axis.grid(alpha=0.3)
    flat[0].legend(fontsize=7)
    axis = flat[len(problems)]
    problem = problems[0]
    for name in (n for n in MAIN_SCHEDULES if n in rows[problem]):
        row = rows[problem][name]
        multipliers = row["cells"][0].get("multipliers") or []
        if multipliers:
            axis.plot(np.arange(len(multipliers)), multipliers, color=COLORS[name], lw=1.2, label=name)
    seed = rows[problem]["linear"]["seeds"][0]["seed"]
    where = f", {problem}" if problem != "main" else ""
    axis.set_title(f"LR multiplier actually used (seed {seed}, best LR){where}", fontsize=9)
    axis.set_xlabel("optimizer step")
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    for extra in flat[panels:]:
        extra.axis("off")
    fig.tight_layout()
    path = out / f"{task}.png"
    tmp = out / f".{task}.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    written.append(path.name)
    return written


def plot_refined(task: str, rows: dict[str, Any], out: Path, *, norm: str, num_training_steps: int) -> dict[str, str]:
    """The library's refinement plot: the linear run's norms, smoothed/guarded, and the refined schedule."""
    from hf_lrschedule.plotting import plot_refinement

    paths = {}
    for problem, problem_rows in rows.items():
        source = problem_rows["linear"]["cells"][0]
        values = np.asarray(source["grad_norms_l1"] if norm == "l1" else source["grad_norms_l2"], dtype=float)
        details = refine(values, num_training_steps)
        name = f"{task}_refined.png" if problem == "main" else f"{task}_{problem}_refined.png"
        plot_refinement(
            details, values, out / name, norm=norm,
            title=f"{task}{'' if problem == 'main' else ' / ' + problem}: linear_refined (library defaults) from the "
            f"linear run, seed {problem_rows['linear']['seeds'][0]['seed']}",
        )
        paths[problem] = name
    return paths


def plot_budget(task: str, entry: dict[str, Any], out: Path) -> str:
    """`budget_<task>.png`: each schedule's expected best eval loss after k configurations (left) and against the
    compute they cost in full runs, pilot counted (right); linear's full-sweep optimum with the noise band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    optimum, noise = entry["linear_optimum"], entry["noise"] or 0.0
    plotted = []
    for name, curve in entry["by_configurations"].items():
        points = [(k, v) for k, v in enumerate(curve, start=1) if v is not None]
        if not points:
            continue
        k, values = np.asarray(points, dtype=float).T
        cost = entry["cost_runs"][name]
        style = {"color": COLORS.get(name, "C8"), "marker": "o", "ms": 3, "lw": 1.4, "label": name}
        axes[0].plot(k, values, **style)
        axes[1].plot(k * cost, values, **style)
        plotted.extend(values)
    for axis, label in zip(axes, ("runs (configurations tried)", "compute (full runs; a pilot counts its fraction)")):
        if optimum is not None:
            axis.axhspan(optimum, optimum + noise, color="0.85", zorder=0)
            axis.axhline(optimum, color="k", ls=":", lw=1.0)
        axis.set_xscale("log", base=2)
        axis.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
    if plotted and optimum is not None:  # from just below the optimum's band to the worst point (a diverged LR aside)
        margin = max(noise, 0.002 * abs(optimum), 1e-6)
        top = min(max(plotted), optimum + 20 * margin)
        axes[0].set_ylim(optimum - 2 * margin, top + margin)
    axes[0].set_ylabel("expected best eval loss (tuning seeds)")
    axes[0].set_title(f"{task}: best so far against runs", fontsize=9)
    axes[1].set_title("against compute; grey: linear's full-sweep optimum + the noise", fontsize=9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path = out / f"budget_{task}.png"
    tmp = out / f".budget_{task}.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path.name
