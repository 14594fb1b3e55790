"""Refinement: a learning-rate schedule computed from the gradient norms of an earlier run (numpy/scipy only).

The method of Defazio, Cutkosky, Mehta & Mishchenko, "Optimal Linear Decay Learning Rate Schedules and Further
Refinements" (arXiv 2310.07831), Section 2 of ``shared/docs/refinement.md``:

1. put the logged norms on the new run's grid of ``T + 1`` points by training fraction (step ``t`` of the new
   run is fraction ``t / T``; the point ``T`` is the end of training);
2. smooth them with a median filter of width ``smoothing * T`` (odd), padding the END by reflection (2 widths,
   dropped afterwards) and using "nearest" at the start, as the authors do;
3. guard the smoothed norms (``RefineOptions.guard``: low norms never raise the LR by default);
4. weights ``w = G^-2`` (``norm="l2"``, SGD form) or ``w = G^-1`` (``norm="l1"``, the paper's Adam form);
5. ``eta_t = w_t * sum_{p = t+1 .. T} w_p`` (so ``eta_T = 0``), divided by its maximum.

Constant norms give exactly ``1 - t / T``, transformers' ``linear`` schedule.

Degenerate input, the documented rule (each case is tested):

* not a 1-D sequence of real numbers (text, nested lists, booleans): ``TypeError``/``ValueError`` naming it;
* empty, or no usable value left: ``ValueError``;
* negative values: ``ValueError`` (a norm cannot be negative: the wrong column was read);
* NaN / inf (fp16 overflow steps, whose optimizer step was skipped) and exact zeros (no update either): dropped
  with a warning, so the series is that of the updates actually made; positions of the remaining values are kept
  when they are given;
* a single usable value: no shape to refine, the result is linear decay (warning);
* fewer values than the smoothing window needs (under ``1 / smoothing``): allowed, they are resampled to the new
  run first, but the window then spans less than one logged value and removes no spike (warning).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.ndimage import median_filter

from .errors import RefinementWarning
from .options import RefineOptions

#: The options `linear_refined`, the CLI and the pilot use when none are given (see `RefineOptions`).
DEFAULT_OPTIONS = RefineOptions()

_EXPONENT = {"l2": 2.0, "l1": 1.0}


_NUMBER_TYPES = frozenset({int, float, np.float64, np.float32, np.float16, np.int64, np.int32})


def _only_number_types(sequence: list | tuple) -> bool:
    """True if every entry is a plain number (bool excluded): `set(map(type, ...))` runs in C, no per-entry check."""
    return set(map(type, sequence)) <= _NUMBER_TYPES


def validate_norms(grad_norms: object, *, name: str = "grad_norms") -> np.ndarray:
    """Return `grad_norms` as a 1-D float64 array, or raise a `TypeError`/`ValueError` that says what was expected."""
    if isinstance(grad_norms, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of numbers, got a string {grad_norms[:40]!r}")
    if isinstance(grad_norms, (list, tuple)) and _only_number_types(grad_norms):
        values = np.asarray(grad_norms, dtype=np.float64)  # the common case (a JSON list): one C-level pass
    else:
        values = np.asarray(grad_norms, dtype=object) if not isinstance(grad_norms, np.ndarray) else grad_norms
    if values.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of numbers, got an array of shape {values.shape}")
    if values.dtype == object or values.dtype.kind not in "iuf":
        for index, value in enumerate(values.tolist()):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(
                    f"{name} must contain only numbers; entry {index} is {value!r} ({type(value).__name__})"
                )
    values = values.astype(np.float64)
    if values.size == 0:
        raise ValueError(f"{name} is empty: expected the gradient norms of at least one optimizer step")
    negative = np.flatnonzero(values < 0)
    if negative.size:
        raise ValueError(
            f"{name} has {negative.size} negative value(s) (first at index {negative[0]}: {values[negative[0]]}); "
            "a gradient norm is >= 0, so this is probably the wrong column or metric"
        )
    return values


def usable_norms(values: np.ndarray, positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Drop non-finite and zero norms (steps whose update was skipped or empty), warning once with the count."""
    keep = np.isfinite(values) & (values > 0)
    dropped = values.size - int(keep.sum())
    if dropped == values.size:
        raise ValueError(
            f"none of the {values.size} gradient norms is a finite positive number (all NaN, inf or 0): "
            "nothing to refine from; check that the run trained (no fp16 overflow at every step, no frozen model)"
        )
    if dropped:
        warnings.warn(
            f"dropped {dropped} of {values.size} gradient norms that were NaN, inf or 0 (fp16 overflow or skipped "
            "steps take no update); refining from the remaining ones",
            RefinementWarning,
            stacklevel=3,
        )
    return values[keep], (positions[keep] if positions is not None else None)


