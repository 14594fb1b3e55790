"""Continuation: the bound-optimal schedule to train a run further, its past held fixed (numpy/scipy only).

A run used the multipliers ``m_1 .. m_k`` (learning rate of each update / base learning rate) for its first ``k``
updates. To continue it to ``T2`` updates, `continue_schedule` picks ``m_{k+1} .. m_{T2}`` in ``[0, 1]`` (never
above the base learning rate) that minimise the last-iterate bound of the whole run (`hf_lrschedule.bound`), with
the past fixed. The bound is convex in the learning rates, so L-BFGS-B on its analytic O(T) gradient finds the
optimum; a 1-D search for the level of a linear decay gives the start.

Calibration. The past learning rates are absolute, so the bound needs its ``D / G`` scale (``B(c) = D^2 a / c + b c``
only has a scale-free optimum when the whole schedule scales). The rule: ``D`` is the one at which the run's own
base learning rate was bound-optimal for the schedule it was planned with (``planned``, over its horizon ``T1``):
``D^2 = 2 S_1(planned) b(planned)`` in units of the base learning rate. The scale of ``G`` cancels, so only the shape
of the norms matters.

Norms. The run's own per-step norms when given (the past as logged; after the last logged step, the median of the
last `HOLD_FRACTION` of them, held); constant otherwise.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from .bound import check_rates, drop_trailing_zeros, last_iterate_bound_and_gradient
from .errors import GradNormSourceError, RefinementWarning
from .formats import SCHEDULE_FORMAT, load_schedule, read_json, schedule_payload
from .readers import GradNormLog, load_grad_norms
from .refine import usable_norms
from .schedules import table_schedule

#: After the last logged step the norms are held at the median of this last share of the logged ones.
HOLD_FRACTION = 0.1
#: L-BFGS-B's relative tolerance on the bound (the bound is within about 1e-9 of its optimum; the multipliers
#: within about 1e-3).
TOLERANCE = 1e-10
#: Past multipliers may exceed 1 by this much (float noise of a logged learning rate divided by the base one).
ABOVE_ONE = 1e-6

__all__ = ["Continuation", "RunHistory", "continue_schedule", "per_step_norms", "run_history"]


@dataclass
class Continuation:
    """What `continue_schedule` found.

    `multipliers` has ``T2 + 1`` entries, as a schedule file: entry ``t - 1`` is the multiplier of update ``t``
    (the first `past_steps` are the past), the last is the end of training (0). `bound` and `planned_bound` are in
    units of the base learning rate times ``G^2`` (comparable with each other only).
    """

    multipliers: np.ndarray
    past_steps: int
    squared_distance: float
    bound: float
    planned_bound: float
    iterations: int
    seconds: float

    @property
    def num_training_steps(self) -> int:
        return self.multipliers.size - 1

    @property
    def rewarm(self) -> float:
        """The multiplier of the first continued update."""
        return float(self.multipliers[self.past_steps])

    def payload(self, **info: Any) -> dict[str, Any]:
        """The schedule file's JSON (`formats.schedule_payload`), with a ``continuation`` entry describing it."""
        return schedule_payload(
            self.multipliers,
            num_training_steps=self.num_training_steps,
            continuation={
                "past_steps": self.past_steps,
                "rewarm": self.rewarm,
                "bound": self.bound,
                "planned_bound": self.planned_bound,
                "calibration": "D at which the base learning rate is bound-optimal for the planned schedule",
            },
            **info,
        )


def per_step_norms(grad_norms: Sequence[float] | np.ndarray, num_steps: int) -> np.ndarray:
    """`grad_norms` (one per update from update 1) on ``num_steps`` updates: beyond the logged ones, the median
    of the last `HOLD_FRACTION` of them is held (the future norms are unknown; this is the guess)."""
    norms = check_rates(grad_norms, "grad_norms")
    if np.any(norms <= 0):
        raise ValueError("grad_norms must be > 0 (drop or repair NaN/inf/0 entries first)")
    if norms.size >= num_steps:
        return norms[:num_steps]
    tail = norms[-max(1, round(HOLD_FRACTION * norms.size)) :]
    return np.concatenate([norms, np.full(num_steps - norms.size, float(np.median(tail)))])


