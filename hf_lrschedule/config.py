"""`lr_scheduler_kwargs` of `linear_refined`: where the norms come from, plus the `RefineOptions` (flat keys)."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

from .options import RefineOptionError, RefineOptions


@dataclass(frozen=True)
class RefinedScheduleConfig:
    """Options of the `linear_refined` schedule, as given in `TrainingArguments.lr_scheduler_kwargs`.

    The keys are the fields below plus those of `RefineOptions` (`norm`, `smoothing`, `guard`, `max_norm_ratio`,
    `tolerance`),
    side by side as transformers passes them; `options` holds the latter.

    Examples:
        >>> config = RefinedScheduleConfig.from_kwargs({"grad_norms": "grad_norms.json", "guard": "clip"})
        >>> config.options.guard, config.min_lr_ratio
        ('clip', 0.0)
    """

    grad_norms: str | list[float] | None = field(
        default=None,
        metadata={
            "help": "Gradient norms of an earlier run: a path to a recorder file (GradNormRecorder), a "
            "trainer_state.json, a W&B CSV export, TensorBoard event files, a Trainer output directory (searched for "
            "these), or a list of floats. Without it (and without `schedule`) the schedule is plain linear decay."
        },
    )
    schedule: str | None = field(
        default=None,
        metadata={"help": "A schedule file written by `hf-lrschedule refine` or the pilot; used as is."},
    )
    min_lr_ratio: float = field(default=0.0, metadata={"help": "Floor of the decay, a fraction of the base LR."})
    options: RefineOptions = field(default_factory=RefineOptions)

    def __post_init__(self) -> None:
        if self.grad_norms is not None and self.schedule is not None:
            raise ValueError("give either `grad_norms` or `schedule` in lr_scheduler_kwargs, not both")
        for name in ("grad_norms", "schedule"):
            if isinstance(getattr(self, name), os.PathLike):
                object.__setattr__(self, name, os.fspath(getattr(self, name)))
        if self.grad_norms is not None and not isinstance(self.grad_norms, (str, list, tuple)):
            raise TypeError(
                "lr_scheduler_kwargs['grad_norms'] must be a file path or a list of floats, "
                f"got {type(self.grad_norms).__name__}"
            )
        if isinstance(self.grad_norms, tuple):
            object.__setattr__(self, "grad_norms", list(self.grad_norms))
        ratio = self.min_lr_ratio
        if isinstance(ratio, str):  # transformers leaves "0.1" from a command line as a string
            try:
                ratio = float(ratio)
            except ValueError:
                pass
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not (0.0 <= ratio < 1.0 and math.isfinite(ratio)):
            raise ValueError(f"lr_scheduler_kwargs['min_lr_ratio'] must be in [0, 1), got {self.min_lr_ratio!r}")
        object.__setattr__(self, "min_lr_ratio", float(ratio))

    @classmethod
    def valid_keys(cls) -> list[str]:
        own = [f.name for f in dataclasses.fields(cls) if f.name != "options"]
        return sorted(own + list(RefineOptions.names()))

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any] | None) -> RefinedScheduleConfig:
        """Build from `lr_scheduler_kwargs`; an unknown key or a bad value is a `ValueError` that says which."""
        kwargs = dict(kwargs or {})
        unknown = sorted(set(kwargs) - set(cls.valid_keys()))
        if unknown:
            raise ValueError(
                f"unknown lr_scheduler_kwargs for linear_refined: {', '.join(map(repr, unknown))}; "
                f"valid keys: {', '.join(cls.valid_keys())}"
            )
        try:
            options = RefineOptions.from_mapping(kwargs)
        except RefineOptionError as error:
            raise ValueError(f"lr_scheduler_kwargs[{error.option!r}]: {error}") from None
        own = {key: value for key, value in kwargs.items() if key not in RefineOptions.names()}
        return cls(**own, options=options)

    def replace(self, **changes: Any) -> RefinedScheduleConfig:
        return dataclasses.replace(self, **changes)
