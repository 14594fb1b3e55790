"""Reading gradient-norm logs and schedule files, writing files atomically (stdlib + numpy; JSON/CSV only).

Supported gradient-norm sources:

* a recorder file written by :class:`hf_lrschedule.recording.GradNormRecorder` (JSON, ``format`` key below);
* a ``trainer_state.json`` of any transformers run (its ``log_history`` ``grad_norm`` entries: every
  ``logging_steps``; ``logging_steps=1`` gives the full series);
* a CSV with a ``Step`` column and a value column, such as a Weights & Biases export;
* a list of floats.

Nothing here unpickles or evaluates file content.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

GRAD_NORMS_FORMAT = "hf_lrschedule.grad_norms"
SCHEDULE_FORMAT = "hf_lrschedule.schedule"
FORMAT_VERSION = 1


class GradNormSourceError(ValueError):
    """A gradient-norm or schedule file that cannot be used; the message says what was expected."""


@dataclass
class GradNormLog:
    """Gradient norms as read from a source. `steps` are optimizer steps (1 = after the first update) if known."""

    source: str
    l2: np.ndarray | None
    l1: np.ndarray | None = None
    steps: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

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


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` through a temporary file in the same folder and `os.replace`: never a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    # allow_nan=False: non-finite values must be written as null by the caller, so every reader can parse them.
    return atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=True, allow_nan=False) + "\n")


def _open_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"gradient-norm file {str(path)!r} does not exist; expected a recorder JSON, a trainer_state.json "
            "or a CSV export"
        )
    if path.is_dir():
        hint = ""
        if (path / "trainer_state.json").is_file():
            hint = f"; did you mean {str(path / 'trainer_state.json')!r}?"
        raise IsADirectoryError(f"{str(path)!r} is a directory, expected a file{hint}")
    if path.stat().st_size == 0:
        raise GradNormSourceError(f"{str(path)!r} is empty; expected gradient norms (JSON or CSV)")
    return path


def _float_or_nan(value: Any, where: str) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GradNormSourceError(f"{where}: expected a number or null, got {value!r}")
    return float(value)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise GradNormSourceError(f"{str(path)!r} is not a text file; expected JSON or CSV") from None
    except json.JSONDecodeError as error:
        raise GradNormSourceError(
            f"{str(path)!r} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
            "was the file truncated?"
        ) from None


def _recorder_log(path: Path, data: dict[str, Any]) -> GradNormLog:
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise GradNormSourceError(
            f"{str(path)!r} has format_version {version!r}; this version of hf_lrschedule reads {FORMAT_VERSION}"
        )
    steps = data.get("steps")
    l2 = data.get("l2")
    if not isinstance(steps, list) or not isinstance(l2, list) or len(steps) != len(l2):
        raise GradNormSourceError(f"{str(path)!r}: expected lists 'steps' and 'l2' of the same length")
    l1 = data.get("l1")
    if l1 is not None and (not isinstance(l1, list) or len(l1) != len(l2)):
        raise GradNormSourceError(f"{str(path)!r}: 'l1' must be null or a list as long as 'l2'")
    where = str(path)
    return GradNormLog(
        source=where,
        l2=np.array([_float_or_nan(v, f"{where} l2[{i}]") for i, v in enumerate(l2)]),
        l1=None if l1 is None else np.array([_float_or_nan(v, f"{where} l1[{i}]") for i, v in enumerate(l1)]),
        steps=np.array([int(_float_or_nan(s, f"{where} steps[{i}]")) for i, s in enumerate(steps)]),
        meta=dict(data.get("meta") or {}),
    )


def _trainer_state_log(path: Path, data: dict[str, Any]) -> GradNormLog:
    entries = [e for e in data.get("log_history") or [] if isinstance(e, dict) and "grad_norm" in e]
    if not entries:
        raise GradNormSourceError(
            f"{str(path)!r} has no 'grad_norm' entries in its log_history; train with logging_steps=1 (or attach "
            "GradNormRecorderCallback) so the gradient norm is logged"
        )
    where = str(path)
    steps = np.array([int(e.get("step", i + 1)) for i, e in enumerate(entries)])
    values = np.array([_float_or_nan(e["grad_norm"], f"{where} step {s}") for e, s in zip(entries, steps)])
    meta = {"num_training_steps": data.get("max_steps"), "logging_steps": data.get("logging_steps")}
    return GradNormLog(source=where, l2=values, steps=steps, meta=meta)


def _csv_log(path: Path) -> GradNormLog:
    where = str(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except UnicodeDecodeError:
        raise GradNormSourceError(f"{where!r} is not a text file; expected a CSV export") from None
    if len(rows) < 2:
        raise GradNormSourceError(f"{where!r} has no data rows; expected a header and one row per logged step")
    header = [h.strip() for h in rows[0]]
    lowered = [h.lower() for h in header]
    step_col = lowered.index("step") if "step" in lowered else None
    value_cols = [i for i, h in enumerate(lowered) if i != step_col and not h.endswith(("__min", "__max"))]
    if not value_cols:
        raise GradNormSourceError(f"{where!r}: no value column next to the step column in header {header}")
    value_col = value_cols[0]
    steps, values = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            cell = row[value_col].strip()
            values.append(float(cell) if cell else float("nan"))
            if step_col is not None:
                steps.append(int(float(row[step_col])))
        except (ValueError, IndexError):
            shown = row[value_col] if value_col < len(row) else "<missing>"
            raise GradNormSourceError(
                f"{where!r} line {line}: column {header[value_col]!r} must hold a number, got {shown!r}"
            ) from None
    name = header[value_col].lower()
    norm_hint = "l1" if "l1" in name else None
    return GradNormLog(
        source=where,
        l2=np.array(values),
        steps=np.array(steps) if step_col is not None else None,
        meta={"column": header[value_col], "norm_hint": norm_hint},
    )


def load_grad_norms(source: str | os.PathLike | Sequence[float]) -> GradNormLog:
    """Read gradient norms from any supported source (see the module docstring)."""
    if not isinstance(source, (str, os.PathLike)):
        values = np.asarray(source, dtype=object)
        return GradNormLog(source="<list>", l2=values, l1=values)
    path = _open_file(source)
    suffix = path.suffix.lower()
    if suffix in (".json", ".jsonl"):
        data = _read_json(path)
        if isinstance(data, dict) and data.get("format") == GRAD_NORMS_FORMAT:
            return _recorder_log(path, data)
        if isinstance(data, dict) and "log_history" in data:
            return _trainer_state_log(path, data)
        if isinstance(data, dict) and data.get("format") == SCHEDULE_FORMAT:
            raise GradNormSourceError(
                f"{str(path)!r} is a schedule file, not gradient norms; pass it as lr_scheduler_kwargs['schedule']"
            )
        raise GradNormSourceError(
            f"{str(path)!r} is JSON but neither a recorder file (format {GRAD_NORMS_FORMAT!r}) nor a "
            "trainer_state.json (with 'log_history')"
        )
    if suffix in (".csv", ".tsv", ".txt"):
        return _csv_log(path)
    raise GradNormSourceError(
        f"unknown gradient-norm file type {suffix or '(no extension)'!r} for {str(path)!r}; expected .json "
        "(recorder file or trainer_state.json) or .csv (e.g. a W&B export)"
    )


def schedule_payload(multipliers: Sequence[float], *, num_training_steps: int, **info: Any) -> dict[str, Any]:
    """The JSON of a schedule file: `multipliers` at fractions ``k / T``, ``k = 0 .. T`` (the last is the end)."""
    return {
        "format": SCHEDULE_FORMAT,
        "format_version": FORMAT_VERSION,
        "num_training_steps": int(num_training_steps),
        "multipliers": [float(m) for m in multipliers],
        **info,
    }


def load_schedule(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a schedule file written by `hf-lrschedule refine` or the pilot."""
    file = _open_file(path)
    data = _read_json(file)
    if not isinstance(data, dict) or data.get("format") != SCHEDULE_FORMAT:
        raise GradNormSourceError(f"{str(file)!r} is not a schedule file (format {SCHEDULE_FORMAT!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise GradNormSourceError(f"{str(file)!r} has format_version {data.get('format_version')!r}, expected 1")
    multipliers = data.get("multipliers")
    if (
        not isinstance(multipliers, list)
        or len(multipliers) < 2
        or not all(isinstance(m, (int, float)) and not isinstance(m, bool) and 0.0 <= m <= 1.0 for m in multipliers)
    ):
        raise GradNormSourceError(f"{str(file)!r}: 'multipliers' must be a list of at least 2 numbers in [0, 1]")
    return data
