"""LR transfer: the bound-optimal base learning rate of one schedule and horizon, from one tuned for another
(numpy/scipy only).

If a base learning rate ``lr_A`` is the bound-optimal one for schedule A over ``T`` steps, the bound-optimal one for
schedule B over ``T'`` steps is

```
lr_B = lr_A * sqrt(a_B / b_B) / sqrt(a_A / b_A)
```

with ``a``, ``b`` the `BoundTerms` of each schedule (``B(c) = D^2 a / c + b c``). ``D`` cancels; the scale of the
gradient norms cancels too, because both schedules use the same norm profile (constant, or one log resampled to
each horizon by training fraction). Schaipp et al. (arXiv 2501.18965, Section 5) found such predicted ratios to
match the measured best learning rates of 124M/210M Llama runs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bound import BoundTerms, bound_terms
from .formats import load_schedule
from .options import RefineOptions
from .readers import GradNormLog, load_grad_norms
from .refine import refinement_details
from .schedules import constant, cosine_decay, linear_decay, table_schedule, warmup_stable_decay

#: Schedules known by name; anything else must be a schedule file (`hf-lrschedule refine`/`extend` output).
SCHEDULE_NAMES = ("linear", "cosine", "constant", "warmup_stable_decay", "linear_refined")
DECAY_TYPES = ("linear", "cosine", "1-sqrt")

NormSource = str | os.PathLike | GradNormLog | Sequence[float] | np.ndarray

__all__ = ["SCHEDULE_NAMES", "LRTransfer", "norm_profile", "schedule_multipliers", "transfer_learning_rate"]


def _grad_norm_log(grad_norms: NormSource) -> GradNormLog:
    return grad_norms if isinstance(grad_norms, GradNormLog) else load_grad_norms(grad_norms)


def norm_profile(grad_norms: NormSource, num_training_steps: int, options: RefineOptions | None = None) -> np.ndarray:
    """The l2 norms of a log on a ``T``-update run, by training fraction: one per update, as `refine` sees them.

    The log goes through `refinement_details` (non-finite values dropped, resampled to ``T + 1`` points by training
    fraction, median-smoothed with `options.smoothing`); update ``t`` gets the point at fraction ``(t - 1) / T``.
    """
    log = _grad_norm_log(grad_norms)
    details = refinement_details(log.series("l2"), num_training_steps, options, positions=log.positions())
    return details.smoothed[:num_training_steps]


def warmup_steps_for(num_training_steps: int, warmup_fraction: float) -> int:
    """transformers' rule for a `warmup_ratio`: ``ceil(T * fraction)``."""
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"warmup fraction must be in [0, 1), got {warmup_fraction}")
    return math.ceil(num_training_steps * warmup_fraction)


def schedule_multipliers(
    schedule: str | os.PathLike,
    num_training_steps: int,
    *,
    warmup_fraction: float = 0.0,
    decay_fraction: float = 0.2,
    decay_type: str = "cosine",
    grad_norms: NormSource | None = None,
    refine_options: RefineOptions | None = None,
) -> np.ndarray:
    """The multiplier of each of the ``T`` optimizer updates of a schedule, as transformers' Trainer applies it.

    Args:
        schedule (`str` or `os.PathLike`):
            One of `SCHEDULE_NAMES`, or a schedule file (read by training fraction, after the warmup).
        num_training_steps (`int`):
            ``T``.
        warmup_fraction (`float`, *optional*, defaults to 0):
            A linear warmup over ``ceil(T * warmup_fraction)`` steps, as `warmup_ratio` gives.
        decay_fraction (`float`, *optional*, defaults to 0.2):
            `warmup_stable_decay` only: the decay phase as a fraction of ``T``.
        decay_type (`str`, *optional*, defaults to "cosine"):
            `warmup_stable_decay` only: "linear", "cosine" (transformers' default) or "1-sqrt".
        grad_norms (*optional*):
            `linear_refined` only (required there): a norm source for `load_grad_norms`, or a `GradNormLog`.
        refine_options (`RefineOptions`, *optional*):
            `linear_refined` only: the refinement options (default: `linear_refined`'s).

    Returns:
        `np.ndarray`: ``T`` multipliers; entry ``t - 1`` is the multiplier of update ``t``.
    """
    if isinstance(num_training_steps, bool) or not isinstance(num_training_steps, (int, np.integer)) or num_training_steps <= 0:
        raise ValueError(f"the number of training steps must be a positive integer, got {num_training_steps!r}")
    warmup = warmup_steps_for(num_training_steps, warmup_fraction)
    steps = range(num_training_steps)
    name = str(schedule)
    if name == "linear":
        values = [linear_decay(s, num_training_steps=num_training_steps, num_warmup_steps=warmup) for s in steps]
    elif name == "cosine":
        values = [cosine_decay(s, num_training_steps=num_training_steps, num_warmup_steps=warmup) for s in steps]
    elif name == "constant":
        values = [constant(s, num_warmup_steps=warmup) for s in steps]
    elif name == "warmup_stable_decay":
        if not 0.0 < decay_fraction <= 1.0:
            raise ValueError(f"decay fraction must be in (0, 1], got {decay_fraction}")
        decay = max(1, round(decay_fraction * num_training_steps))
        if decay > num_training_steps - warmup:
            raise ValueError(
                f"warmup ({warmup} steps) and decay ({decay} steps) overlap in a run of {num_training_steps} steps"
            )
        values = [
            warmup_stable_decay(
                s, num_training_steps=num_training_steps, num_decay_steps=decay, num_warmup_steps=warmup,
                decay_type=decay_type,
            )
            for s in steps
        ]
    else:
        table = _table(name, num_training_steps - warmup, grad_norms, refine_options)
        values = [
            table_schedule(s, table=table, num_training_steps=num_training_steps, num_warmup_steps=warmup) for s in steps
        ]
    return np.asarray(values, dtype=np.float64)