def continue_schedule(
    past_multipliers: Sequence[float] | np.ndarray,
    num_training_steps: int,
    *,
    planned_multipliers: Sequence[float] | np.ndarray | None = None,
    grad_norms: Sequence[float] | np.ndarray | None = None,
) -> Continuation:
    r"""The bound-optimal continuation of a run to `num_training_steps` updates (see the module docstring).

    ```
    minimise over m_{k+1..T2} in [0, 1]:   B(m_1..m_T2) = D^2 / (2 S_1) + (1/2) sum_{t<T2} G_t^2 m_t^2 / S_{t+1}
                                                          + (1/2) G_T2^2 m_T2
    with D^2 = 2 S_1(planned) b(planned)   (the base learning rate is bound-optimal for the planned run)
    ```

    Args:
        past_multipliers (`Sequence[float]`):
            ``m_1 .. m_k``: the learning rate of each past update divided by the base learning rate, in ``[0, 1]``.
        num_training_steps (`int`):
            ``T2 > k``, the updates of the continued run.
        planned_multipliers (`Sequence[float]`, *optional*):
            The run's planned schedule (its ``T1`` multipliers), for the calibration; defaults to the past (a
            finished run).
        grad_norms (`Sequence[float]`, *optional*):
            The run's norm of each update from update 1 (any length: `per_step_norms` holds the last ones);
            constant when not given.

    Returns:
        `Continuation`.

    Examples:
        A finished 4-step linear run continued to 8 updates: a rewarm to 0.43, a decay, and a last update that only
        weighs the last gradient in the bound (on a long run it is about twice the one before it):

        >>> continue_schedule([1.0, 0.75, 0.5, 0.25], 8).multipliers.round(2).tolist()
        [1.0, 0.75, 0.5, 0.25, 0.43, 0.36, 0.3, 0.73, 0.0]
    """
    past = check_rates(past_multipliers, "past_multipliers")
    if np.any(past > 1.0 + ABOVE_ONE):
        raise ValueError(
            f"past multipliers go up to {past.max():.6g} > 1: the base learning rate is below the run's peak; give "
            "the run's base learning rate (the Trainer's learning_rate)"
        )
    past = np.minimum(past, 1.0)
    if isinstance(num_training_steps, bool) or not isinstance(num_training_steps, (int, np.integer)):
        raise TypeError(f"num_training_steps must be an integer, got {num_training_steps!r}")
    if num_training_steps <= past.size:
        raise ValueError(
            f"the continued run must be longer than its past: got {num_training_steps} steps for a past of "
            f"{past.size}; pass a larger --to / num_training_steps"
        )
    planned = past if planned_multipliers is None else check_rates(planned_multipliers, "planned_multipliers")
    planned = drop_trailing_zeros(planned)
    total = max(num_training_steps, planned.size)
    squared = np.ones(total) if grad_norms is None else per_step_norms(grad_norms, total) ** 2
    planned_noise = last_iterate_bound_and_gradient(planned, squared[: planned.size], 0.0)[0]
    half_squared_distance = float(planned.sum()) * planned_noise  # D^2 / 2 = S_1 b
    steps, start = num_training_steps - past.size, time.perf_counter()
    squared = squared[:num_training_steps]

    def objective(future: np.ndarray) -> tuple[float, np.ndarray]:
        value, gradient = last_iterate_bound_and_gradient(np.concatenate([past, future]), squared, half_squared_distance)
        return value, gradient[past.size :]

    shape = (steps - np.arange(steps)) / steps  # linear decay, for the start point
    level = minimize_scalar(lambda c: objective(c * shape)[0], bounds=(1e-6, 1.0), method="bounded").x
    # the last rate only weighs the last gradient and the bound grows without limit as it goes to 0: keep it positive
    bounds = [(0.0, 1.0)] * (steps - 1) + [(1e-9, 1.0)]
    result = minimize(
        objective, level * shape, jac=True, method="L-BFGS-B", bounds=bounds,
        options={"ftol": TOLERANCE, "maxiter": 20 * steps + 1000},
    )
    if not result.success:
        warnings.warn(f"the continuation's optimiser stopped early: {result.message}", RefinementWarning, stacklevel=2)
    multipliers = np.concatenate([past, np.clip(result.x, 0.0, 1.0), [0.0]])
    return Continuation(
        multipliers=multipliers,
        past_steps=past.size,
        squared_distance=2 * half_squared_distance,
        bound=float(result.fun),
        planned_bound=half_squared_distance / float(planned.sum()) + planned_noise,
        iterations=int(result.nit),
        seconds=time.perf_counter() - start,
    )


