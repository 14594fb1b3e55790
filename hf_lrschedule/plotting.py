"""The schedule picture: raw and smoothed gradient norms, and the refined schedule beside linear and cosine."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .refine import Refinement
from .schedules import cosine_decay


def plot_refinement(
    details: Refinement,
    raw_norms: np.ndarray,
    path: str | os.PathLike,
    *,
    title: str = "",
    norm: str = "l2",
    raw_positions: np.ndarray | None = None,
) -> Path:
    """Write a two-panel PNG atomically and return its path (`raw_positions`: training fraction of each raw norm)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    steps = details.multipliers.size - 1
    fraction = np.linspace(0.0, 1.0, steps + 1)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    if raw_positions is None:
        raw_positions = np.arange(raw_norms.size) / raw_norms.size
    finite = np.isfinite(raw_norms)
    top.plot(raw_positions[finite], raw_norms[finite], color="0.6", lw=0.8, label=f"raw {norm} norms")
    top.plot(fraction, details.smoothed, color="C1", lw=1.5, label="median-smoothed")
    if not np.array_equal(details.guarded, details.smoothed):
        top.plot(fraction, details.guarded, color="C3", lw=1.2, ls="--", label="after guard")
    top.set_ylabel("gradient norm")
    top.set_yscale("log")
    top.legend(loc="best", fontsize=8)
    bottom.plot(fraction, details.multipliers, color="C0", lw=2, label="linear_refined")
    bottom.plot(fraction, 1 - fraction, color="k", lw=1, ls="--", label="linear")
    bottom.plot(
        fraction, [cosine_decay(t, num_training_steps=steps) for t in range(steps + 1)], color="C2", lw=1, ls=":",
        label="cosine",
    )
    bottom.axvline(details.peak_fraction, color="C0", lw=0.6, alpha=0.6)
    bottom.set_xlabel("fraction of training")
    bottom.set_ylabel("LR multiplier")
    bottom.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def schedule_image(multipliers: Sequence[float], *, title: str = "") -> np.ndarray:
    """The schedule beside linear and cosine decay as an RGB array (height, width, 3) of uint8, for run trackers."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = np.asarray(multipliers, dtype=float)
    steps = values.size - 1
    fraction = np.linspace(0.0, 1.0, steps + 1)
    fig = Figure(figsize=(6, 3.5), dpi=100)  # no pyplot: no global figure state, no GUI backend
    canvas = FigureCanvasAgg(fig)
    axes = fig.add_subplot()
    axes.plot(fraction, values, color="C0", lw=2, label="linear_refined")
    axes.plot(fraction, 1 - fraction, color="k", lw=1, ls="--", label="linear")
    axes.plot(
        fraction, [cosine_decay(t, num_training_steps=steps) for t in range(steps + 1)], color="C2", lw=1, ls=":",
        label="cosine",
    )
    axes.set_xlabel("fraction of training")
    axes.set_ylabel("LR multiplier")
    axes.legend(loc="best", fontsize=8)
    if title:  # wrapped: the description runs longer than the 6-inch picture is wide
        axes.set_title(textwrap.fill(title, 80), fontsize=8)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def plot_continuation(
    multipliers: Sequence[float],
    past_steps: int,
    path: str | os.PathLike,
    *,
    planned: Sequence[float] | None = None,
    title: str = "",
) -> Path:
    """Write a PNG of a continued schedule (`hf-lrschedule extend`) atomically: the past, the continuation and the
    run's planned schedule, by optimizer step (entry ``t`` is the multiplier of update ``t + 1``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = np.asarray(multipliers, dtype=float)
    steps = np.arange(values.size)
    fig = Figure(figsize=(7, 3.5), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.add_subplot()
    if planned is not None:
        axes.plot(np.arange(len(planned)), planned, color="0.6", lw=1, ls=":", label="planned run")
    axes.plot(steps[: past_steps + 1], values[: past_steps + 1], color="k", lw=1.5, label="past")
    axes.plot(steps[past_steps:], values[past_steps:], color="C0", lw=2, label="bound-optimal continuation")
    axes.axvline(past_steps, color="C0", lw=0.6, alpha=0.6)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("LR multiplier")
    axes.legend(loc="best", fontsize=8)
    if title:
        axes.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write `fig` as a PNG atomically (a temporary file, then a rename): never a partial picture."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
