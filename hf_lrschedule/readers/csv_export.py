"""Reader of a CSV with a ``Step`` column and a value column, such as a Weights & Biases export."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import GradNormSourceError
from .log import GradNormLog, SourceFile

KIND = "CSV"
SUFFIXES = (".csv", ".tsv", ".txt")


def find_in(directory: Path) -> Path | None:
    return None  # a run directory holds no CSV export of its own


def claims(file: SourceFile) -> bool:
    return file.path.suffix.lower() in SUFFIXES


def read(file: SourceFile) -> GradNormLog:
    where = file.where
    try:
        with file.path.open(newline="", encoding="utf-8") as handle:
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
    return GradNormLog(
        source=where,
        l2=np.array(values),
        steps=np.array(steps) if step_col is not None else None,
        meta={"column": header[value_col], "norm_hint": "l1" if "l1" in name else None},
        kind=KIND,
    )
