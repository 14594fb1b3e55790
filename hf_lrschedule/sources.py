"""Reading gradient-norm logs and schedule files, writing files atomically (no torch; TensorBoard optional).

Supported gradient-norm sources:

* a recorder file written by :class:`hf_lrschedule.recording.GradNormRecorder` (JSON, ``format`` key below);
* a ``trainer_state.json`` of any transformers run (its ``log_history`` ``grad_norm`` entries: every
  ``logging_steps``; ``logging_steps=1`` gives the full series);
* a CSV with a ``Step`` column and a value column, such as a Weights & Biases export;
* TensorBoard event files (``events.out.tfevents.*``: one file, or a folder searched recursively), the
  ``train/grad_norm`` scalar of a Trainer run with ``report_to="tensorboard"``; needs the ``tensorboard`` package
  (``pip install "hf_lrschedule[tensorboard]"``), imported only when such a file is read;
* a run directory (a Trainer ``output_dir``, a pilot folder): the first of ``grad_norms.json``,
  ``trainer_state.json`` (else that of the newest ``checkpoint-*``) and TensorBoard event files below it;
* a list of floats.

Nothing here unpickles or evaluates file content.
"""

from __future__ import annotations

import csv
import json
import os
import re
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .refine import RefinementWarning

GRAD_NORMS_FORMAT = "hf_lrschedule.grad_norms"
SCHEDULE_FORMAT = "hf_lrschedule.schedule"
FORMAT_VERSION = 1
RECORDER_FILE = "grad_norms.json"
EVENT_FILE_PREFIX = "events.out.tfevents."
# the Trainer's tag (it logs under "train/"), then a bare one; else a tag named ".../grad_norm" if it is the only one
TENSORBOARD_TAGS = ("train/grad_norm", "grad_norm")


class GradNormSourceError(ValueError):
    """A gradient-norm or schedule file that cannot be used; the message says what was expected."""


@dataclass
class GradNormLog:
    """Gradient norms as read from a source. `steps` are optimizer steps (1 = after the first update) if known.

    `source` names the file (or TensorBoard run folder) the norms come from, `kind` its format.
    """

    source: str
    l2: np.ndarray | None
    l1: np.ndarray | None = None
    steps: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    kind: str = ""

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
            f"gradient-norm file {str(path)!r} does not exist; expected a recorder JSON, a trainer_state.json, "
            "a CSV export, a TensorBoard event file or a run directory"
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
        kind="recorder file",
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
    return GradNormLog(source=where, l2=values, steps=steps, meta=meta, kind="trainer_state.json")


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
        kind="CSV",
    )


@dataclass(eq=False)
class _TensorBoardRun:
    path: Path
    tag: str
    started: float
    steps: list[int]
    values: list[float]
    args: dict[str, Any]


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
            "hf_lrschedule.sources.load_tensorboard(path, tag=...)"
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
    by_step: dict[int, float] = {}  # a step logged twice keeps its last value
    for event in events.Tensors(chosen):
        value = tensor_util.make_ndarray(event.tensor_proto)
        if value.size != 1 or value.dtype.kind not in "fiu":
            raise GradNormSourceError(f"{str(path)!r}: tag {chosen!r} at step {event.step} is not a number")
        by_step[int(event.step)] = float(value.reshape(()).item())
    steps = sorted(by_step)
    args: dict[str, Any] = {}
    if "args/text_summary" in tensors:  # the Trainer's TrainingArguments as JSON (TensorBoardCallback)
        texts = tensor_util.make_ndarray(events.Tensors("args/text_summary")[-1].tensor_proto).reshape(-1)
        try:
            parsed = json.loads(texts[0].decode("utf-8") if isinstance(texts[0], bytes) else str(texts[0]))
        except (IndexError, UnicodeDecodeError, json.JSONDecodeError):
            parsed = None
        args = parsed if isinstance(parsed, dict) else {}
    run = _TensorBoardRun(path, chosen, events.FirstEventTimestamp(), steps, [by_step[k] for k in steps], args)
    return run, scalars


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
        _open_file(path)
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
        source=str(source), l2=np.array(values, dtype=np.float64), steps=np.array(steps), meta=meta, kind="TensorBoard"
    )


def _newest_checkpoint_state(directory: Path) -> Path | None:
    found = []
    for state in directory.glob("checkpoint-*/trainer_state.json"):
        match = re.fullmatch(r"checkpoint-(\d+)", state.parent.name)
        if match and state.is_file():
            found.append((int(match.group(1)), state))
    return max(found)[1] if found else None


def _run_directory_log(directory: Path) -> GradNormLog:
    if (directory / RECORDER_FILE).is_file():
        return load_grad_norms(directory / RECORDER_FILE)
    state = directory / "trainer_state.json"
    if state.is_file() or (state := _newest_checkpoint_state(directory)) is not None:
        return load_grad_norms(state)
    if any(p.is_file() for p in directory.rglob(f"{EVENT_FILE_PREFIX}*")):
        return load_tensorboard(directory)
    raise GradNormSourceError(
        f"{str(directory)!r} holds no gradient norms: looked for {RECORDER_FILE} (GradNormRecorderCallback), "
        "trainer_state.json (at the top, else in the newest checkpoint-*/) and TensorBoard event files "
        f"({EVENT_FILE_PREFIX}*, in any subfolder); pass a file, or the run's output_dir"
    )


def load_grad_norms(source: str | os.PathLike | Sequence[float]) -> GradNormLog:
    """Read gradient norms from any supported source (see the module docstring).

    A directory is searched in this order, and the first found is used (its path is the log's ``source``):
    ``grad_norms.json`` (the recorder's file), ``trainer_state.json`` (else the newest
    ``checkpoint-*/trainer_state.json``), then TensorBoard event files below it (`load_tensorboard`).
    """
    if not isinstance(source, (str, os.PathLike)):
        values = np.asarray(source, dtype=object)
        return GradNormLog(source="<list>", l2=values, l1=values, kind="list")
    if Path(source).is_dir():
        return _run_directory_log(Path(source))
    path = _open_file(source)
    if path.name.startswith(EVENT_FILE_PREFIX):
        return load_tensorboard(path)
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
        "(recorder file or trainer_state.json), .csv (e.g. a W&B export), a TensorBoard event file "
        f"({EVENT_FILE_PREFIX}*) or a run directory"
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
