"""Reader of the recorder's own file (`GradNormRecorder`, JSON with a ``format`` key)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import GradNormSourceError
from ..formats import FORMAT_VERSION, GRAD_NORMS_FORMAT, RECORDER_FILE
from .log import GradNormLog, Series, SourceFile, float_or_nan

KIND = "recorder file"


def find_in(directory: Path) -> Path | None:
    path = directory / RECORDER_FILE
    return path if path.is_file() else None


def claims(file: SourceFile) -> bool:
    return isinstance(file.json, dict) and file.json.get("format") == GRAD_NORMS_FORMAT


def read(file: SourceFile) -> GradNormLog:
    data, where = file.json, file.where
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise GradNormSourceError(
            f"{where!r} has format_version {version!r}; this version of hf_lrschedule reads {FORMAT_VERSION}"
        )
    steps = data.get("steps")
    l2 = data.get("l2")
    if not isinstance(steps, list) or not isinstance(l2, list) or len(steps) != len(l2):
        raise GradNormSourceError(f"{where!r}: expected lists 'steps' and 'l2' of the same length")
    l1 = data.get("l1")
    if l1 is not None and (not isinstance(l1, list) or len(l1) != len(l2)):
        raise GradNormSourceError(f"{where!r}: 'l1' must be null or a list as long as 'l2'")
    return GradNormLog(
        metrics=_metrics(data.get("metrics"), where),
        source=where,
        l2=np.array([float_or_nan(v, f"{where} l2[{i}]") for i, v in enumerate(l2)]),
        l1=None if l1 is None else np.array([float_or_nan(v, f"{where} l1[{i}]") for i, v in enumerate(l1)]),
        steps=np.array([int(float_or_nan(s, f"{where} steps[{i}]")) for i, s in enumerate(steps)]),
        meta=dict(data.get("meta") or {}),
        kind=KIND,
    )


def _metrics(data, where: str) -> dict[str, Series]:
    """The file's ``metrics`` (absent in files of earlier versions): ``{name: {"steps": [...], "values": [...]}}``."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise GradNormSourceError(f"{where!r}: 'metrics' must be an object of {{name: {{steps, values}}}}")
    metrics = {}
    for name, series in data.items():
        steps, values = (series.get("steps"), series.get("values")) if isinstance(series, dict) else (None, None)
        if not isinstance(steps, list) or not isinstance(values, list) or len(steps) != len(values):
            raise GradNormSourceError(f"{where!r}: metric {name!r} needs lists 'steps' and 'values' of the same length")
        metrics[name] = Series(
            steps=np.array([int(float_or_nan(s, f"{where} {name} steps[{i}]")) for i, s in enumerate(steps)], dtype=int),
            values=np.array([float_or_nan(v, f"{where} {name} values[{i}]") for i, v in enumerate(values)], dtype=float),
        )
    return metrics
