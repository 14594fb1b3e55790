"""`lr_scheduler_kwargs` of `linear_refined`: one dataclass, validated at construction, JSON round-trip."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from .refine import DEFAULT_GUARD, DEFAULT_MAX_NORM_RATIO, DEFAULT_SMOOTHING, check_options


def _number(value: Any, name: str) -> float:
    # transformers' `_convert_str_dict` leaves strings such as "1e-3" as they were typed on the command line.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"lr_scheduler_kwargs[{name!r}] must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"lr_scheduler_kwargs[{name!r}] must be a number, got {value!r}")
    return float(value)


@dataclass
class RefinedScheduleConfig:
    """Options of the `linear_refined` schedule, as given in `TrainingArguments.lr_scheduler_kwargs`."""

    grad_norms: str | list[float] | None = field(
        default=None,
        metadata={
            "help": "Gradient norms of an earlier run: a path to a recorder file (GradNormRecorder), a "
            "trainer_state.json, a W&B CSV export, or a list of floats. Without it (and without `schedule`) "
            "the schedule is plain linear decay."
        },
    )
    schedule: str | None = field(
        default=None,
        metadata={"help": "A schedule file written by `hf-lrschedule refine` or the pilot; used as is."},
    )
    norm: str = field(
        default="l2",
        metadata={"help": "'l2' (w = G^-2, SGD form; the default, also for AdamW) or 'l1' (w = G^-1, Adam form)."},
    )
    smoothing: float = field(default=DEFAULT_SMOOTHING, metadata={"help": "Median filter width, fraction of T."})
    guard: str = field(
        default=DEFAULT_GUARD,
        metadata={"help": "'clip' (norms within [m/R, m*R] of their median m), 'floor' ([m, m*R]) or 'none' (paper)."},
    )
    max_norm_ratio: float = field(default=DEFAULT_MAX_NORM_RATIO, metadata={"help": "R of the guard."})
    min_lr_ratio: float = field(default=0.0, metadata={"help": "Floor of the decay, a fraction of the base LR."})

    def __post_init__(self) -> None:
        if self.grad_norms is not None and self.schedule is not None:
            raise ValueError("give either `grad_norms` or `schedule` in lr_scheduler_kwargs, not both")
        if isinstance(self.grad_norms, os.PathLike):
            self.grad_norms = os.fspath(self.grad_norms)
        if isinstance(self.schedule, os.PathLike):
            self.schedule = os.fspath(self.schedule)
        if self.grad_norms is not None and not isinstance(self.grad_norms, (str, list, tuple)):
            raise TypeError(
                "lr_scheduler_kwargs['grad_norms'] must be a file path or a list of floats, "
                f"got {type(self.grad_norms).__name__}"
            )
        if isinstance(self.grad_norms, tuple):
            self.grad_norms = list(self.grad_norms)
        self.smoothing = _number(self.smoothing, "smoothing")
        self.max_norm_ratio = _number(self.max_norm_ratio, "max_norm_ratio")
        self.min_lr_ratio = _number(self.min_lr_ratio, "min_lr_ratio")
        check_options(self.norm, self.smoothing, self.guard, self.max_norm_ratio, 1)
        if not (0.0 <= self.min_lr_ratio < 1.0 and math.isfinite(self.min_lr_ratio)):
            raise ValueError(f"lr_scheduler_kwargs['min_lr_ratio'] must be in [0, 1), got {self.min_lr_ratio!r}")

    @classmethod
    def valid_keys(cls) -> list[str]:
        return sorted(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any] | None) -> RefinedScheduleConfig:
        """Build from `lr_scheduler_kwargs`; an unknown key is a `ValueError` that lists the valid ones."""
        kwargs = dict(kwargs or {})
        unknown = sorted(set(kwargs) - set(cls.valid_keys()))
        if unknown:
            raise ValueError(
                f"unknown lr_scheduler_kwargs for linear_refined: {', '.join(map(repr, unknown))}; "
                f"valid keys: {', '.join(cls.valid_keys())}"
            )
        return cls(**kwargs)

    def refine_options(self) -> dict[str, Any]:
        return {
            "norm": self.norm,
            "smoothing": self.smoothing,
            "guard": self.guard,
            "max_norm_ratio": self.max_norm_ratio,
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
