"""The last-iterate bound of a learning-rate schedule, in O(T) (numpy only).

For convex f, ``D = ||x_1 - x_*||``, learning rates ``eta_1 .. eta_T`` and per-step gradient norms ``G_t``, the bound
of Defazio et al. (arXiv 2310.07831, Theorem 10; Schaipp et al., arXiv 2501.18965, Theorem 1) is, with
``S_k = sum_{t=k..T} eta_t``:

```
f(x_T) - f_* <= D^2 / (2 S_1) + sum_t G_t^2 eta_t^2 / (2 S_1)
                + (1/2) sum_{k=1..T-1} (1/S_{k+1} - 1/S_k) * sum_{t=k..T} G_t^2 eta_t^2
```

Summing the last term by parts gives the form computed here, one cumulative sum:

```
B = D^2 / (2 S_1) + (1/2) sum_{t=1..T-1} G_t^2 eta_t^2 / S_{t+1} + (1/2) G_T^2 eta_T
```

Conventions (docs/how-to/continue.md, "The bound"):

* ``eta_t`` is the learning rate of optimizer update ``t`` (the multiplier a schedule gives at step ``t - 1``, as
  `LambdaLR` counts): a ``T``-step run has ``T`` values. The end point of a schedule file (its entry ``T``, 0) is
  no update and is not part of them. The last value weighs the last gradient only (``G_T^2 eta_T / 2``).
* Trailing updates with learning rate 0 are dropped: they do not move the weights, so the run ends at its last
  update with a positive learning rate. (The formula itself has ``1 / S_{k+1} = 1 / 0`` there; a positive last
  rate that tends to 0 makes the bound grow without limit, an exact 0 removes the step.) Zeros before a positive
  rate (a warmup from 0) are kept.

Scaling a schedule by ``c`` gives ``B(c) = D^2 a / c + b c`` (`BoundTerms`): the bound-optimal base learning rate
of a schedule is ``D sqrt(a / b)``, and the ratio between two schedules or horizons needs no ``D``, nor the scale
of ``G`` when both use the same norm profile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BoundTerms", "bound_terms", "last_iterate_bound", "last_iterate_bound_and_gradient"]


def check_rates(learning_rates: Sequence[float] | np.ndarray, name: str = "learning_rates") -> np.ndarray:
    rates = np.asarray(learning_rates, dtype=np.float64)
    if rates.ndim != 1 or rates.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence (one value per optimizer update), got shape {rates.shape}")
    if not np.all(np.isfinite(rates)) or np.any(rates < 0):
        raise ValueError(f"{name} must be finite and >= 0 (learning rates or multipliers of each update)")
    return rates


def _squared_norms(grad_norms: Sequence[float] | np.ndarray | None, size: int) -> np.ndarray:
    if grad_norms is None:
        return np.ones(size)
    norms = np.asarray(grad_norms, dtype=np.float64)
    if norms.shape != (size,):
        raise ValueError(
            f"grad_norms must hold one norm per update ({size}), got shape {norms.shape}; resample a log with "
            "hf_lrschedule.transfer.norm_profile"
        )
    if not np.all(np.isfinite(norms)) or np.any(norms <= 0):
        raise ValueError("grad_norms must be finite and > 0 (drop or repair NaN/inf/0 entries first)")
    return norms**2


def drop_trailing_zeros(rates: np.ndarray) -> np.ndarray:
    positive = np.flatnonzero(rates > 0)
    if positive.size == 0:
        raise ValueError("every learning rate is 0: the weights never move, the bound is undefined")
    return rates[: positive[-1] + 1]


def last_iterate_bound_and_gradient(
    learning_rates: np.ndarray, squared_norms: np.ndarray, half_squared_distance: float
) -> tuple[float, np.ndarray]:
    """The bound ``B`` and its gradient in each learning rate, for rates whose last entry is positive.

    `squared_norms` holds ``G_t^2``, `half_squared_distance` is ``D^2 / 2``. No checks: this is the inner loop of
    `hf_lrschedule.continuation.continue_schedule`. The gradient, with ``q_t = G_t^2 eta_t^2``:

    ```
    dB/d eta_j = -D^2 / (2 S_1^2) + G_j^2 eta_j / S_{j+1} [j < T] + G_T^2 / 2 [j = T]
                 - (1/2) sum_{t < j} q_t / S_{t+1}^2
    ```
    """
    tails = np.cumsum(learning_rates[::-1])[::-1]  # tails[i] = S_{i+1}, 0-based i
    following = tails[1:]  # S_{t+1} for t = 1 .. T-1
    weighted = squared_norms * learning_rates**2
    value = (
        half_squared_distance / tails[0]
        + 0.5 * float(np.sum(weighted[:-1] / following))
        + 0.5 * squared_norms[-1] * learning_rates[-1]
    )
    gradient = np.full(learning_rates.size, -half_squared_distance / tails[0] ** 2)
    gradient[:-1] += squared_norms[:-1] * learning_rates[:-1] / following
    gradient[-1] += 0.5 * squared_norms[-1]
    gradient[1:] -= 0.5 * np.cumsum(weighted[:-1] / following**2)
    return float(value), gradient


def last_iterate_bound(
    learning_rates: Sequence[float] | np.ndarray,
    grad_norms: Sequence[float] | np.ndarray | None = None,
    *,
    distance: float = 1.0,
) -> float:
    """The last-iterate bound of a run with these learning rates (see the module docstring), in O(T).

    Args:
        learning_rates (`Sequence[float]`):
            ``eta_1 .. eta_T``, the learning rate (or multiplier) of each optimizer update, >= 0.
        grad_norms (`Sequence[float]`, *optional*):
            ``G_1 .. G_T``, one per update; constant 1 when not given.
        distance (`float`, *optional*, defaults to 1.0):
            ``D = ||x_1 - x_*||``.

    Returns:
        `float`: the bound on ``f(x_T) - f_*``.

    Examples:
        >>> last_iterate_bound([1.0])  # D^2 / (2 eta) + G^2 eta / 2
        1.0
        >>> last_iterate_bound([1.0, 1.0])  # 1/4 + 2/4 + (1/2)(1/1 - 1/2) * 2
        1.25
        >>> last_iterate_bound([1.0, 1.0, 0.0]) == last_iterate_bound([1.0, 1.0])  # a trailing 0 is no update
        True
    """
    rates = drop_trailing_zeros(check_rates(learning_rates))
    squared = _squared_norms(grad_norms, np.asarray(learning_rates).size)[: rates.size]
    if not (math.isfinite(distance) and distance > 0):
        raise ValueError(f"distance must be a positive number, got {distance=}")
    return last_iterate_bound_and_gradient(rates, squared, 0.5 * distance**2)[0]


@dataclass(frozen=True)
class BoundTerms:
    """The bound of a schedule scaled by ``c`` (its base learning rate): ``B(c) = D^2 * distance_term / c +
    noise_term * c``.

    ``distance_term = 1 / (2 S_1)`` of the multipliers; ``noise_term`` is the rest of the bound at ``c = 1`` and
    carries the scale of ``G^2``.
    """

    distance_term: float
    noise_term: float

    def value(self, base_lr: float, distance: float = 1.0) -> float:
        """``B(c)`` at ``c = base_lr``."""
        return distance**2 * self.distance_term / base_lr + self.noise_term * base_lr

    def optimal_base_lr(self, distance: float = 1.0) -> float:
        """``D sqrt(a / b)``, the base learning rate that minimises ``B`` (where ``B`` is ``2 D sqrt(a b)``)."""
        return distance * math.sqrt(self.distance_term / self.noise_term)


def bound_terms(multipliers: Sequence[float] | np.ndarray, grad_norms: Sequence[float] | np.ndarray | None = None) -> BoundTerms:
    """Split the bound of a schedule into its `BoundTerms` (``a``, ``b``), for base-LR questions.

    Args:
        multipliers (`Sequence[float]`):
            The schedule's multiplier of each optimizer update (``T`` values; see the module docstring).
        grad_norms (`Sequence[float]`, *optional*):
            One norm per update; constant when not given.

    Examples:
        >>> terms = bound_terms([1.0, 1.0])  # S_1 = 2: a = 1/4; b = 2/4 + 1/2
        >>> terms
        BoundTerms(distance_term=0.25, noise_term=1.0)
        >>> terms.optimal_base_lr()
        0.5
    """
    rates = drop_trailing_zeros(check_rates(multipliers, "multipliers"))
    squared = _squared_norms(grad_norms, np.asarray(multipliers).size)[: rates.size]
    noise = last_iterate_bound_and_gradient(rates, squared, 0.0)[0]
    return BoundTerms(distance_term=0.5 / float(rates.sum()), noise_term=noise)
