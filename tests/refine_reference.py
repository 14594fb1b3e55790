"""Readable reference of the refinement, one loop per step of the method; `refine.py` is the fast version.

Kept for the equivalence test (tests/test_refine.py) and for readers checking the method against the paper.
"""

from __future__ import annotations

import statistics


def refine_schedule_reference(
    grad_norms: list[float],
    num_training_steps: int,
    *,
    norm: str = "l2",
    smoothing: float = 0.1,
    guard: str = "floor",
    max_norm_ratio: float = 2.0,
    tolerance: float = 2.0,
) -> list[float]:
    """Same contract as `hf_lrschedule.refine_schedule` for clean input (finite, positive norms)."""
    T = num_training_steps
    N = len(grad_norms)

    # 1. Resample: the new run's point t sits at fraction t / T; logged value i sits at fraction i / N.
    resampled = []
    for t in range(T + 1):
        x = t / T * N  # position in units of logged values
        if x >= N - 1:
            resampled.append(grad_norms[-1])
        else:
            i = int(x)
            resampled.append(grad_norms[i] + (grad_norms[i + 1] - grad_norms[i]) * (x - i))

    # 2. Median filter of odd width, end padded by reflection (2 widths), "nearest" at the start.
    width = 2 * (int(smoothing * T) // 2) + 1
    padded = list(resampled)
    direction, j = -1, len(resampled) - 1
    for _ in range(2 * width):  # reflect back and forth without repeating the edge value
        if len(resampled) == 1:
            padded.append(resampled[0])
            continue
        if not 0 <= j + direction < len(resampled):
            direction = -direction
        j += direction
        padded.append(resampled[j])
    half = width // 2
    smoothed = []
    for t in range(T + 1):
        window = [padded[min(max(k, 0), len(padded) - 1)] for k in range(t - half, t + half + 1)]
        smoothed.append(statistics.median(window))

    # 3. Guard: a ratio r = g / m within [1/tol, tol] of the median m becomes 1, beyond it only the excess is kept
    #    (r / tol above, r * tol below); then clip to [m / R, m * R] ("clip") or [m, m * R] ("floor").
    if guard in ("clip", "floor"):
        m = statistics.median(smoothed)
        if tolerance > 1.0:
            banded = []
            for g in smoothed:
                r = g / m
                if r > tolerance:
                    r = r / tolerance
                elif r < 1 / tolerance:
                    r = r * tolerance
                else:
                    r = 1.0
                banded.append(m * r)
            smoothed = banded
        low = m if guard == "floor" else m / max_norm_ratio
        smoothed = [min(max(g, low), m * max_norm_ratio) for g in smoothed]

    # 4. Weights, 5. eta_t = w_t * sum_{p > t} w_p, normalised to peak 1.
    power = 2.0 if norm == "l2" else 1.0
    w = [g**-power for g in smoothed]
    eta = [w[t] * sum(w[t + 1 :]) for t in range(T + 1)]
    peak = max(eta[:T])
    return [e / peak for e in eta[:T]]
