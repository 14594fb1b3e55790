"""Reader of an MLflow run: the ``grad_norm`` metric history a Trainer run with ``report_to="mlflow"`` logs.

Two forms name a run:

* ``mlflow:<run_id>``, resolved at MLflow's tracking URI (``MLFLOW_TRACKING_URI``, else MLflow's default), or
  ``mlflow:<run_id>@<tracking_uri>`` with the URI written out (``mlflow:3f2a...@sqlite:///runs/mlflow.db``);
  ``mlflow://<run_id>`` is the same as ``mlflow:<run_id>``;
* a local run folder of a file store, ``mlruns/<experiment_id>/<run_id>`` (it holds ``meta.yaml`` and
  ``metrics/``), or its ``meta.yaml``.

Everything is read through `mlflow.tracking.MlflowClient` (``get_run``, ``get_metric_history``): the norms, the
``loss``, ``learning_rate`` and ``eval_loss`` histories (`GradNormLog.metrics`) and, from the run's parameters,
``max_steps`` and ``logging_steps``. Transformers' ``MLflowCallback`` logs the Trainer's keys as they are
(``grad_norm``, not ``train/grad_norm``), at ``step = global_step``. Needs the ``mlflow`` package
(``pip install "hf_lrschedule[trackers]"``), imported only when a run is read.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ..errors import GradNormSourceError
from .log import GradNormLog, SourceFile
from .tracker_history import INSTALL_HINT, reference_body, run_history_log

KIND = "MLflow run"
SCHEME = "mlflow"
#: The Trainer's key as MLflowCallback logs it, then the one other trackers' conventions use.
GRAD_NORM_KEYS = ("grad_norm", "train/grad_norm")
METRIC_KEYS = {
    "loss": ("loss", "train/loss"),
    "learning_rate": ("learning_rate", "train/learning_rate"),
    "eval_loss": ("eval_loss", "eval/loss"),
}


def is_run_folder(path: Path) -> bool:
    """A file store's run folder: ``meta.yaml`` beside a ``metrics/`` folder."""
    return (path / "meta.yaml").is_file() and (path / "metrics").is_dir()


def find_in(directory: Path) -> Path | None:
    """The directory itself when it is an MLflow run folder (a Trainer ``output_dir`` holds none)."""
    return directory if is_run_folder(directory) else None


def claims(file: SourceFile) -> bool:
    return file.path.name == "meta.yaml" and is_run_folder(file.path.parent)


def read(file: SourceFile) -> GradNormLog:
    folder = file.path if file.path.is_dir() else file.path.parent
    store = folder.parent.parent  # mlruns/<experiment_id>/<run_id>
    return load_mlflow_run(folder.name, tracking_uri=store.resolve().as_uri(), source=str(folder))


def claims_reference(reference: str) -> bool:
    return reference_body(reference, SCHEME) is not None


def read_reference(reference: str) -> GradNormLog:
    body = reference_body(reference, SCHEME) or ""
    run_id, _, tracking_uri = body.partition("@")
    if not run_id:
        raise GradNormSourceError(
            f"{reference!r} names no run; expected mlflow:<run_id> (at MLFLOW_TRACKING_URI) or "
            "mlflow:<run_id>@<tracking_uri>"
        )
    return load_mlflow_run(run_id, tracking_uri=tracking_uri or None, source=reference)


def load_mlflow_run(run_id: str, *, tracking_uri: str | None = None, source: str | None = None) -> GradNormLog:
    """Read the gradient norms of an MLflow run through `MlflowClient`.

    Args:
        run_id (`str`): the run's id (``mlflow.active_run().info.run_id``, the run page's "Run ID").
        tracking_uri (`str`, *optional*): where the run is stored (``sqlite:///mlflow.db``, ``file:///.../mlruns``,
            ``http://host:5000``); defaults to MLflow's own (``MLFLOW_TRACKING_URI``, else MLflow's default).
        source (`str`, *optional*): how to name the run in the log and in messages; defaults to ``mlflow:<run_id>``.

    Returns:
        `GradNormLog`: l2 norms on their steps, the run's ``metrics``; ``meta`` has ``metric`` (the key read),
        ``tracking_uri`` and, from the run's parameters, ``num_training_steps`` (``max_steps`` if set) and
        ``logging_steps``.

    Raises:
        GradNormSourceError: mlflow is not installed, no store at a local `tracking_uri`, an unknown run, or a run
            without a gradient-norm metric.
    """
    source = source or f"mlflow:{run_id}"
    mlflow = _mlflow(source)
    uri = tracking_uri or mlflow.get_tracking_uri()
    _check_local_store(uri, source)
    from mlflow.exceptions import MlflowException

    # MLflow's store raises deprecation warnings of its own (SQLAlchemy's): not the user's to act on
    with _file_store_allowed(uri), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client = mlflow.tracking.MlflowClient(tracking_uri=uri)
        try:
            run = client.get_run(run_id)
        except MlflowException as error:
            raise GradNormSourceError(
                f"{source}: no MLflow run {run_id!r} at tracking URI {uri!r} ({error.message}); pass the run's id, "
                "and its store with MLFLOW_TRACKING_URI or mlflow:<run_id>@<tracking_uri>"
            ) from None
        keys = set(run.data.metrics)
        wanted = [*GRAD_NORM_KEYS, *(k for keys_ in METRIC_KEYS.values() for k in keys_)]
        history: dict[str, list[tuple[int, Any]]] = {}
        for key in wanted:
            if key in keys:
                # a step logged twice (a resumed run) keeps the value logged last
                points = sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp)
                history[key] = [(m.step, m.value) for m in points]
    for key in keys - set(history):
        history[key] = []  # named in the "no such metric" message
    log = run_history_log(
        source=source,
        kind=KIND,
        history=history,
        grad_norm_keys=GRAD_NORM_KEYS,
        metric_keys=METRIC_KEYS,
        config=run.data.params,
    )
    log.meta["tracking_uri"] = uri
    return log


def _mlflow(where: str) -> Any:
    try:
        import mlflow
        import mlflow.tracking
    except ImportError as error:
        raise GradNormSourceError(
            f"{where} is an MLflow run; reading it needs the mlflow package ({error}): {INSTALL_HINT}"
        ) from None
    return mlflow


def _local_path(uri: str) -> Path | None:
    """The file or folder a local store URI points at (``sqlite:///x.db``, ``file:///x``, a bare path), else None."""
    if uri.startswith("sqlite:///"):
        return Path(unquote(uri[len("sqlite:///") :]))
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if not parsed.scheme or len(parsed.scheme) == 1:  # a bare path (a Windows drive letter parses as a scheme)
        return Path(uri)
    return None


def _check_local_store(uri: str, source: str) -> None:
    # MlflowClient creates a missing sqlite database or mlruns folder: reading should not, and say where it looked
    path = _local_path(uri)
    if path is not None and not path.exists():
        raise GradNormSourceError(
            f"{source}: no MLflow store at {str(path)!r} (tracking URI {uri!r}); set MLFLOW_TRACKING_URI to the "
            "store the run was logged to, or write mlflow:<run_id>@<tracking_uri>"
        )


@contextmanager
def _file_store_allowed(uri: str) -> Iterator[None]:
    # MLflow 3 refuses a file store (mlruns/) unless MLFLOW_ALLOW_FILE_STORE=true; reading a run the user points at is
    # that opt-in, for this read only
    if urlparse(uri).scheme not in ("", "file") or os.environ.get("MLFLOW_ALLOW_FILE_STORE"):
        yield
        return
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
