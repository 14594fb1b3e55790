"""Per-step gradient-norm recording: a plain object, saved as versioned JSON (no torch here).

Adapters that feed it live in `integrations/` (a `TrainerCallback` and an accelerate helper).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from .formats import FORMAT_VERSION, GRAD_NORMS_FORMAT, atomic_write_json

ADAM_FAMILY = ("adam", "adafactor", "lamb", "lion", "came", "schedulefree")


def optimizer_family(class_name: str) -> str:
    """'adam' for coordinate-wise methods (Adam, AdamW, Adafactor, Lion, ...), 'sgd' for SGD, else 'other'."""
    name = class_name.lower()
    if any(key in name for key in ADAM_FAMILY):
        return "adam"
    if "sgd" in name:
        return "sgd"
    return "other"


class GradNormRecorder:
    """Collects the pre-clip gradient norm of every optimizer step; `save()` writes it atomically as JSON.

    Step ``s`` is the ``s``-th optimizer update (1-based, like ``TrainerState.global_step`` after the update).
    Non-finite norms (fp16 overflow: the update was skipped) are kept, as ``null`` with their step listed in
    ``nonfinite_steps``; refinement drops them. `record_metric` keeps the run's other logged series (loss, learning
    rate, eval loss) beside the norms, on their own steps, for `hf-lrschedule diagnose` and `extend`.
    """

    def __init__(self, path: str | os.PathLike | None = None, meta: dict[str, Any] | None = None):
        self.path = Path(path) if path is not None else None
        self.meta: dict[str, Any] = dict(meta or {})
        self.steps: list[int] = []
        self.l2: list[float] = []
        self.l1: list[float | None] = []
        self.metrics: dict[str, dict[int, float]] = {}

    def record(self, step: int, l2: float, l1: float | None = None) -> None:
        """Record step `step`; a step recorded again (after a resume) replaces the later records."""
        if self.steps and step <= self.steps[-1]:
            self.truncate(step - 1)
        self.steps.append(int(step))
        self.l2.append(float(l2))
        self.l1.append(None if l1 is None else float(l1))

    def record_metric(self, name: str, step: int, value: float) -> None:
        """Record another logged value (``loss``, ``learning_rate``, ...) of step `step`; a repeat replaces it."""
        self.metrics.setdefault(name, {})[int(step)] = float(value)

    def truncate(self, last_step: int) -> None:
        """Forget records after `last_step` (a resumed run replays them)."""
        keep = sum(1 for s in self.steps if s <= last_step)
        del self.steps[keep:], self.l2[keep:], self.l1[keep:]
        for values in self.metrics.values():
            for step in [s for s in values if s > last_step]:
                del values[step]

    def __len__(self) -> int:
        return len(self.steps)

    def state_dict(self) -> dict[str, Any]:
        finite = [v if math.isfinite(v) else None for v in self.l2]
        has_l1 = any(v is not None for v in self.l1)
        return {
            "format": GRAD_NORMS_FORMAT,
            "format_version": FORMAT_VERSION,
            "meta": dict(self.meta),
            "steps": list(self.steps),
            "l2": finite,
            "l1": [v if v is not None and math.isfinite(v) else None for v in self.l1] if has_l1 else None,
            "nonfinite_steps": [s for s, v in zip(self.steps, self.l2) if not math.isfinite(v)],
            "metrics": {
                name: {"steps": sorted(values), "values": [_finite_or_none(values[s]) for s in sorted(values)]}
                for name, values in self.metrics.items()
                if values
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.meta = dict(state.get("meta") or {})
        self.steps = [int(s) for s in state["steps"]]
        self.l2 = [float("nan") if v is None else float(v) for v in state["l2"]]
        l1 = state.get("l1") or [None] * len(self.steps)
        self.l1 = [None if v is None else float(v) for v in l1]
        self.metrics = {
            name: {int(s): float("nan") if v is None else float(v) for s, v in zip(series["steps"], series["values"])}
            for name, series in (state.get("metrics") or {}).items()
        }

    def save(self, path: str | os.PathLike | None = None) -> Path:
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("GradNormRecorder.save() needs a path (none was given at construction)")
        return atomic_write_json(target, self.state_dict())


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
