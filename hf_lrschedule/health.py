"""The run's health: the three signs the method's authors tell practitioners to watch, measured (numpy/scipy only).

Defazio et al. (arXiv 2310.07831) name three things to watch when adopting the schedule: sharp oscillation of the
loss, extreme variation of the gradient norms, and whether training settles as the LR reaches zero. `diagnose`
measures each on the arrays of a run (any of them may be missing) and returns a `Diagnosis`:

* **loss**: ``spikes`` (robust z-score of the loss above its median-smoothed curve), ``relapse`` (how far the
  smoothed loss climbs back above its running minimum, as a share of its total fall: oscillation or divergence),
  ``non_finite`` (NaN / inf losses);
* **grad_norm**: ``non_finite`` steps (fp16 overflow: the update was skipped), ``explosion`` (norm over its
  smoothed median), ``dispersion`` (the typical factor by which norms stray from that median), ``early_spike`` and
  ``late_rise`` (the smoothed norms early / late against their median, as refinement sees them);
* **end**: ``still_falling`` (the loss's pace of fall over the last 20 % of steps against its average pace),
  ``progress`` (the loss's total fall against its noise: did it move at all), ``lr_floor`` (the last LR against the
  peak), ``last_eval`` (the last eval loss against the best one);

plus what refinement makes of the norms (`hf_lrschedule.refine.refinement_details` with the default options) and
recommendations in plain words, each tied to a measured number or a cited source (both in
`hf_lrschedule.health_advice`).

Each check has a ``watch`` and an ``act`` threshold, module constants chosen on the dev runs of
``scripts/health_study.py`` and checked on its held-out runs (``results/health.md``). A sign's verdict is that of
its worst check; its ``value``, ``threshold`` and ``steps`` are that check's. ``threshold`` is the one the verdict
was judged against: the crossed one for ``watch`` / ``act``, the ``watch`` threshold for ``ok``. A sign with no data
(a source without the loss) has the verdict ``"n/a"``.

The text reports are in `hf_lrschedule.health_report`; `hf_lrschedule.health_live.HealthMonitor` runs the per-step
part (spikes, explosion, non-finite values) incrementally for the live `HealthCallback`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.ndimage import median_filter

from .options import RefineOptions
from .refine import Refinement

Verdict = Literal["ok", "watch", "act", "n/a"]
#: A pair ``(steps, values)`` of one logged series.
Curve = tuple[Sequence[int] | np.ndarray, Sequence[float] | np.ndarray]

# Thresholds, round 2. Chosen on the 52 dev runs of scripts/health_study.py (tiny Llama on Shakespeare and KJV bytes,
# an MLP on Fashion-MNIST; healthy, and with injected faults of several sizes; round 1's held-out runs are among them)
# and the authors' four published norm logs; checked on fresh held-out runs (results/health.md). The rule: `act`
# between the largest healthy value and the smallest value of a fault it must catch (geometric midpoint, rounded),
# `watch` below it; a healthy run may get `watch` (it says "look", not "act"). The numbers in the comments are what
# the dev runs measured.

#: Loss spike, robust z-score (loss minus its smoothed curve, over the noise). Healthy dev runs: at most 5.9 (the
#: noisy batch-32 MLP losses); one corrupted batch: 113 to 489; a 5-step LR spike x 30 or x 100: 14 to 25 (x 30 on
#: the MLP: 4.7, and x 10 on the Llama: 3.0, below any loss check: the relapse catches the first, nothing the second).
SPIKE_Z_WATCH = 6.0
SPIKE_Z_ACT = 10.0
#: Relapse of the smoothed loss above its running minimum, as a share of its total fall. Healthy dev runs: at most
#: 0.14 (MLP); a 5-step LR spike: 0.22 to 0.71 (round 1's 0.25 missed the MLP's 0.22); LR 30x too high (MLP,
#: oscillating): 0.26 and 0.31.
RELAPSE_WATCH = 0.12
RELAPSE_ACT = 0.18
#: Norm over its smoothed median. Healthy dev runs: at most 15 (one Llama step); the authors' RoBERTa log has
#: healthy single-step spikes to about 7; a corrupted batch gave 13 to 38, LR 30x too high 7 to 48.
EXPLOSION_WATCH = 5.0
EXPLOSION_ACT = 20.0
#: Typical factor by which norms stray from their smoothed median (exp of the robust spread of log(G / G_smooth)).
#: Healthy dev runs: 1.18-1.37, the authors' logs 1.02-1.15; LR 30x too high: 1.35 to 1.75.
DISPERSION_WATCH = 1.5
DISPERSION_ACT = 2.5
#: Non-finite norms as a share of the steps: any is `watch` (fp16's loss scaler skips a few steps by design,
#: PyTorch's GradScaler docs); this share, or NONFINITE_RUN_ACT in a row, is `act` (the scaler is not recovering).
NONFINITE_SHARE_ACT = 0.01
NONFINITE_RUN_ACT = 5
#: The loss's fall over the last 20 % of steps against its average pace over the run (1 = as fast as on average).
#: Healthy dev runs: at most 0.21 on the Llama tasks, 0.40 on the noisy MLP; LR 1/300 or 1/1000 of the good one
#: (never settles): 0.28 to 0.80 (round 1's 0.3 missed the KJV Llama's 0.28); LR 30x or 100x too high on the Llama
#: tasks (the loss stalls, then falls only as the LR decays): 0.58 to 1.58 (round 1's 0.8 missed 0.74).
STILL_FALLING_WATCH = 0.24
STILL_FALLING_ACT = 0.5
#: The loss's total fall over the run, in units of its step-to-step noise (`watch` below this; never `act`): a loss
#: that barely moves. Healthy dev runs: at least 6.0 (the MLP); LR 1/1000 of the good one on the MLP: 1.4 (its pace
#: is noise, so `still_falling` cannot tell).
PROGRESS_WATCH = 3.0
#: Last LR over the peak LR: above this the run stopped before its decay ended (never `act`: constant schedules
#: are legal; the last-iterate bound of arXiv 2310.07831 is what favours decaying to zero).
LR_FLOOR_WATCH = 0.2
#: Last eval loss over the best one, minus 1 (0.02 = 2 % worse than the best): `watch` (the best checkpoint is not
#: the last one), never `act`.
LAST_EVAL_WATCH = 0.02

#: Width of the median filters, as a fraction of the logged points (odd, at least 5): 5 % for the loss (narrow
#: enough to keep a few-step spike out of the smoothed curve), 10 % for the norms (refinement's own default).
LOSS_SMOOTHING = 0.05
NORM_SMOOTHING = 0.1
#: Early spike: the first 10 % of training; late rise: the last 20 % (where arXiv 2506.02285 finds the rise).
EARLY_FRACTION = 0.1
LATE_FRACTION = 0.2
#: Fewer logged values than this and a sign is not measured ("n/a"): no robust smoothing is possible.
MIN_POINTS = 20
#: The window of `HealthMonitor` (logged values kept for the running median).
LIVE_WINDOW = 51

THRESHOLDS: dict[str, dict[str, float]] = {
    "loss.spikes": {"watch": SPIKE_Z_WATCH, "act": SPIKE_Z_ACT},
    "loss.relapse": {"watch": RELAPSE_WATCH, "act": RELAPSE_ACT},
    "grad_norm.explosion": {"watch": EXPLOSION_WATCH, "act": EXPLOSION_ACT},
    "grad_norm.dispersion": {"watch": DISPERSION_WATCH, "act": DISPERSION_ACT},
    "grad_norm.non_finite": {"watch": 0.0, "act": NONFINITE_SHARE_ACT, "act_run": NONFINITE_RUN_ACT},
    "end.still_falling": {"watch": STILL_FALLING_WATCH, "act": STILL_FALLING_ACT},
    "end.progress": {"watch_below": PROGRESS_WATCH},
    "end.lr_floor": {"watch": LR_FLOOR_WATCH},
    "end.last_eval": {"watch": LAST_EVAL_WATCH},
}

SEVERITY = {"n/a": -1, "ok": 0, "watch": 1, "act": 2}
SIGN_NAMES = ("loss", "grad_norm", "end")


@dataclass
class Check:
    """One measured quantity: its value, the thresholds, the verdict and the steps where it happens."""

    name: str
    value: float | None
    verdict: Verdict
    watch: float | None = None
    act: float | None = None
    steps: list[int] = field(default_factory=list)
    note: str = ""
    #: Other measured numbers of the check (e.g. ``middle``, the fall over the middle 20 % of steps).
    details: dict[str, float] = field(default_factory=dict)
    #: The verdict worsens as the value falls below ``watch`` (``progress``), not as it rises.
    lower_is_worse: bool = False

    @property
    def threshold(self) -> float | None:
        """The threshold the verdict was judged against (the crossed one, or ``watch`` for ``ok``)."""
        if self.verdict == "act":
            return self.act
        return self.watch

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "verdict": self.verdict, "value": _json_number(self.value),
            "threshold": _json_number(self.threshold),
            "thresholds": {("watch_below" if k == "watch" and self.lower_is_worse else k): v
                           for k, v in (("watch", self.watch), ("act", self.act)) if v is not None},
            "steps": [int(s) for s in self.steps], "note": self.note,
            **({"details": {k: _json_number(v) for k, v in self.details.items()}} if self.details else {}),
        }


@dataclass
class Sign:
    """One of the three signs: its checks; the verdict, value, threshold and steps are those of the worst check."""

    name: str
    checks: list[Check] = field(default_factory=list)
    note: str = ""

    @property
    def worst(self) -> Check | None:
        measured = [c for c in self.checks if c.verdict != "n/a"]
        return max(measured, key=lambda c: SEVERITY[c.verdict]) if measured else None  # max keeps the first of ties

    @property
    def verdict(self) -> Verdict:
        return self.worst.verdict if self.worst else "n/a"

    @property
    def value(self) -> float | None:
        return self.worst.value if self.worst else None

    @property
    def threshold(self) -> float | None:
        return self.worst.threshold if self.worst else None

    @property
    def steps(self) -> list[int]:
        return list(self.worst.steps) if self.worst else []

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        worst = self.worst
        return {
            "verdict": self.verdict, "value": _json_number(self.value), "threshold": _json_number(self.threshold),
            "steps": self.steps, "check": worst.name if worst else None, "note": self.note,
            "checks": [c.to_dict() for c in self.checks],
        }


@dataclass
class Diagnosis:
    """What `diagnose` found: the three signs, what refinement makes of the norms, recommendations."""

    signs: dict[str, Sign]
    refinement: dict[str, Any]
    recommendations: list[str]
    source: str = ""

    @property
    def verdict(self) -> Verdict:
        """The worst verdict of the three signs."""
        return max((s.verdict for s in self.signs.values()), key=SEVERITY.__getitem__)

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of ``hf-lrschedule diagnose --json``."""
        return {
            "source": self.source,
            "verdict": self.verdict,
            "signs": {name: sign.to_dict() for name, sign in self.signs.items()},
            "refinement": {k: _json_number(v) if isinstance(v, float) else v for k, v in self.refinement.items()},
            "recommendations": list(self.recommendations),
            "thresholds": THRESHOLDS,
        }