# --- reading a run's past ------------------------------------------------------------------------------------------


@dataclass
class RunHistory:
    """A run's past as `continue_schedule` needs it, read by `run_history`.

    `past`: multipliers of updates ``1..k``; `planned`: those of the planned run (``T1`` updates); `grad_norms`: one
    per update from update 1 (None: constant); `base_learning_rate`: what the multipliers are relative to (None
    for a schedule file); `notes`: what was read and assumed, for the CLI to print.
    """

    past: np.ndarray
    planned: np.ndarray
    grad_norms: np.ndarray | None
    base_learning_rate: float | None
    source: str
    notes: list[str] = field(default_factory=list)


def _is_schedule_file(path: Path) -> bool:
    if not path.is_file() or path.suffix.lower() != ".json":
        return False
    try:
        data = read_json(path)
    except GradNormSourceError:
        return False
    return isinstance(data, dict) and data.get("format") == SCHEDULE_FORMAT


def checkpoint_steps(directory: Path) -> list[int]:
    """The steps of the ``checkpoint-*`` folders in a Trainer output_dir, ascending."""
    found = (re.fullmatch(r"checkpoint-(\d+)", p.name) for p in directory.glob("checkpoint-*") if p.is_dir())
    return sorted(int(m.group(1)) for m in found if m)


def _series_on_steps(steps: np.ndarray, values: np.ndarray, num_steps: int, what: str, where: str) -> np.ndarray:
    """Values on updates ``1..num_steps``, interpolated linearly between logged steps (warned when any is missing)."""
    wanted = np.arange(1, num_steps + 1)
    known = steps[steps <= num_steps]
    if known.size != num_steps or not np.array_equal(known, wanted):
        warnings.warn(
            f"{where}: {what} logged at {steps.size} steps, not at every one of updates 1-{num_steps} "
            f"(logging_steps > 1?); the missing ones are interpolated linearly, and held before step {int(steps[0])} "
            "(log every step, logging_steps=1, for the exact values)",
            RefinementWarning,
            stacklevel=3,
        )
    return np.interp(wanted, steps, values)


def _log_norms(log: GradNormLog) -> np.ndarray:
    values = np.asarray(log.series("l2"), dtype=np.float64)
    steps = np.arange(1, values.size + 1) if log.steps is None else np.asarray(log.steps, dtype=np.float64)
    values, steps = usable_norms(values, steps)
    return np.interp(np.arange(1, int(steps[-1]) + 1), steps, values)


