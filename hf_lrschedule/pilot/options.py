"""`PilotOptions`: the pilot's own settings, declared once (the CLI flags and `run_pilot`'s arguments read them)."""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field

from ..errors import PilotError

#: Fewest optimizer steps a pilot may have: fewer leave the median filter and the warmup estimate nothing to use.
MIN_PILOT_STEPS = 10


@dataclass(frozen=True)
class PilotOptions:
    """How a pilot runs (the refinement options are `RefineOptions`, merged with the run's `lr_scheduler_kwargs`).

    The pilot runs the first ``ceil(fraction * T)`` optimizer steps of the real run (linear decay over ``T``, the
    user's warmup kept); its norms fill fractions ``[0, fraction)`` of the profile and the rest holds the median of
    its last quarter, so the refined schedule is a data-driven start followed by linear decay.

    Examples:
        >>> PilotOptions(fraction=0.25).pilot_steps(40)
        10
    """

    fraction: float = field(default=0.1, metadata={"help": "share of the optimizer steps the pilot runs"})
    out: str | None = field(
        default=None, metadata={"help": "pilot folder (default: ./hf_lrschedule_pilot/<hash of command and settings>)"}
    )
    pilot_only: bool = field(default=False, metadata={"help": "stop after the pilot and the schedule"})
    force: bool = field(default=False, metadata={"help": "redo the pilot even if a matching one exists"})

    def __post_init__(self) -> None:
        if isinstance(self.fraction, bool) or not isinstance(self.fraction, (int, float)) or not 0.0 < self.fraction <= 1.0:
            raise PilotError(f"--fraction must be a number in (0, 1], got {self.fraction!r}")
        object.__setattr__(self, "fraction", float(self.fraction))

    def pilot_steps(self, num_training_steps: int) -> int:
        """Optimizer steps of the pilot for a full run of `num_training_steps`; a clear error if too few."""
        steps = math.ceil(self.fraction * num_training_steps)
        if steps < MIN_PILOT_STEPS:
            smallest = MIN_PILOT_STEPS / num_training_steps
            raise PilotError(
                f"--fraction {self.fraction:g} gives a pilot of {steps} optimizer steps for a run of "
                f"{num_training_steps}; refinement needs at least {MIN_PILOT_STEPS}: use --fraction "
                f"{math.ceil(smallest * 1000) / 1000:g} or more"
            )
        return min(steps, num_training_steps)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One `--flag` per field (`pilot_only` -> `--pilot-only`), typed and documented from the fields."""
        for option in dataclasses.fields(cls):
            flag, help_text = f"--{option.name.replace('_', '-')}", option.metadata["help"]
            if option.type in (bool, "bool"):
                parser.add_argument(flag, action="store_true", help=help_text)
            else:
                kind = float if option.type in (float, "float") else str
                parser.add_argument(flag, type=kind, default=option.default, help=f"{help_text} (default: {option.default})")

    @classmethod
    def from_arguments(cls, namespace: argparse.Namespace) -> PilotOptions:
        return cls(**{option.name: getattr(namespace, option.name) for option in dataclasses.fields(cls)})
