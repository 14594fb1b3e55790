"""Gradient-norm sources: one reader module per format behind `load_grad_norms` (numpy; TensorBoard optional).

Supported sources:

* a recorder file written by `hf_lrschedule.recording.GradNormRecorder` (`recorder`);
* a ``trainer_state.json`` of any transformers run (`trainer_state`: its ``log_history`` ``grad_norm`` entries,
  every ``logging_steps``; ``logging_steps=1`` gives the full series);
* a CSV with a ``Step`` column and a value column, such as a Weights & Biases export (`csv_export`);
* TensorBoard event files (`tensorboard`: one file, or a folder searched recursively);
* an MLflow run (`mlflow_run`): ``mlflow:<run_id>`` at ``MLFLOW_TRACKING_URI``, ``mlflow:<run_id>@<tracking_uri>``,
  or a local run folder ``mlruns/<experiment_id>/<run_id>``;
* a trackio run (`trackio_run`): ``trackio:<project>/<run>`` in trackio's local store;
* a run directory (a Trainer ``output_dir``, a pilot folder): the first source found in it, in the order of
  `READERS`;
* a list of floats.

A reader is a module with ``KIND`` (its name in messages), ``claims(file)`` (is this file mine?), ``read(file)``
(a `GradNormLog`) and ``find_in(directory)`` (its file in a run directory, or None). To add a source, write one and
put it into `READERS`. A reader of tracker runs also has ``claims_reference(source)`` and ``read_reference(source)``
for its ``<scheme>:...`` strings (`RUN_REFERENCES`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import GradNormSourceError
from ..formats import SCHEDULE_FORMAT, open_source_file
from . import csv_export, mlflow_run, recorder, tensorboard, trackio_run, trainer_state
from .log import GradNormLog, SourceFile

#: In the order a file is offered to them and a run directory is searched.
READERS = (recorder, trainer_state, tensorboard, csv_export, mlflow_run, trackio_run)
#: The readers of tracker runs named by a string (``mlflow:...``, ``trackio:...``), tried before the file system.
RUN_REFERENCES = (mlflow_run, trackio_run)

__all__ = ["READERS", "RUN_REFERENCES", "GradNormLog", "is_run_reference", "load_grad_norms"]


def is_run_reference(source: object) -> bool:
    """Whether `source` names a tracker run (``mlflow:...``, ``trackio:...``) rather than a file."""
    return isinstance(source, str) and any(reader.claims_reference(source) for reader in RUN_REFERENCES)


def load_grad_norms(source: str | os.PathLike | Sequence[float]) -> GradNormLog:
    """Read gradient norms from any supported source (see the module docstring).

    A directory is searched in the order of `READERS` and the first source found is used (its path is the log's
    ``source``): ``grad_norms.json`` (the recorder's file), ``trainer_state.json`` (else the newest
    ``checkpoint-*/trainer_state.json``), then TensorBoard event files below it.
    """
    if not isinstance(source, (str, os.PathLike)):
        values = np.asarray(source, dtype=object)
        return GradNormLog(source="<list>", l2=values, l1=values, kind="list")
    for reader in RUN_REFERENCES:
        if isinstance(source, str) and reader.claims_reference(source):
            return reader.read_reference(source)
    if Path(source).is_dir():
        return _run_directory_log(Path(source))
    file = SourceFile(open_source_file(source))
    for reader in READERS:
        if reader.claims(file):
            return reader.read(file)
    if isinstance(file.json, dict) and file.json.get("format") == SCHEDULE_FORMAT:
        raise GradNormSourceError(
            f"{file.where!r} is a schedule file, not gradient norms; pass it as lr_scheduler_kwargs['schedule']"
        )
    if file.json is not None:
        raise GradNormSourceError(
            f"{file.where!r} is JSON but neither a recorder file (format 'hf_lrschedule.grad_norms') nor a "
            "trainer_state.json (with 'log_history')"
        )
    suffix = file.path.suffix.lower()
    kinds = ", ".join(reader.KIND for reader in READERS)
    raise GradNormSourceError(
        f"unknown gradient-norm file type {suffix or '(no extension)'!r} for {file.where!r}; expected one of: "
        f"{kinds} (.json, .csv, {tensorboard.EVENT_FILE_PREFIX}*, an MLflow run's meta.yaml), a run directory, or "
        "mlflow:<run_id> / trackio:<project>/<run>"
    )


def _run_directory_log(directory: Path) -> GradNormLog:
    for reader in READERS:
        found = reader.find_in(directory)
        if found is not None:
            return load_grad_norms(found) if found.is_file() else reader.read(SourceFile(found))
    raise GradNormSourceError(
        f"{str(directory)!r} holds no gradient norms: looked for grad_norms.json (GradNormRecorderCallback), "
        "trainer_state.json (at the top, else in the newest checkpoint-*/) and TensorBoard event files "
        f"({tensorboard.EVENT_FILE_PREFIX}*, in any subfolder), or an MLflow run folder (meta.yaml and metrics/); "
        "pass a file, the run's output_dir, or mlflow:<run_id> / trackio:<project>/<run>"
    )
