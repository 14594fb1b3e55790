"""Reader of a trackio run: the ``train/grad_norm`` history a Trainer run with ``report_to="trackio"`` logs.

A run is named ``trackio:<project>/<run>`` (the Trainer's ``project`` and ``run_name`` arguments; the run name may
hold further slashes), or ``trackio:<project>`` for the project's newest run (with a warning when it has several).
It is looked up in trackio's local store, the folder trackio itself logs to: ``TRACKIO_DIR`` as it was when trackio
was first imported in the process, else trackio's default (``~/.cache/huggingface/trackio``).

Read through trackio's own API, as its ``trackio get`` command does: ``trackio.Api().runs(project)`` for the runs
and their config, ``SQLiteStorage.get_logs`` for the history. Transformers' ``TrackioCallback`` logs the Trainer's
keys under ``train/`` and ``eval/`` with ``train/global_step``, which gives each value its optimizer step (trackio's
own step counts log calls). The loss, learning rate and eval loss fill `GradNormLog.metrics`; ``max_steps`` and
``logging_steps`` come from the run's config. Needs the ``trackio`` package (``pip install
"hf_lrschedule[trackers]"``), imported only when a run is read.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from ..errors import GradNormSourceError, RefinementWarning
from .log import GradNormLog, SourceFile
from .tracker_history import INSTALL_HINT, reference_body, run_history_log

KIND = "trackio run"
SCHEME = "trackio"
#: The Trainer's key as TrackioCallback logs it, then a bare one.
GRAD_NORM_KEYS = ("train/grad_norm", "grad_norm")
METRIC_KEYS = {
    "loss": ("train/loss", "loss"),
    "learning_rate": ("train/learning_rate", "learning_rate"),
    "eval_loss": ("eval/loss", "eval_loss"),
}
#: The optimizer step TrackioCallback logs with every entry.
STEP_KEY = "train/global_step"


def find_in(directory: Path) -> Path | None:
    return None  # trackio keeps its runs in its own store, not in a run directory


def claims(file: SourceFile) -> bool:
    return False  # a run is named by trackio:<project>/<run>, not by a file


def claims_reference(reference: str) -> bool:
    return reference_body(reference, SCHEME) is not None


def read_reference(reference: str) -> GradNormLog:
    project, _, run = (reference_body(reference, SCHEME) or "").partition("/")
    if not project:
        raise GradNormSourceError(f"{reference!r} names no project; expected trackio:<project>/<run>")
    return load_trackio_run(project, run or None)


def load_trackio_run(project: str, run: str | None = None) -> GradNormLog:
    """Read the gradient norms of a trackio run from trackio's local store.

    Args:
        project (`str`): the trackio project (the Trainer's ``project`` argument, default ``"huggingface"``).
        run (`str`, *optional*): the run's name (the Trainer's ``run_name``); defaults to the project's newest run,
            with a `RefinementWarning` that names it when the project has several.

    Returns:
        `GradNormLog`: l2 norms on their optimizer steps, the run's ``metrics``; ``meta`` has ``metric`` (the key
        read), ``store`` (trackio's folder) and, from the run's config, ``num_training_steps`` (``max_steps`` if
        set) and ``logging_steps``.

    Raises:
        GradNormSourceError: trackio is not installed, no such project or run in the store, or a run without a
            gradient-norm metric.
    """
    trackio, storage = _trackio(f"trackio:{project}")
    store = Path(trackio.utils.TRACKIO_DIR)
    if not storage.get_project_db_path(project).exists():
        projects = ", ".join(storage.get_projects()) or "none"
        raise GradNormSourceError(
            f"trackio:{project}: no trackio project {project!r} in {str(store)!r} (projects there: {projects}); "
            "trackio reads TRACKIO_DIR when it is first imported: set it before running, to the folder the run "
            "logged to"
        )
    runs = {r.name: r for r in trackio.Api().runs(project)}  # oldest first
    if run is None:
        if not runs:
            raise GradNormSourceError(f"trackio:{project}: the project has no runs")
        run = list(runs)[-1]
        if len(runs) > 1:
            warnings.warn(
                f"trackio project {project!r} has {len(runs)} runs; using the newest, {run!r}: write "
                f"trackio:{project}/<run> to choose another",
                RefinementWarning,
                stacklevel=4,
            )
    elif run not in runs:
        raise GradNormSourceError(
            f"trackio:{project}/{run}: no run {run!r} in project {project!r} (runs: {', '.join(runs) or 'none'})"
        )
    source = f"trackio:{project}/{run}"
    history: dict[str, list[tuple[int, Any]]] = {}
    for entry in storage.get_logs(project, run):
        step = entry.get(STEP_KEY, entry.get("step"))
        for key, value in entry.items():
            if key not in (STEP_KEY, "step", "timestamp"):
                history.setdefault(key, []).append((step, value))
    wanted = {*GRAD_NORM_KEYS, *(k for keys in METRIC_KEYS.values() for k in keys)}
    history = {key: points if key in wanted else [] for key, points in history.items()}
    log = run_history_log(
        source=source,
        kind=KIND,
        history=history,
        grad_norm_keys=GRAD_NORM_KEYS,
        metric_keys=METRIC_KEYS,
        config=runs[run].config or {},
    )
    log.meta["store"] = str(store)
    return log


def _trackio(where: str) -> tuple[Any, Any]:
    try:
        import trackio
        from trackio.sqlite_storage import SQLiteStorage
    except ImportError as error:
        raise GradNormSourceError(
            f"{where} is a trackio run; reading it needs the trackio package ({error}): {INSTALL_HINT}"
        ) from None
    return trackio, SQLiteStorage
