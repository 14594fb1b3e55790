"""What the tracker readers (`mlflow_run`, `trackio_run`) share: a run's logged history as a `GradNormLog`.

A tracker keeps each metric as (step, value) points. The gradient norm becomes the log's ``l2`` series on its
steps, the loss, learning rate and eval loss its ``metrics``; a norm logged every k-th step is resampled by
training fraction (`GradNormLog.positions`), with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import GradNormSourceError, RefinementWarning
from .log import METRIC_NAMES, GradNormLog, Series, float_or_nan, metric_series

#: Where to get the trackers: one extra for wandb, mlflow and trackio.
INSTALL_HINT = 'pip install "hf_lrschedule[trackers]"'


def reference_body(reference: str, scheme: str) -> str | None:
    """The part after ``<scheme>:`` (or ``<scheme>://``) of a run reference, None if `reference` is not one."""
    prefix = f"{scheme}:"
    if not reference.startswith(prefix):
        return None
    return reference[len(prefix) :].removeprefix("//")


def run_history_log(
    *,
    source: str,
    kind: str,
    history: Mapping[str, Sequence[tuple[int, Any]]],
    grad_norm_keys: Sequence[str],
    metric_keys: Mapping[str, Sequence[str]],
    config: Mapping[str, Any],
) -> GradNormLog:
    """A `GradNormLog` from a run's metric `history` (``{key: [(step, value), ...]}`` in logging order).

    The first key of `grad_norm_keys` the run logged is the norm; each name of `METRIC_NAMES` takes the first of
    its `metric_keys` the run logged. `config` is the run's parameters as the Trainer logged them (its
    ``TrainingArguments``): ``max_steps`` and ``logging_steps`` go to ``meta``.
    """
    key = next((k for k in grad_norm_keys if history.get(k)), None)
    if key is None:
        logged = ", ".join(sorted(history)) or "none"
        raise GradNormSourceError(
            f"{source} has no gradient-norm metric ({' or '.join(grad_norm_keys)}); metrics logged: {logged}. The "
            "Trainer logs grad_norm every logging_steps: train with logging_steps=1 for the full series, or attach "
            "GradNormRecorderCallback"
        )
    norms = _series(history[key], f"{source} {key}")
    metrics = {}
    for name in METRIC_NAMES:
        found = next((k for k in metric_keys.get(name, ()) if history.get(k)), None)
        if found is not None:
            metrics[name] = _series(history[found], f"{source} {found}")
    meta: dict[str, Any] = {"metric": key}
    max_steps, logging_steps = _number(config.get("max_steps")), _number(config.get("logging_steps"))
    if isinstance(max_steps, int) and max_steps > 0:
        meta["num_training_steps"] = max_steps
    if logging_steps is not None:
        meta["logging_steps"] = logging_steps
    log = GradNormLog(source=source, l2=norms.values, steps=norms.steps, meta=meta, kind=kind, metrics=metrics)
    if norms.steps.size > 1 and (spacing := int(np.median(np.diff(norms.steps)))) > 1:
        warnings.warn(
            f"{source} logs {key} every {spacing} steps ({norms.steps.size} values, steps {int(norms.steps[0])}-"
            f"{int(norms.steps[-1])}): refinement resamples them by training fraction. Train with logging_steps=1 "
            "(or attach GradNormRecorderCallback) to refine from every step",
            RefinementWarning,
            stacklevel=4,
        )
    return log


def _series(points: Sequence[tuple[int, Any]], where: str) -> Series:
    return metric_series([(int(step), float_or_nan(value, f"{where} step {step}")) for step, value in points])


def _number(value: Any) -> int | float | None:
    # MLflow keeps parameters as strings ("8"), trackio as JSON values (8)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        return None
    return int(value) if float(value).is_integer() else float(value)