def _table(name: str, decay_steps: int, grad_norms: NormSource | None, options: RefineOptions | None) -> list[float]:
    if name == "linear_refined":
        if grad_norms is None:
            raise ValueError("linear_refined needs gradient norms: pass a norm source (--grad-norms)")
        log = _grad_norm_log(grad_norms)
        details = refinement_details(log.series((options or RefineOptions()).norm), decay_steps, options,
                                     positions=log.positions())
        return details.multipliers.tolist()
    if Path(name).is_file() or name.endswith(".json"):
        return [float(m) for m in load_schedule(name)["multipliers"]]
    raise ValueError(f"unknown schedule {name!r}: expected one of {', '.join(SCHEDULE_NAMES)} or a schedule file")


@dataclass(frozen=True)
class LRTransfer:
    """What `transfer_learning_rate` found: the transferred base LR, the ratio to the given one, and the bound
    terms of both schedules (``B(c) = D^2 a / c + b c``)."""

    learning_rate: float
    ratio: float
    source_terms: BoundTerms
    target_terms: BoundTerms


def transfer_learning_rate(
    learning_rate: float,
    *,
    schedule: str | os.PathLike,
    num_training_steps: int,
    to_schedule: str | os.PathLike | None = None,
    to_num_training_steps: int | None = None,
    warmup_fraction: float = 0.0,
    decay_fraction: float = 0.2,
    decay_type: str = "cosine",
    grad_norms: NormSource | None = None,
    refine_options: RefineOptions | None = None,
) -> LRTransfer:
    """The bound-optimal base learning rate of `to_schedule` over `to_num_training_steps` steps, given that
    `learning_rate` is the best one of `schedule` over `num_training_steps` (see the module docstring).

    Args:
        learning_rate (`float`):
            The base LR tuned for `schedule` at `num_training_steps`.
        schedule (`str` or `os.PathLike`):
            Schedule A: a name of `SCHEDULE_NAMES` or a schedule file.
        num_training_steps (`int`):
            Schedule A's horizon ``T``.
        to_schedule (`str` or `os.PathLike`, *optional*):
            Schedule B (defaults to A).
        to_num_training_steps (`int`, *optional*):
            Schedule B's horizon ``T'`` (defaults to ``T``).
        warmup_fraction (`float`, *optional*, defaults to 0):
            As in `schedule_multipliers`, for both schedules.
        decay_fraction (`float`, *optional*, defaults to 0.2):
            As in `schedule_multipliers`, for both schedules.
        decay_type (`str`, *optional*, defaults to "cosine"):
            As in `schedule_multipliers`, for both schedules.
        refine_options (`RefineOptions`, *optional*):
            As in `schedule_multipliers`, for both schedules.
        grad_norms (*optional*):
            A norm source (file, run directory, `GradNormLog` or values) resampled to each horizon by training
            fraction (`norm_profile`); constant norms when not given. `linear_refined` is refined from it.

    Returns:
        `LRTransfer`.

    Examples:
        >>> result = transfer_learning_rate(1e-3, schedule="constant", num_training_steps=1, to_num_training_steps=2)
        >>> result.ratio  # T=1: a = 1/2, b = 1/2, c* = 1; T=2: a = 1/4, b = (1/2)(1/1) + 1/2 = 1, c* = 1/2
        0.5
    """
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"the learning rate must be a positive number, got {learning_rate!r}")
    to_schedule = schedule if to_schedule is None else to_schedule
    to_num_training_steps = num_training_steps if to_num_training_steps is None else to_num_training_steps
    log = None if grad_norms is None else _grad_norm_log(grad_norms)
    terms = []
    for name, steps in ((schedule, num_training_steps), (to_schedule, to_num_training_steps)):
        multipliers = schedule_multipliers(
            name, steps, warmup_fraction=warmup_fraction, decay_fraction=decay_fraction, decay_type=decay_type,
            grad_norms=log, refine_options=refine_options,
        )
        norms = None if log is None else norm_profile(log, steps, refine_options)
        terms.append(bound_terms(multipliers, norms))
    ratio = terms[1].optimal_base_lr() / terms[0].optimal_base_lr()
    return LRTransfer(learning_rate=learning_rate * ratio, ratio=ratio, source_terms=terms[0], target_terms=terms[1])