def resample_by_fraction(values: np.ndarray, num_points: int, positions: np.ndarray | None = None) -> np.ndarray:
    """Linear interpolation of `values` onto `num_points` equally spaced training fractions ``0 .. 1``.

    Value ``i`` of ``N`` sits at fraction ``i / N`` (step ``i`` of an ``N``-step run) unless `positions` (fractions
    in ``[0, 1]``) are given; beyond the last value the last value is held.
    """
    if positions is None:
        positions = np.arange(values.size, dtype=np.float64) / values.size
    grid = np.linspace(0.0, 1.0, num_points)
    return np.interp(grid, positions, values)


def median_smooth(values: np.ndarray, width: int) -> np.ndarray:
    """Median filter with the authors' edges: the end reflected (2 widths, dropped after), "nearest" at the start."""
    if width <= 1:
        return values.copy()
    padded = np.pad(values, (0, 2 * width), mode="reflect")  # reflects repeatedly when the series is short
    return median_filter(padded, size=width, mode="nearest")[: values.size]


def filter_width(smoothing: float, num_training_steps: int) -> int:
    """Odd median-filter width for `smoothing` (a fraction of training) on a ``T + 1``-point grid."""
    return 2 * (int(smoothing * num_training_steps) // 2) + 1


def guard_norms(
    smoothed: np.ndarray, max_norm_ratio: float, guard: str = "clip", tolerance: float = 1.0
) -> np.ndarray:
    """Bound smoothed norms around their median ``m``: ``[m / R, m * R]`` for ``"clip"``, ``[m, m * R]`` for
    ``"floor"`` (norms below the median count as the median), unchanged for ``"none"``.

    With ``tolerance > 1`` the ratio ``r = G / m`` first loses a band of noise: ``r`` within ``[1/tol, tol]`` becomes
    1, a ratio beyond it keeps only its excess (``r / tol`` above, ``r * tol`` below), so small variation gives
    exactly linear decay and the map stays continuous.
    """
    if guard == "none":
        return smoothed
    middle = float(np.median(smoothed))
    if tolerance > 1.0:
        ratio = smoothed / middle
        banded = np.where(ratio > tolerance, ratio / tolerance, np.where(ratio < 1 / tolerance, ratio * tolerance, 1.0))
        smoothed = middle * banded
    low = middle if guard == "floor" else middle / max_norm_ratio
    return np.clip(smoothed, low, middle * max_norm_ratio)


def schedule_from_weights(weights: np.ndarray) -> np.ndarray:
    """``eta_t = w_t * sum_{p > t} w_p`` for t = 0 .. len-1, divided by its maximum over t < len - 1."""
    weights = weights / weights.max()  # scale-free; keeps constant norms exactly linear (sums of 1.0 are exact)
    tail = np.cumsum(weights[::-1])[::-1]
    eta = np.empty_like(weights)
    eta[:-1] = weights[:-1] * tail[1:]
    eta[-1] = 0.0
    return eta / eta[:-1].max()


def check_num_training_steps(num_training_steps: object) -> None:
    if isinstance(num_training_steps, bool) or not isinstance(num_training_steps, (int, np.integer)):
        raise TypeError(f"num_training_steps must be an integer, got {num_training_steps!r}")
    if num_training_steps <= 0:
        raise ValueError(f"num_training_steps must be a positive integer, got {num_training_steps=}")


def resolve_options(options: RefineOptions | None, overrides: dict[str, Any]) -> RefineOptions:
    """`options` (default: `DEFAULT_OPTIONS`) with the keyword overrides applied and checked."""
    unknown = sorted(set(overrides) - set(RefineOptions.names()))
    if unknown:
        raise TypeError(f"unknown refinement option(s) {unknown}; valid: {', '.join(RefineOptions.names())}")
    return dataclasses.replace(options if options is not None else DEFAULT_OPTIONS, **overrides)


def refine_schedule(
    grad_norms: Sequence[float] | np.ndarray,
    num_training_steps: int,
    options: RefineOptions | None = None,
    *,
    positions: Sequence[float] | np.ndarray | None = None,
    **option_overrides: Any,
) -> np.ndarray:
    r"""The refined schedule's multipliers for steps ``0 .. num_training_steps - 1`` (peak 1, then down to ~0).

    ```
    G_hat = median filter of G (width tau * T)      w_t = G_hat_t ** -p
    eta_t = w_t * sum(w_s, s = t+1 .. T) / max over u of (w_u * sum(w_s, s = u+1 .. T))
    ```

    with ``p = 2`` for ``norm="l2"`` and ``p = 1`` for ``norm="l1"``.

    Args:
        grad_norms (`Sequence[float]` or `np.ndarray`):
            Per-step gradient norms of an earlier run of the same task (any length: they are resampled to this run
            by training fraction).
        num_training_steps (`int`):
            `T`, the optimizer steps of the run to schedule.
        options (`RefineOptions`, *optional*, defaults to `DEFAULT_OPTIONS`):
            The refinement options; the default is exactly what `linear_refined` uses by default.
        positions (`Sequence[float]`, *optional*):
            Training fraction (`[0, 1]`) of each norm, for logs with gaps or logged every k-th step.
        option_overrides:
            Fields of `RefineOptions` to change (`norm`, `smoothing`, `guard`, `max_norm_ratio`, `tolerance`), e.g.
            `guard="none"` for the paper's bare formula.

    Returns:
        `np.ndarray`: `num_training_steps` float64 multipliers in `[0, 1]`.

    Examples:
        >>> refine_schedule([1.0] * 4, 4).tolist()
        [1.0, 0.75, 0.5, 0.25]
        >>> refine_schedule([2.0, 1.0, 1.0, 1.0, 1.0], 5, smoothing=0.0, guard="none").tolist()
        [0.3125, 1.0, 0.75, 0.5, 0.25]

    References:
        Defazio, Cutkosky, Mehta, Mishchenko, arXiv 2310.07831, Section 5 ("refinement").
    """
    details = refinement_details(grad_norms, num_training_steps, options, positions=positions, **option_overrides)
    return details.multipliers[:num_training_steps]


class Refinement:
    """What `refinement_details` computed: the resampled, smoothed and guarded norms and the multiplier table.

    Arrays hold ``T + 1`` points (fractions ``0, 1/T, .., 1``); ``multipliers[T]`` is 0, the end of training.
    """

    def __init__(self, resampled: np.ndarray, smoothed: np.ndarray, guarded: np.ndarray, multipliers: np.ndarray):
        self.resampled = resampled
        self.smoothed = smoothed
        self.guarded = guarded
        self.multipliers = multipliers

    @property
    def peak_fraction(self) -> float:
        """Training fraction of the schedule's peak (the first one, if several)."""
        return float(np.argmax(self.multipliers)) / (self.multipliers.size - 1)


def refinement_details(
    grad_norms: Sequence[float] | np.ndarray,
    num_training_steps: int,
    options: RefineOptions | None = None,
    *,
    positions: Sequence[float] | np.ndarray | None = None,
    **option_overrides: Any,
) -> Refinement:
    """`refine_schedule` with its intermediate series, for plots and summaries."""
    options = resolve_options(options, option_overrides)
    check_num_training_steps(num_training_steps)
    smoothing = options.smoothing
    values = validate_norms(grad_norms)
    fractions = None
    if positions is not None:
        fractions = validate_norms(positions, name="positions")
        if fractions.size != values.size:
            raise ValueError(f"positions has {fractions.size} entries but grad_norms has {values.size}")
        if np.any(np.diff(fractions) <= 0) or fractions[-1] > 1.0:
            raise ValueError("positions must be strictly increasing training fractions in [0, 1]")
    values, fractions = usable_norms(values, fractions)
    width = filter_width(smoothing, num_training_steps)
    if values.size == 1:
        warnings.warn(
            "only one usable gradient norm: there is no shape to refine, the schedule is linear decay",
            RefinementWarning,
            stacklevel=2,
        )
    elif smoothing > 0 and values.size * smoothing < 1:
        warnings.warn(
            f"only {values.size} gradient norms: the smoothing window ({smoothing} of training) spans less than one "
            "logged value, so it cannot remove spikes; log more steps (or every step) for a robust schedule",
            RefinementWarning,
            stacklevel=2,
        )
    resampled = resample_by_fraction(values, num_training_steps + 1, fractions)
    smoothed = median_smooth(resampled, width)
    guarded = guard_norms(smoothed, options.max_norm_ratio, options.guard, options.tolerance)
    weights = guarded ** -_EXPONENT[options.norm]
    return Refinement(resampled, smoothed, guarded, schedule_from_weights(weights))


#: A schedule within this distance (as a share of its peak) of linear decay at every step reads as linear decay.
LINEAR_TOLERANCE = 0.02


def describe_schedule(multipliers: Sequence[float]) -> str:
    """What a multiplier table (at fractions ``k / T``) changes against linear decay, in plain words.

    The warmup ends at the first entry within 1 % of the peak; the decay after it is compared with a straight line
    from there to the table's last value; the mean multiplier is compared with linear decay's over the same range
    (``(1 + end) / 2``, so 0.50 when the table ends at 0).

    Examples:
        >>> describe_schedule([1.0, 0.75, 0.5, 0.25, 0.0])
        'no warmup, linear decay; mean LR multiplier 0.50 vs 0.50 for linear'
        >>> describe_schedule([0.5, 1.0, 0.75, 0.5, 0.25, 0.0])
        'warmup over the first 20.0 % of training, then linear decay; mean LR multiplier 0.50 vs 0.50 for linear'
    """
    values = np.asarray(multipliers, dtype=float)
    if values.ndim != 1 or values.size < 2 or not np.all(np.isfinite(values)) or values.max() <= 0:
        raise ValueError("multipliers must be at least 2 finite numbers with a positive maximum")
    steps = values.size - 1
    peak = float(values.max())
    top = int(np.argmax(values >= 0.99 * peak))
    start = "no warmup, " if top == 0 else f"warmup over the first {100 * top / steps:.1f} % of training, then "
    span = np.arange(top, steps + 1)
    reference = values[-1] + (values[top] - values[-1]) * (steps - span) / max(steps - top, 1)
    gap = values[top:] - reference
    worst = int(np.argmax(np.abs(gap)))
    if abs(gap[worst]) <= LINEAR_TOLERANCE * peak:
        decay = "linear decay"
    else:
        where = f"{100 * (top + worst) / steps:.0f} %"
        if gap[worst] > 0:
            decay = f"a decay above linear (by {gap[worst]:.2f} at {where} of training), then a faster final anneal"
        else:
            decay = f"a decay below linear (by {-gap[worst]:.2f} at {where} of training), then a slower tail"
    linear_mean = (1.0 + values[-1]) / 2
    return f"{start}{decay}; mean LR multiplier {values.mean():.2f} vs {linear_mean:.2f} for linear"
