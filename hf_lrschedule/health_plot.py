"""The health picture of ``hf-lrschedule diagnose --plot``: loss, norms with refinement's band and LR on one step axis."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np

from .health import NORM_SMOOTHING, Curve, Diagnosis, _curve, _smooth
from .plotting import save_figure

#: Colours of the verdicts in the picture.
VERDICT_COLOURS = {"watch": "tab:orange", "act": "tab:red"}


def plot_health(
    diagnosis: Diagnosis,
    path: str | os.PathLike,
    *,
    grad_norms: Curve | None = None,
    loss: Curve | None = None,
    learning_rate: Curve | None = None,
    eval_loss: Curve | None = None,
    title: str = "",
) -> Path:
    """Write a three-panel PNG atomically and return its path.

    Top: the training loss (and eval loss), with the steps of each `watch` / `act` loss check marked. Middle: the
    gradient norms (log scale), their median-smoothed curve and refinement's tolerance band ``[m, tol * m]`` around
    the median ``m``, non-finite steps as red lines, exploding steps marked. Bottom: the learning rate. The checks of
    the `end` sign shade their span. Panels without data say so.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    loss_curve = _curve(loss, "loss")
    if loss_curve is not None:
        steps, values = loss_curve
        top.plot(steps, values, color="0.45", lw=0.8, label="training loss")
        _mark_checks(top, diagnosis.signs["loss"].checks, steps, values)
    evaluation = _curve(eval_loss, "eval_loss")
    if evaluation is not None:
        top.plot(*evaluation, "o-", color="C0", ms=3, lw=1, label="eval loss")
    _finish(top, "loss", loss_curve is not None or evaluation is not None, diagnosis, "loss")
    norm_curve = _curve(grad_norms, "grad_norms")
    if norm_curve is not None:
        steps, values = norm_curve
        finite = np.isfinite(values) & (values > 0)
        middle.plot(steps[finite], values[finite], color="0.45", lw=0.8, label="gradient norm")
        if finite.sum() >= 5:
            smooth = _smooth(values[finite], NORM_SMOOTHING)
            median = float(np.median(smooth))
            tolerance = diagnosis.refinement.get("tolerance", 2.0)
            middle.plot(steps[finite], smooth, color="C1", lw=1.5, label="median-smoothed")
            middle.axhspan(median, tolerance * median, color="C2", alpha=0.12,
                           label=f"refinement's band (median to {tolerance:g} x)")
        for step in steps[~np.isfinite(values)]:
            middle.axvline(step, color="tab:red", lw=0.8, alpha=0.7)
        _mark_checks(middle, diagnosis.signs["grad_norm"].checks, steps[finite], values[finite])
        middle.set_yscale("log")
    _finish(middle, "gradient norm", norm_curve is not None, diagnosis, "grad_norm")
    lr_curve = _curve(learning_rate, "learning_rate")
    if lr_curve is not None:
        bottom.plot(*lr_curve, color="C0", lw=1.2, label="learning rate")
    for check in diagnosis.signs["end"].checks:
        if check.verdict in VERDICT_COLOURS and len(check.steps) >= 1:
            for axes in (top, bottom):
                axes.axvspan(check.steps[0], check.steps[-1] + 0.5, color=VERDICT_COLOURS[check.verdict], alpha=0.1,
                             label=f"end: {check.name} ({check.verdict})" if axes is bottom else None)
    _finish(bottom, "learning rate", lr_curve is not None, diagnosis, "end")
    bottom.set_xlabel("optimizer step")
    fig.suptitle(textwrap.fill(title or diagnosis.source, 110), fontsize=8)
    fig.tight_layout()
    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)
    return path


def _mark_checks(axes, checks, steps: np.ndarray, values: np.ndarray) -> None:
    """Mark the steps of each `watch` / `act` check on the curve (spans for a run of consecutive steps)."""
    for check in checks:
        if check.verdict not in VERDICT_COLOURS or not check.steps:
            continue
        colour = VERDICT_COLOURS[check.verdict]
        if check.name == "non_finite":
            continue  # drawn as lines (norms) or absent from the curve (loss)
        chosen = np.isin(steps, check.steps)
        if chosen.sum() <= 20:
            axes.plot(steps[chosen], values[chosen], "x", color=colour, ms=7, mew=2,
                      label=f"{check.name} ({check.verdict})")
        else:
            axes.axvspan(check.steps[0], check.steps[-1], color=colour, alpha=0.12,
                         label=f"{check.name} ({check.verdict})")


def _finish(axes, label: str, has_data: bool, diagnosis: Diagnosis, sign: str) -> None:
    axes.set_ylabel(label)
    axes.set_title(f"{sign}: {diagnosis.signs[sign].verdict}", fontsize=9, loc="left")
    if not has_data:
        axes.text(0.5, 0.5, f"no {label} in this source", transform=axes.transAxes, ha="center", va="center",
                  color="0.5")
        return
    axes.legend(loc="best", fontsize=7)