# --------------------------------------------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------------------------------------------- #


def _json_number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _curve(curve: Curve | None, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """`curve` as (int steps, float values), sorted by step; None if absent; an error if malformed."""
    if curve is None:
        return None
    try:
        steps, values = curve
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair (steps, values), got {type(curve).__name__}") from None
    steps = np.asarray(steps, dtype=float)
    values = np.asarray(values, dtype=float)
    if steps.ndim != 1 or steps.shape != values.shape:
        raise ValueError(f"{name}: steps and values must be 1-D and of the same length, got {steps.shape} and "
                         f"{values.shape}")
    if np.any(np.diff(steps) <= 0):
        raise ValueError(f"{name}: steps must increase strictly")
    return steps.astype(np.int64), values


def _odd_width(fraction: float, size: int) -> int:
    width = max(5, int(fraction * size)) // 2 * 2 + 1
    return min(width, size - 1 + size % 2)  # odd, and no wider than the series


def _smooth(values: np.ndarray, fraction: float) -> np.ndarray:
    return median_filter(values, size=_odd_width(fraction, values.size), mode="nearest")


def _noise(values: np.ndarray, floor: float) -> float:
    """Robust noise scale: the MAD of first differences over sqrt(2) (a trend barely moves it)."""
    return max(1.4826 * float(np.median(np.abs(np.diff(values)))) / math.sqrt(2.0), floor)


def _grade(value: float, watch: float | None, act: float | None) -> Verdict:
    if act is not None and value >= act:
        return "act"
    if watch is not None and value >= watch:
        return "watch"
    return "ok"


def _runs(mask: np.ndarray) -> int:
    """Length of the longest run of True in `mask`."""
    longest = current = 0
    for flag in mask.tolist():
        current = current + 1 if flag else 0
        longest = max(longest, current)
    return longest


def _span(steps: np.ndarray) -> list[int]:
    return [int(steps[0]), int(steps[-1])] if steps.size else []


def _bins(steps: np.ndarray, values: np.ndarray, count: int = 20) -> np.ndarray | None:
    """Median of `values` in `count` equal spans of steps (None if a span is empty)."""
    edges = np.linspace(steps[0] - 0.5, steps[-1] + 0.5, count + 1)
    index = np.clip(np.searchsorted(edges, steps, side="right") - 1, 0, count - 1)
    medians = [values[index == k] for k in range(count)]
    if any(m.size == 0 for m in medians):
        return None
    return np.array([float(np.median(m)) for m in medians])


# --------------------------------------------------------------------------------------------------------------- #
# The three signs
# --------------------------------------------------------------------------------------------------------------- #


def loss_sign(loss: Curve | None) -> Sign:
    """Spikes, relapse (oscillation or divergence) and non-finite values of the training loss.

    Examples:
        >>> steps = list(range(1, 101))
        >>> values = [3.0 - 0.01 * s + 0.01 * (s % 3) for s in steps]
        >>> values[59] = 9.0  # one bad batch at step 60
        >>> sign = loss_sign((steps, values))
        >>> sign.verdict, sign.check("spikes").steps
        ('act', [60])
    """
    sign = Sign("loss")
    curve = _curve(loss, "loss")
    if curve is None:
        sign.note = "no training loss in this source"
        return sign
    steps, values = curve
    finite = np.isfinite(values)
    bad = steps[~finite]
    sign.checks.append(
        Check("non_finite", float(bad.size), "act" if bad.size else "ok", watch=None, act=1.0, steps=bad.tolist(),
              note="NaN or inf losses: the run diverged" if bad.size else "")
    )
    steps, values = steps[finite], values[finite]
    if values.size < MIN_POINTS:
        sign.note = f"only {values.size} finite logged losses (need {MIN_POINTS}); log the loss more often"
        if not bad.size:
            sign.checks.clear()  # nothing measured: "n/a", not "ok"
        return sign
    smooth = _smooth(values, LOSS_SMOOTHING)
    level = float(np.median(np.abs(smooth)))
    noise = _noise(values, floor=1e-3 * max(level, 1e-12))
    z = (values - smooth) / noise
    spikes = steps[z >= SPIKE_Z_WATCH]
    worst = float(z.max())
    sign.checks.append(
        Check("spikes", worst, _grade(worst, SPIKE_Z_WATCH, SPIKE_Z_ACT), SPIKE_Z_WATCH, SPIKE_Z_ACT, spikes.tolist(),
              note=f"largest: loss {values[np.argmax(z)]:.4g} against {smooth[np.argmax(z)]:.4g} smoothed, at step "
              f"{int(steps[np.argmax(z)])}")
    )
    fall = float(smooth[0] - smooth.min())
    half = _odd_width(LOSS_SMOOTHING, values.size) // 2
    inner = slice(half, values.size - half)  # where the filter's window is full: no edge artefact
    if fall > 0:
        relapse = (smooth - np.minimum.accumulate(smooth)) / fall
        relapse[: inner.start] = 0.0
        relapse[inner.stop:] = 0.0
        peak = float(relapse.max())
        where = steps[relapse >= RELAPSE_WATCH]
        note = (f"the smoothed loss climbed back {100 * peak:.0f} % of its fall above its running minimum, near step "
                f"{int(steps[np.argmax(relapse)])}") if peak > 0 else ""
        sign.checks.append(Check("relapse", peak, _grade(peak, RELAPSE_WATCH, RELAPSE_ACT), RELAPSE_WATCH,
                                 RELAPSE_ACT, where.tolist(), note))
    else:
        sign.checks.append(Check("relapse", math.inf, "act", RELAPSE_WATCH, RELAPSE_ACT, _span(steps),
                                 note="the smoothed loss never fell below its start"))
    return sign


def grad_norm_sign(grad_norms: Curve | None) -> Sign:
    """Non-finite steps, explosion, dispersion, early spike and late rise of the gradient norms.

    Examples:
        >>> steps = list(range(1, 201))
        >>> norms = [1.0 + 0.05 * (s % 4) for s in steps]
        >>> norms[149] = float("inf")  # an fp16 overflow at step 150
        >>> sign = grad_norm_sign((steps, norms))
        >>> sign.verdict, sign.steps
        ('watch', [150])
    """
    sign = Sign("grad_norm")
    curve = _curve(grad_norms, "grad_norms")
    if curve is None:
        sign.note = "no gradient norms"
        return sign
    steps, values = curve
    if np.any(values < 0):
        raise ValueError("grad_norms has negative values; a gradient norm is >= 0 (the wrong column?)")
    finite = np.isfinite(values)
    bad = steps[~finite]
    share = bad.size / max(values.size, 1)
    longest = _runs(~finite)
    verdict: Verdict = "ok"
    if bad.size:
        verdict = "act" if share >= NONFINITE_SHARE_ACT or longest >= NONFINITE_RUN_ACT else "watch"
    sign.checks.append(Check(
        "non_finite", float(bad.size), verdict, 1.0, None, bad.tolist(),
        note=f"{bad.size} of {values.size} steps ({100 * share:.2g} %), longest run {longest}; act from "
        f"{100 * NONFINITE_SHARE_ACT:g} % of the steps or {NONFINITE_RUN_ACT} in a row",
    ))
    steps, values = steps[finite & (values > 0)], values[finite & (values > 0)]
    if values.size < MIN_POINTS:
        sign.note = f"only {values.size} finite gradient norms (need {MIN_POINTS})"
        if not bad.size:
            sign.checks.clear()
        return sign
    smooth = _smooth(values, NORM_SMOOTHING)
    ratio = values / smooth
    worst = float(ratio.max())
    sign.checks.append(Check(
        "explosion", worst, _grade(worst, EXPLOSION_WATCH, EXPLOSION_ACT), EXPLOSION_WATCH, EXPLOSION_ACT,
        steps[ratio >= EXPLOSION_WATCH].tolist(),
        note=f"largest: {worst:.3g} x the smoothed median, at step {int(steps[np.argmax(ratio)])}",
    ))
    logs = np.log(ratio)
    spread = math.exp(1.4826 * float(np.median(np.abs(logs - np.median(logs)))))
    sign.checks.append(Check("dispersion", spread, _grade(spread, DISPERSION_WATCH, DISPERSION_ACT),
                             DISPERSION_WATCH, DISPERSION_ACT,
                             note=f"norms typically within a factor {spread:.3g} of their smoothed median"))
    middle = float(np.median(smooth))
    position = (steps - steps[0]) / max(steps[-1] - steps[0], 1)
    tolerance = RefineOptions().tolerance  # refinement's band: inside it, the schedule stays linear decay
    for name, part in (("early_spike", position <= EARLY_FRACTION), ("late_rise", position >= 1 - LATE_FRACTION)):
        value = float(smooth[part].max() / middle) if part.any() else 1.0
        sign.checks.append(Check(
            name, value, "watch" if value > tolerance else "ok", tolerance, None,
            steps[part & (smooth > tolerance * middle)].tolist(),
            note=f"smoothed norms reach {value:.3g} x their median "
            f"({'first' if name == 'early_spike' else 'last'} {100 * (EARLY_FRACTION if name == 'early_spike' else LATE_FRACTION):.0f} % of steps); "
            f"refinement changes the schedule beyond {tolerance:g} x",
        ))
    return sign


def end_sign(loss: Curve | None, learning_rate: Curve | None = None, eval_loss: Curve | None = None) -> Sign:
    """Does the run settle: the loss's fall over the last 20 % of steps, the last LR, the last evaluation.

    Examples:
        >>> steps = list(range(1, 201))
        >>> sign = end_sign((steps, [5.0 - 0.01 * s for s in steps]))  # falls as fast at the end as on average
        >>> sign.verdict, round(sign.check("still_falling").value, 6)
        ('act', 1.0)
    """
    sign = Sign("end")
    curve = _curve(loss, "loss")
    if curve is not None:
        steps, values = curve
        finite = np.isfinite(values)
        steps, values = steps[finite], values[finite]
        bins = _bins(steps, values) if values.size >= MIN_POINTS else None
        if bins is None:
            sign.note = "too few logged losses to tell whether the run settled"
        else:
            total = float(bins[0] - bins[-1])
            window = steps[steps >= steps[0] + 0.8 * (steps[-1] - steps[0])]
            if total <= 0:
                sign.checks.append(Check("still_falling", math.nan, "n/a", STILL_FALLING_WATCH, STILL_FALLING_ACT,
                                         note="the loss did not fall over the run (see the loss sign)"))
            else:
                # 20 bins of 5 %: their medians sit 19 spans apart end to end, 4 spans apart over the last 20 %;
                # scaled so that a loss falling at an even pace scores exactly 1
                late = float(bins[15] - bins[19]) / total * 19 / 4
                middle = float(bins[8] - bins[12]) / total * 19 / 4
                verdict = _grade(late, STILL_FALLING_WATCH, STILL_FALLING_ACT)
                check = Check("still_falling", late, verdict, STILL_FALLING_WATCH, STILL_FALLING_ACT,
                              _span(window) if verdict != "ok" else [],
                              note=f"the loss fell {late:.2g} x as fast over the last 20 % of steps as over the whole "
                              f"run ({middle:.2g} x over the middle 20 %)", details={"middle": middle})
                sign.checks.append(check)
            progress = total / _noise(values, floor=1e-12)
            sign.checks.append(Check(
                "progress", progress, "watch" if progress < PROGRESS_WATCH else "ok", PROGRESS_WATCH, None,
                _span(steps) if progress < PROGRESS_WATCH else [],
                note=f"the loss fell {progress:.3g} x its step-to-step noise over the run", lower_is_worse=True,
            ))
    lr = _curve(learning_rate, "learning_rate")
    if lr is not None and lr[1].size and np.isfinite(lr[1]).any():
        lr_steps, lr_values = lr
        peak = float(np.nanmax(lr_values))
        last = float(lr_values[-1])
        share = last / peak if peak > 0 else 0.0
        verdict = _grade(share, LR_FLOOR_WATCH, None)
        sign.checks.append(Check("lr_floor", share, verdict, LR_FLOOR_WATCH, None,
                                 [int(lr_steps[-1])] if verdict != "ok" else [], note=f"the last LR is {share:.3g} of the peak ({last:.3g})"))
    evaluation = _curve(eval_loss, "eval_loss")
    if evaluation is not None and np.isfinite(evaluation[1]).sum() >= 2:
        eval_steps, eval_values = evaluation[0][np.isfinite(evaluation[1])], evaluation[1][np.isfinite(evaluation[1])]
        best = int(np.argmin(eval_values))
        worse = float(eval_values[-1] / eval_values[best] - 1.0) if eval_values[best] > 0 else 0.0
        sign.checks.append(Check(
            "last_eval", worse, _grade(worse, LAST_EVAL_WATCH, None), LAST_EVAL_WATCH, None,
            [int(eval_steps[-1])] if worse >= LAST_EVAL_WATCH else [],
            note=f"last eval loss {eval_values[-1]:.4g}; best {eval_values[best]:.4g} at step {int(eval_steps[best])}",
        ))
    if not sign.checks and not sign.note:
        sign.note = "no loss, learning rate or eval loss in this source"
    return sign


def diagnose(
    grad_norms: Curve | None = None,
    *,
    loss: Curve | None = None,
    learning_rate: Curve | None = None,
    eval_loss: Curve | None = None,
    num_training_steps: int | None = None,
    num_warmup_steps: int | None = None,
    max_grad_norm: float | None = None,
    options: RefineOptions | None = None,
    source: str = "",
) -> Diagnosis:
    """The run's health from its logged series, each a pair ``(steps, values)`` or None.

    Args:
        grad_norms (`(steps, values)`, *optional*):
            Per-step (or every-k-step) gradient norms; NaN/inf mark fp16 overflow steps.
        loss (`(steps, values)`, *optional*):
            The training loss as logged (the Trainer logs the mean over each logging window).
        learning_rate (`(steps, values)`, *optional*):
            The logged learning rate.
        eval_loss (`(steps, values)`, *optional*):
            The evaluation loss.
        num_training_steps (`int`, *optional*):
            The run's planned optimizer steps `T` (default: the last step of the norms).
        num_warmup_steps (`int`, *optional*):
            The run's warmup, for the recommendations (default: from the LR curve if it is given).
        max_grad_norm (`float`, *optional*):
            The run's clipping threshold, for the recommendations.
        options (`RefineOptions`, *optional*):
            The refinement options to show the schedule of (default: `linear_refined`'s).
        source (`str`, *optional*):
            Where the series come from, for the report.

    Returns:
        `Diagnosis`.
    """
    from .health_advice import recommendations, refinement_view  # it builds on this module's signs

    signs = {"loss": loss_sign(loss), "grad_norm": grad_norm_sign(grad_norms),
             "end": end_sign(loss, learning_rate, eval_loss)}
    refinement = refinement_view(grad_norms, num_training_steps, options)
    if num_warmup_steps is None and learning_rate is not None:
        num_warmup_steps = _warmup_from_lr(learning_rate)
    advice = recommendations(signs, refinement, warmup_steps=num_warmup_steps, max_grad_norm=max_grad_norm)
    return Diagnosis(signs, refinement, advice, source)


def _warmup_from_lr(learning_rate: Curve) -> int | None:
    curve = _curve(learning_rate, "learning_rate")
    if curve is None or curve[1].size < 2 or not np.isfinite(curve[1]).all():
        return None
    steps, values = curve
    return 0 if values[0] >= 0.9 * values.max() else int(steps[np.argmax(values >= 0.99 * values.max())])


def curves_from_log(log) -> dict[str, Curve | None]:
    """The series of a `GradNormLog` (what `load_grad_norms` reads) as `diagnose`'s keyword arguments: its norms
    (l2, else l1), and the loss, LR and eval loss where the source has them (`GradNormLog.metrics`)."""
    values = log.l2 if log.l2 is not None else log.l1
    curves: dict[str, Curve | None] = {"grad_norms": None}
    if values is not None:
        values = np.asarray(values, dtype=float)
        steps = log.steps if log.steps is not None else np.arange(1, values.size + 1)
        curves["grad_norms"] = (steps, values)
    metrics = getattr(log, "metrics", None) or {}
    for name, key in (("loss", "loss"), ("learning_rate", "learning_rate"), ("eval_loss", "eval_loss")):
        found = metrics.get(name)
        curves[key] = None if found is None else (found.steps, found.values)
    return curves


def diagnose_log(log, *, num_training_steps: int | None = None, options: RefineOptions | None = None) -> Diagnosis:
    """`diagnose` on what `hf_lrschedule.readers.load_grad_norms` read (`curves_from_log`), with the run's length,
    warmup and clipping from the source's metadata where it has them."""
    meta = log.meta or {}
    curves = curves_from_log(log)
    return diagnose(
        curves.pop("grad_norms"), **curves,
        num_training_steps=num_training_steps or _positive_int(meta.get("num_training_steps")),
        num_warmup_steps=_positive_int(meta.get("num_warmup_steps"), allow_zero=True),
        max_grad_norm=_float_or_none(meta.get("max_grad_norm")),
        options=options, source=log.describe(),
    )


#: Checks a pilot leaves out: its first and last steps are not the run's (the refinement line says what its norms do
#: to the full run's schedule).
PILOT_SKIPPED_CHECKS = ("early_spike", "late_rise")


def diagnose_pilot(log, refinement: Refinement, *, options: RefineOptions | None = None) -> Diagnosis:
    """The diagnosis a pilot ends with, before the full run starts: the loss and gradient-norm signs of its steps,
    and what the full run's schedule will be and why.

    Args:
        log (`GradNormLog`):
            The pilot's recorder file as `hf_lrschedule.readers.load_grad_norms` reads it (norms, and the loss where
            the pilot logged it); its ``meta`` holds the full run's ``num_training_steps``.
        refinement (`Refinement`):
            The full run's refinement, from the pilot's norm profile (`hf_lrschedule.pilot.runner.pilot_profile`).
        options (`RefineOptions`, *optional*):
            The options `refinement` was computed with.

    Returns:
        `Diagnosis`. The ``end`` sign is not judged (a pilot stops early by design: diagnose the full run for it),
        nor `PILOT_SKIPPED_CHECKS`.
    """
    from .health_advice import describe_refinement, recommendations  # it builds on this module's signs

    meta = log.meta or {}
    total = _positive_int(meta.get("num_training_steps"))
    if total is None:
        raise ValueError(f"{log.source}: the pilot's file has no num_training_steps in its meta")
    curves = curves_from_log(log)
    norms = grad_norm_sign(curves["grad_norms"])
    norms.checks = [check for check in norms.checks if check.name not in PILOT_SKIPPED_CHECKS]
    pilot_steps = int(log.steps[-1]) if log.steps is not None and log.steps.size else 0
    share = f"{100 * pilot_steps / total:.0f} %"
    loss = loss_sign(curves["loss"])
    if loss.verdict == "n/a":
        logged = 0 if curves["loss"] is None else len(curves["loss"][1])
        loss.note = f"{logged} logged losses in the pilot's {pilot_steps} steps (need {MIN_POINTS})" + (
            f": logging_steps {pilot_steps // MIN_POINTS} or less lets the pilot judge the loss"
            if pilot_steps >= MIN_POINTS else ": too short a pilot to judge the loss")
    end = Sign("end", note=f"not judged: the pilot stopped after {pilot_steps} of {total} steps by design; "
               "`hf-lrschedule diagnose` the full run's output_dir afterwards")
    signs = {"loss": loss, "grad_norm": norms, "end": end}
    view = describe_refinement(refinement, total, options)
    view["pilot_steps"] = pilot_steps
    view["summary"] += (f" (from the pilot's {pilot_steps} steps, {share} of the run; past them refinement takes the "
                        "norms to stay at their late-pilot median, so a late rise is not foreseen)")
    advice = recommendations(signs, view, warmup_steps=_positive_int(meta.get("num_warmup_steps"), allow_zero=True),
                             max_grad_norm=_float_or_none(meta.get("max_grad_norm")))
    return Diagnosis(signs, view, advice, source=f"pilot: {log.describe()}")


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _positive_int(value: Any, allow_zero: bool = False) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if value > 0 or (allow_zero and value == 0) else None