def run_history(
    source: str | os.PathLike,
    *,
    from_step: int | None = None,
    base_learning_rate: float | None = None,
    warmup_steps: int = 0,
    grad_norms: str | os.PathLike | None = None,
    constant_norms: bool = False,
) -> RunHistory:
    """Read a run's past learning rates (and norms) from a Trainer output_dir, a pilot folder, a
    ``trainer_state.json``, a recorder file, or the schedule file the run used.

    Args:
        source (`str` or `os.PathLike`):
            A run directory or file; from a log the ``learning_rate`` series is read (`GradNormLog.metrics`).
        from_step (`int`, *optional*):
            ``k``, the checkpoint to continue from; default: the newest ``checkpoint-*`` of a run directory, else
            the last logged step (a schedule file: its last step, a finished run).
        base_learning_rate (`float`, *optional*):
            What the logged learning rates are divided by; default: their maximum (the schedule's peak, 1).
        warmup_steps (`int`, *optional*, defaults to 0):
            A schedule file only: the run's `num_warmup_steps` (the file is read after the warmup).
        grad_norms (*optional*):
            Another norm source for the run (by step); default: the log's own norms (constant for a schedule file).
        constant_norms (`bool`, *optional*):
            Use constant norms whatever the source holds.
    """
    path = Path(source)
    notes: list[str] = []
    if _is_schedule_file(path):
        data = load_schedule(path)
        table = [float(m) for m in data["multipliers"]]
        total = int(data.get("num_training_steps") or len(table) - 1)
        planned = np.array([table_schedule(s, table=table, num_training_steps=total, num_warmup_steps=warmup_steps)
                            for s in range(total)])
        k = total if from_step is None else from_step
        if not 0 < k <= total:
            raise ValueError(f"--from-checkpoint {k} is outside the schedule file's {total} steps (1..{total})")
        notes.append(f"past: multipliers of updates 1-{k} of {path} ({total} steps, warmup {warmup_steps})")
        norms = None
        if grad_norms is not None and not constant_norms:
            norms = _log_norms(load_grad_norms(grad_norms))
        return RunHistory(planned[:k], planned, norms, None, str(path), notes)

    log = load_grad_norms(path)
    where = log.source
    series = (getattr(log, "metrics", None) or {}).get("learning_rate")
    if series is None or np.asarray(series.steps).size == 0:
        raise GradNormSourceError(
            f"{where} holds no learning rates (no 'learning_rate' in its log); pass a trainer_state.json of the run "
            "(transformers logs learning_rate with each loss), or the schedule file it used (--warmup-steps for its "
            "warmup)"
        )
    steps, values = np.asarray(series.steps, dtype=np.float64), np.asarray(series.values, dtype=np.float64)
    finite = np.isfinite(values)
    steps, values = steps[finite], values[finite]
    last = int(steps[-1])
    if from_step is None:
        found = checkpoint_steps(path) if path.is_dir() else []
        k = found[-1] if found else last
    else:
        k = from_step
        found = checkpoint_steps(path) if path.is_dir() else []
        if path.is_dir() and found and k not in found:
            raise ValueError(f"{path} has no checkpoint-{k} to resume from (checkpoints: {found})")
    if not 0 < k <= last:
        raise ValueError(
            f"{where} has learning rates up to step {last}; --from-checkpoint {k} is beyond the log (pass the "
            "top-level trainer_state.json or a newer checkpoint's)"
        )
    if base_learning_rate is None:
        base_learning_rate = float(values.max())
        notes.append(f"base learning rate: {base_learning_rate:.6g} (the largest logged; --base-lr to set it)")
    elif not base_learning_rate > 0:
        raise ValueError(f"the base learning rate must be > 0, got {base_learning_rate}")
    multipliers = values / base_learning_rate
    past = _series_on_steps(steps, multipliers, k, "learning rates", where)
    planned_steps = log.meta.get("num_training_steps")
    if not isinstance(planned_steps, int) or isinstance(planned_steps, bool) or planned_steps <= 0:
        planned_steps = last
    if last >= planned_steps:
        planned = _series_on_steps(steps, multipliers, planned_steps, "learning rates", where)
    else:
        logged = _series_on_steps(steps, multipliers, last, "learning rates", where)
        tail = logged[-1] * (planned_steps - np.arange(last + 1, planned_steps + 1)) / (planned_steps - last)
        planned = np.concatenate([logged, tail])
        warnings.warn(
            f"{where} logs learning rates up to step {last} of {planned_steps}: the rest of the planned schedule "
            "(for the calibration) is taken as a linear decay to 0; pass a log of the whole run for the exact one",
            RefinementWarning,
            stacklevel=2,
        )
    notes.append(f"past: learning rates of updates 1-{k} from {where} (planned run: {planned_steps} steps)")
    norms = None
    if not constant_norms:
        norm_log = log if grad_norms is None else load_grad_norms(grad_norms)
        norms = _log_norms(norm_log)
        notes.append(f"norms: {norm_log.describe()}")
    if path.is_dir() and not checkpoint_steps(path):
        warnings.warn(f"{path} has no checkpoint-* folder to resume from", RefinementWarning, stacklevel=2)
    return RunHistory(past, planned, norms, base_learning_rate, where, notes)
