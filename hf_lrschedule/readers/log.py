"""`GradNormLog`, what every reader returns, and `SourceFile`, what the dispatch hands a reader (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GradNormSourceError
from ..formats import read_json

#: The run's other logged series a source may carry, under the names the Trainer logs them with.
METRIC_NAMES = ("loss", "learning_rate", "eval_loss")


@dataclass(frozen=True)
class Series:
    """One logged metric: its optimizer steps (int) and values (float, NaN where the source had null)."""

    steps: np.ndarray
    values: np.ndarray

    def __post_init__(self):
        if self.steps.shape != self.values.shape:
            raise GradNormSourceError(f"a metric needs as many steps as values, got {self.steps.size} and {self.values.size}")


@dataclass
class GradNormLog:
    """Gradient norms as read from a source. `steps` are optimizer steps (1 = after the first update) if known.

    `source` names the file (or TensorBoard run folder) the norms come from, `kind` its format. `metrics` holds the
    run's other series where the source has them (``loss``, ``learning_rate``, ``eval_loss``: `METRIC_NAMES`), each
    on its own steps: `diagnose` reads the loss, `extend` the learning rates.
    """

    source: str
    l2: np.ndarray | None
    l1: np.ndarray | None = None
    steps: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    kind: str = ""
    metrics: dict[str, Series] = field(default_factory=dict)

    def describe(self) -> str:
        """One line: where the norms come from and how many there are (the CLI's ``source:`` line)."""
        values = self.l2 if self.l2 is not None else self.l1
        text = f"{self.source} ({self.kind or 'unknown format'}): {0 if values is None else len(values)} gradient norms"
        if self.steps is not None and self.steps.size:
            text += f", steps {int(self.steps[0])}-{int(self.steps[-1])}"
            if self.steps.size > 1 and (spacing := int(np.median(np.diff(self.steps)))) > 1:
                text += f" every {spacing}"
        total = self.meta.get("num_training_steps")
        if isinstance(total, int) and not isinstance(total, bool) and total > 0:
            text += f", from a run of {total} steps"
        return text

    def series(self, norm: str) -> np.ndarray:
        values = self.l2 if norm == "l2" else self.l1
        if values is None:
            other = "l1" if norm == "l2" else "l2"
            raise GradNormSourceError(
                f"{self.source} holds no {norm} gradient norms (only {other}); use norm={other!r}, or record "
                f"{norm} norms with GradNormRecorder (l1 is recorded for Adam-family optimizers)"
            )
        return values

    def positions(self) -> np.ndarray | None:
        """Training fraction of each entry when the log has gaps or skips steps (logged every k-th step).

        None for a log of one entry per step: refinement then counts the entries it keeps, so a step dropped as
        non-finite (an fp16 overflow, whose update was skipped) does not shift the schedule against the updates
        actually taken.
        """
        if self.steps is None or self.steps.size < 2:
            return None
        gaps = np.diff(self.steps)
        if np.any(gaps <= 0):
            raise GradNormSourceError(f"{self.source}: step numbers must increase strictly")
        if np.all(gaps == 1):
            return None
        spacing = float(np.median(gaps))
        start = float(self.steps[0])
        return (self.steps - start) / (float(self.steps[-1]) - start + spacing)


@dataclass(eq=False)
class SourceFile:
    """A file a reader may claim: its path, and its JSON parsed once on demand (None when it is not a .json)."""

    path: Path

    @property
    def where(self) -> str:
        return str(self.path)

    @cached_property
    def json(self) -> Any:
        return read_json(self.path) if self.path.suffix.lower() in (".json", ".jsonl") else None


def metric_series(pairs: list[tuple[int, float]]) -> Series:
    """A `Series` from (step, value) pairs in logging order; a step logged again (a resumed run) keeps its last value."""
    by_step = dict(pairs)
    steps = np.array(sorted(by_step), dtype=int)
    return Series(steps=steps, values=np.array([by_step[s] for s in steps], dtype=float))


def float_or_nan(value: Any, where: str) -> float:
    """A logged number; null becomes NaN (refinement drops it); anything else is an error naming `where`."""
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GradNormSourceError(f"{where}: expected a number or null, got {value!r}")
    return float(value)
