"""Reader of TensorBoard event files (``events.out.tfevents.*``: one file, or a folder searched recursively).

The ``train/grad_norm`` scalar of a Trainer run with ``report_to="tensorboard"``. Needs the ``tensorboard`` package
(``pip install "hf_lrschedule[tensorboard]"``), imported only when such a file is read.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GradNormSourceError, RefinementWarning
from ..formats import open_source_file
from .log import GradNormLog, SourceFile, metric_series

KIND = "TensorBoard"
EVENT_FILE_PREFIX = "events.out.tfevents."
# the Trainer's tag (it logs under "train/"), then a bare one; else a tag named ".../grad_norm" if it is the only one
TENSORBOARD_TAGS = ("train/grad_norm", "grad_norm")
#: The Trainer's tags of the run's other series (`GradNormLog.metrics`).
METRIC_TAGS = {"loss": "train/loss", "learning_rate": "train/learning_rate", "eval_loss": "eval/loss"}


def find_in(directory: Path) -> Path | None:
    """The directory itself when event files lie anywhere below it (the reader joins and picks the runs)."""
    return directory if any(p.is_file() for p in directory.rglob(f"{EVENT_FILE_PREFIX}*")) else None


def claims(file: SourceFile) -> bool:
    return file.path.name.startswith(EVENT_FILE_PREFIX)


def read(file: SourceFile) -> GradNormLog:
    return load_tensorboard(file.path)


@dataclass(eq=False)
class _TensorBoardRun:
    path: Path
    tag: str
    started: float
    steps: list[int]
    values: list[float]
    args: dict[str, Any]
    metrics: dict[str, dict[int, float]]


def _tensorboard_modules(where: str) -> tuple[Any, Any]:
    try:
        from tensorboard.backend.event_processing import plugin_event_accumulator
        from tensorboard.util import tensor_util
    except ImportError as error:
        raise GradNormSourceError(
            f"{where} holds TensorBoard event files; reading them needs the tensorboard package ({error}): "
            'pip install "hf_lrschedule[tensorboard]"'
        ) from None
    return plugin_event_accumulator, tensor_util


def _pick_tag(tags: list[str], where: str) -> str | None:
    for tag in TENSORBOARD_TAGS:
        if tag in tags:
            return tag
    others = [t for t in tags if t.rsplit("/", 1)[-1] == "grad_norm"]
    if len(others) > 1:
        raise GradNormSourceError(
            f"{where} logs several gradient-norm tags {others}; pass the one to use: "
            "hf_lrschedule.readers.tensorboard.load_tensorboard(path, tag=...)"
        )
    return others[0] if others else None


def _read_tensorboard_run(
    path: Path, tag: str | None, modules: tuple[Any, Any]
) -> tuple[_TensorBoardRun | None, list[str]]:
    """The `tag` series of one run (a folder's event files, or one file), and the run's scalar tags."""
    accumulators, tensor_util = modules
    # every scalar (the default keeps a reservoir sample of 10,000), the last text of a tag (the Trainer's "args"),
    # one item of anything else; purge_orphaned_data (the default) drops steps that a restart logged again
    events = accumulators.EventAccumulator(
        str(path), size_guidance={"tensors": 1}, tensor_size_guidance={"scalars": 0, "text": 1}
    )
    events.Reload()
    tensors = events.Tags()["tensors"]
    scalars = sorted(t for t in tensors if events.SummaryMetadata(t).plugin_data.plugin_name == "scalars")
    if tag is not None:
        chosen = tag if tag in scalars else None
    else:
        chosen = _pick_tag(scalars, str(path))
    if chosen is None:
        return None, scalars
    by_step = _scalar_series(events, chosen, tensor_util, path)
    steps = sorted(by_step)
    metrics = {name: _scalar_series(events, t, tensor_util, path) for name, t in METRIC_TAGS.items() if t in scalars}
    args: dict[str, Any] = {}
    if "args/text_summary" in tensors:  # the Trainer's TrainingArguments as JSON (TensorBoardCallback)
        texts = tensor_util.make_ndarray(events.Tensors("args/text_summary")[-1].tensor_proto).reshape(-1)
        try:
            parsed = json.loads(texts[0].decode("utf-8") if isinstance(texts[0], bytes) else str(texts[0]))
        except (IndexError, UnicodeDecodeError, json.JSONDecodeError):
            parsed = None
        args = parsed if isinstance(parsed, dict) else {}
    run = _TensorBoardRun(path, chosen, events.FirstEventTimestamp(), steps, [by_step[k] for k in steps], args, metrics)
    return run, scalars


def _scalar_series(events, tag: str, tensor_util, path: Path) -> dict[int, float]:
    by_step: dict[int, float] = {}  # a step logged twice keeps its last value
    for event in events.Tensors(tag):
        value = tensor_util.make_ndarray(event.tensor_proto)
        if value.size != 1 or value.dtype.kind not in "fiu":
            raise GradNormSourceError(f"{str(path)!r}: tag {tag!r} at step {event.step} is not a number")
        by_step[int(event.step)] = float(value.reshape(()).item())
    return by_step


def _starts_late(run: _TensorBoardRun) -> bool:
    # logged every k steps from the start, the first step is at most k; later is a run resumed from a checkpoint
    spacing = int(np.median(np.diff(run.steps))) if len(run.steps) > 1 else run.steps[0]
    return run.steps[0] > spacing


def load_tensorboard(path: str | os.PathLike, *, tag: str | None = None) -> GradNormLog:
    """Read gradient norms from TensorBoard event files: one ``events.out.tfevents.*`` file, or a folder.

    A folder is searched recursively; each folder holding event files is a run (the Trainer writes one per
    training, ``<output_dir>/runs/<date>_<host>``). The tag is `tag`, else ``train/grad_norm`` (the Trainer's),
    ``grad_norm``, or the only tag named ``.../grad_norm``. If several runs log it, the newest (by its first event)
    is used, with a `RefinementWarning` that names it; if that run starts late (resumed from a checkpoint into a
    new folder), the steps before its start come from the newest older run that has them, as TensorBoard itself
    treats a restart within one folder. Values are parsed only: NaN, inf, zero and negative norms are handled by
    refinement as for every source. Needs the ``tensorboard`` package (``pip install
    "hf_lrschedule[tensorboard]"``), imported here.

    Args:
        path (`str` or `os.PathLike`): an event file or a folder (a Trainer ``output_dir``, its ``runs/``, a run).
        tag (`str`, *optional*): the scalar tag to read.

    Returns:
        `GradNormLog`: l2 norms with their steps; ``meta`` has ``tag``, ``runs`` and, when the Trainer wrote its
        arguments, ``num_training_steps`` (``max_steps`` if set) and ``logging_steps``.
    """
    path = Path(path)
    where = str(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob(f"{EVENT_FILE_PREFIX}*") if p.is_file())
        if not files:
            raise GradNormSourceError(
                f"{where!r} holds no TensorBoard event files ({EVENT_FILE_PREFIX}*); train with "
                'report_to="tensorboard", or point at the logging directory'
            )
        runs_at = sorted({f.parent for f in files})
    else:
        open_source_file(path)
        files, runs_at = [path], [path]
    modules = _tensorboard_modules(repr(where))
    runs, tags = [], set()
    for run_path in runs_at:
        run, scalars = _read_tensorboard_run(run_path, tag, modules)
        tags.update(scalars)
        if run is not None and run.steps:
            runs.append(run)
    if not runs:
        wanted = repr(tag) if tag is not None else "a gradient-norm tag (" + ", ".join(TENSORBOARD_TAGS) + ")"
        found = ", ".join(sorted(tags)) if tags else "none"
        raise GradNormSourceError(
            f"{where!r}: no TensorBoard run logs {wanted}; scalar tags found: {found}. The Trainer logs "
            "train/grad_norm every logging_steps when it clips (max_grad_norm > 0): train with logging_steps=1 for "
            "the full series, or attach GradNormRecorderCallback"
        )
    runs.sort(key=lambda r: (r.started, str(r.path)))
    used, index = [runs[-1]], len(runs) - 1
    while _starts_late(used[0]):
        first = used[0].steps[0]
        earlier = [i for i in range(index) if runs[i].steps[0] < first]
        if not earlier:
            break
        index = earlier[-1]
        keep = sum(1 for s in runs[index].steps if s < first)
        used.insert(0, replace(runs[index], steps=runs[index].steps[:keep], values=runs[index].values[:keep]))
    steps = [s for r in used for s in r.steps]
    values = [v for r in used for v in r.values]
    # each run's other series up to where the next (resumed) run starts, as for the norms
    ends = [later.steps[0] for later in used[1:]] + [None]
    metrics = {
        name: metric_series(pairs)
        for name in METRIC_TAGS
        if (pairs := [(s, v) for r, end in zip(used, ends) for s, v in sorted(r.metrics.get(name, {}).items())
                      if end is None or s < end])
    }
    if len(runs) > 1:
        parts = [f"{r.path} (steps {r.steps[0]}-{r.steps[-1]})" for r in reversed(used)]
        warnings.warn(
            f"{len(runs)} TensorBoard runs under {where!r} log gradient norms; using the newest, {parts[0]}"
            + (f", resumed from {', then '.join(parts[1:])}" if len(parts) > 1 else "")
            + "; point at one run's folder to choose another",
            RefinementWarning,
            stacklevel=3,
        )
    newest = runs[-1]
    meta: dict[str, Any] = {"tag": newest.tag, "runs": [str(r.path) for r in used]}
    max_steps, logging_steps = newest.args.get("max_steps"), newest.args.get("logging_steps")
    if isinstance(max_steps, int) and not isinstance(max_steps, bool) and max_steps > 0:
        meta["num_training_steps"] = max_steps
    if isinstance(logging_steps, (int, float)) and not isinstance(logging_steps, bool):
        meta["logging_steps"] = logging_steps
    source = path  # several runs joined: the folder searched
    if len(used) == 1:  # one run: its event file if it has one, else its folder
        run_files = [f for f in files if newest.path in (f, f.parent)]
        source = run_files[0] if len(run_files) == 1 else newest.path
    return GradNormLog(
        source=str(source), l2=np.array(values, dtype=np.float64), steps=np.array(steps), meta=meta, kind=KIND,
        metrics=metrics,
    )
