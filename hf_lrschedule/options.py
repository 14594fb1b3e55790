"""The refinement options: one frozen dataclass holds their names, defaults, checks and help text (no torch).

`refine_schedule`, `lr_scheduler_kwargs` of `linear_refined` (`RefinedScheduleConfig`), the CLI flags of
`hf-lrschedule refine` / `pilot`, the pilot and the benchmark all read `RefineOptions`: to add an option, add a field
here (with its check in `__post_init__`) and use it in `refine.refinement_details`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import OptionConflictError, RefineOptionError

NormKind = Literal["l1", "l2"]
GuardKind = Literal["clip", "floor", "none"]
NORM_KINDS = ("l2", "l1")
GUARD_KINDS = ("clip", "floor", "none")


@dataclass(frozen=True)
class RefineOptions:
    """How gradient norms become a schedule (docs/method.md).

    Numbers may be given as strings ("0.1"): transformers passes `--lr_scheduler_kwargs` values as typed.

    Examples:
        >>> RefineOptions()
        RefineOptions(norm='l2', smoothing=0.1, guard='floor', max_norm_ratio=2.0, tolerance=2.0)
        >>> RefineOptions(smoothing="0.05").smoothing
        0.05
    """

    norm: NormKind = field(
        default="l2",
        metadata={
            "help": "'l2': w = G^-2 (SGD form; the default, also for AdamW) or 'l1': w = G^-1 (the paper's Adam form, "
            "needs l1 norms)",
            "choices": NORM_KINDS,
        },
    )
    smoothing: float = field(
        default=0.1, metadata={"help": "tau: the median filter's width as a fraction of training (0 disables it)"}
    )
    # Default "floor": low norms never raise the LR above linear's shape (docs/design.md, "The floor guard").
    guard: GuardKind = field(
        default="floor",
        metadata={
            "help": "'floor': smoothed norms kept within [m, m*R] of their median m (low norms never raise the LR); "
            "'clip': within [m/R, m*R]; 'none': the paper's bare formula",
            "choices": GUARD_KINDS,
        },
    )
    max_norm_ratio: float = field(
        default=2.0, metadata={"help": "R of the guard (1 = linear decay, larger = closer to the paper)"}
    )
    # Default 2: chosen on the dev tasks only (docs/design.md, "Tolerance 2").
    tolerance: float = field(
        default=2.0,
        metadata={
            "help": "norms within this factor of their median count as the median (noise, not shape): the schedule "
            "is exactly linear decay unless the smoothed norms leave [m/tol, m*tol]; beyond it, the excess ratio "
            "shapes the schedule (1 = off)"
        },
    )

    def __post_init__(self) -> None:
        for name in ("smoothing", "max_norm_ratio", "tolerance"):
            object.__setattr__(self, name, _number(getattr(self, name), name))
        if self.norm not in NORM_KINDS:
            raise RefineOptionError("norm", f"norm must be 'l2' (w = G^-2, SGD form) or 'l1' (w = G^-1, Adam form), got {self.norm!r}")
        if not 0.0 <= self.smoothing <= 1.0:
            raise RefineOptionError(
                "smoothing", f"smoothing must be a number in [0, 1] (a fraction of training), got {self.smoothing!r}"
            )
        if self.guard not in GUARD_KINDS:
            raise RefineOptionError(
                "guard",
                "guard must be 'clip' (norms kept within [m/R, m*R] of their median m), 'floor' ([m, m*R]) or "
                f"'none' (the paper's bare formula), got {self.guard!r}"
            )
        if not (self.max_norm_ratio >= 1.0 and math.isfinite(self.max_norm_ratio)):
            raise RefineOptionError(
                "max_norm_ratio", f"max_norm_ratio must be a finite number >= 1, got {self.max_norm_ratio!r}"
            )

        if not (self.tolerance >= 1.0 and math.isfinite(self.tolerance)):
            raise RefineOptionError("tolerance", f"tolerance must be a finite number >= 1, got {self.tolerance!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> RefineOptions:
        """The options named in `mapping` (other keys are ignored), defaults for the rest."""
        return cls(**{name: mapping[name] for name in cls.names() if name in mapping})

    def to_dict(self) -> dict[str, Any]:
        """As written into schedule files and manifests (`settings`)."""
        return dataclasses.asdict(self)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, *, with_defaults: bool = True) -> None:
        """Add one `--flag` per option (`max_norm_ratio` -> `--max-norm-ratio`), typed and documented from the fields.

        `with_defaults=False`: a flag not given is absent from the parsed namespace (`given_arguments` then tells
        what the user set, to merge with the options of another source)."""
        for option in dataclasses.fields(cls):
            choices = option.metadata.get("choices")
            parser.add_argument(
                f"--{option.name.replace('_', '-')}",
                choices=choices,
                type=None if choices else float,
                default=option.default if with_defaults else argparse.SUPPRESS,
                help=f"{option.metadata['help']} (default: {option.default})"
                if with_defaults
                else f"{option.metadata['help']} (default: the command's lr_scheduler_kwargs, else {option.default})",
            )

    @classmethod
    def from_arguments(cls, namespace: argparse.Namespace) -> RefineOptions:
        return cls(**cls.given_arguments(namespace))

    @classmethod
    def given_arguments(cls, namespace: argparse.Namespace) -> dict[str, Any]:
        """The options present in `namespace` (all of them unless added with `with_defaults=False`)."""
        return {name: getattr(namespace, name) for name in cls.names() if hasattr(namespace, name)}


def merge_options(*sources: tuple[str, Mapping[str, Any] | None]) -> RefineOptions:
    """One `RefineOptions` from options given in several places, defaults for the rest.

    Each source is ``(where, mapping)``; keys that are not refinement options are ignored (`lr_scheduler_kwargs`
    also holds `grad_norms`, `min_lr_ratio`, ...). An option given in two places with different values (after
    parsing: ``"1"`` and ``1.0`` agree) is an `OptionConflictError` that names both; a bad value is a
    `RefineOptionError` that says where it was given.

    Examples:
        >>> merge_options(("--tolerance", {"tolerance": 1.0}), ("lr_scheduler_kwargs", {"tolerance": "1"})).tolerance
        1.0
    """
    chosen: dict[str, tuple[Any, str]] = {}
    for where, mapping in sources:
        given = {name: mapping[name] for name in RefineOptions.names() if name in (mapping or {})}
        try:
            parsed = RefineOptions(**given)
        except RefineOptionError as error:
            raise RefineOptionError(error.option, f"{where}: {error}") from None
        for name in given:
            value = getattr(parsed, name)
            if name in chosen and chosen[name][0] != value:
                earlier, at = chosen[name]
                raise OptionConflictError(
                    f"the refinement option {name!r} is given twice with different values: {earlier!r} ({at}) and "
                    f"{value!r} ({where}); give it in one place, or the same value in both"
                )
            chosen.setdefault(name, (value, where))
    return RefineOptions(**{name: value for name, (value, _) in chosen.items()})


def _number(value: Any, name: str) -> float:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise RefineOptionError(name, f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RefineOptionError(name, f"{name} must be a number, got {value!r}")
    return float(value)
