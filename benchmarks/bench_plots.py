"""The benchmark's pictures: per task, eval-loss curves with the schedules used, and the library's refinement plot."""

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
