"""Reader of a transformers ``trainer_state.json``: its ``log_history`` ``grad_norm`` entries (every logging step)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import GradNormSourceError
from .log import METRIC_NAMES, GradNormLog, SourceFile, float_or_nan, metric_series

KIND = "trainer_state.json"


def find_in(directory: Path) -> Path | None:
    """The run's ``trainer_state.json``, else that of its newest ``checkpoint-*``."""
    state = directory / "trainer_state.json"
    if state.is_file():
        return state
    found = []
    for state in directory.glob("checkpoint-*/trainer_state.json"):
        match = re.fullmatch(r"checkpoint-(\d+)", state.parent.name)
        if match and state.is_file():
            found.append((int(match.group(1)), state))
    return max(found)[1] if found else None


def claims(file: SourceFile) -> bool:
    return isinstance(file.json, dict) and "log_history" in file.json


def read(file: SourceFile) -> GradNormLog:
    data, where = file.json, file.where
    entries = [e for e in data.get("log_history") or [] if isinstance(e, dict) and "grad_norm" in e]
    if not entries:
        raise GradNormSourceError(
            f"{where!r} has no 'grad_norm' entries in its log_history; train with logging_steps=1 (or attach "
            "GradNormRecorderCallback) so the gradient norm is logged"
        )
    steps = np.array([int(e.get("step", i + 1)) for i, e in enumerate(entries)])
    values = np.array([float_or_nan(e["grad_norm"], f"{where} step {s}") for e, s in zip(entries, steps)])
    meta = {"num_training_steps": data.get("max_steps"), "logging_steps": data.get("logging_steps")}
    history = [e for e in data.get("log_history") or [] if isinstance(e, dict) and isinstance(e.get("step"), int)]
    metrics = {
        name: metric_series([(e["step"], float_or_nan(e[name], f"{where} step {e['step']} {name}")) for e in found])
        for name in METRIC_NAMES
        if (found := [e for e in history if name in e])
    }
    return GradNormLog(source=where, l2=values, steps=steps, meta=meta, kind=KIND, metrics=metrics)
