"""`HealthMonitor`: the per-log part of the health checks, incremental, for the live
`hf_lrschedule.integrations.health.HealthCallback` (numpy only). Its thresholds are `hf_lrschedule.health`'s."""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from .health import EXPLOSION_ACT, LIVE_WINDOW, SPIKE_Z_ACT, _noise

__all__ = ["HealthMonitor"]


class HealthMonitor:
    """The per-step checks on a window of recent logged values: O(window) per update, no history kept.

    `update` returns the health scalars of this log (``loss_z``, ``grad_norm_ratio``, counts of events so far) and
    the kinds of event seen for the first time (``"loss_spike"``, ``"non_finite_norm"``, ``"norm_explosion"``), each
    at most once per monitor. The thresholds are the `act` ones of `diagnose` (the `watch` ones for non-finite
    norms), so a live warning means what a `diagnose` `act` means.

    Examples:
        >>> monitor = HealthMonitor()
        >>> for step in range(1, 31):
        ...     _ = monitor.update(step, loss=2.0 + 0.01 * (step % 3), grad_norm=1.0 + 0.01 * (step % 2))
        >>> monitor.update(31, loss=9.0, grad_norm=1.0)[1]
        ['loss_spike']
        >>> monitor.update(32, loss=2.0, grad_norm=float("inf"))[1]
        ['non_finite_norm']
    """

    def __init__(self, window: int = LIVE_WINDOW, min_history: int = 10):
        self.losses: deque[float] = deque(maxlen=window)
        self.norms: deque[float] = deque(maxlen=window)
        self.min_history = min_history
        self.counts = {"loss_spike": 0, "non_finite_norm": 0, "norm_explosion": 0}
        self.warned: set[str] = set()

    def update(self, step: int, *, loss: float | None = None, grad_norm: float | None = None
               ) -> tuple[dict[str, float], list[str]]:
        scalars: dict[str, float] = {}
        events: list[str] = []
        if loss is not None:
            if not math.isfinite(loss):
                events.append("loss_spike")
                scalars["loss_z"] = math.inf
            else:
                if len(self.losses) >= self.min_history:
                    history = np.fromiter(self.losses, float)
                    middle = float(np.median(history))
                    z = (loss - middle) / _noise(history, floor=1e-3 * max(abs(middle), 1e-12))
                    scalars["loss_z"] = z
                    if z >= SPIKE_Z_ACT:
                        events.append("loss_spike")
                self.losses.append(loss)
        if grad_norm is not None:
            if not math.isfinite(grad_norm):
                events.append("non_finite_norm")
            else:
                if len(self.norms) >= self.min_history:
                    middle = float(np.median(np.fromiter(self.norms, float)))
                    ratio = grad_norm / middle if middle > 0 else math.inf
                    scalars["grad_norm_ratio"] = ratio
                    if ratio >= EXPLOSION_ACT:
                        events.append("norm_explosion")
                self.norms.append(grad_norm)
        for kind in events:
            self.counts[kind] += 1
        scalars.update({f"{kind}s": float(count) for kind, count in self.counts.items()})
        new = [kind for kind in events if kind not in self.warned]
        self.warned.update(new)
        return scalars, new
