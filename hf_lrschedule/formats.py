"""The files the library writes and reads: names, format versions, schedule payloads, and the one atomic writer.

Stdlib only. Nothing here unpickles or evaluates file content.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import GradNormSourceError

GRAD_NORMS_FORMAT = "hf_lrschedule.grad_norms"
SCHEDULE_FORMAT = "hf_lrschedule.schedule"
FORMAT_VERSION = 1
#: The recorder's file name in a run's output_dir (and in a pilot folder).
RECORDER_FILE = "grad_norms.json"


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` through a temporary file in the same folder and `os.replace`: never a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(fd, 0o666 & ~_umask())  # mkstemp makes the file private (0600); give it the mode open() would
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def atomic_write_json(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    # allow_nan=False: non-finite values must be written as null by the caller, so every reader can parse them.
    return atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=True, allow_nan=False) + "\n")


def open_source_file(path: str | os.PathLike) -> Path:
    """`path` as a `Path` if it is a non-empty file; else an error that says what was expected."""
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


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise GradNormSourceError(f"{str(path)!r} is not a text file; expected JSON or CSV") from None
    except json.JSONDecodeError as error:
        raise GradNormSourceError(
            f"{str(path)!r} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
            "was the file truncated?"
        ) from None


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
    file = open_source_file(path)
    data = read_json(file)
    if not isinstance(data, dict) or data.get("format") != SCHEDULE_FORMAT:
        raise GradNormSourceError(f"{str(file)!r} is not a schedule file (format {SCHEDULE_FORMAT!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise GradNormSourceError(
            f"{str(file)!r} has format_version {data.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    multipliers = data.get("multipliers")
    if (
        not isinstance(multipliers, list)
        or len(multipliers) < 2
        or not all(isinstance(m, (int, float)) and not isinstance(m, bool) and 0.0 <= m <= 1.0 for m in multipliers)
    ):
        raise GradNormSourceError(f"{str(file)!r}: 'multipliers' must be a list of at least 2 numbers in [0, 1]")
    return data


def library_versions() -> dict[str, str]:
    """Python and the training libraries' versions, as written into manifests and benchmark results."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": sys.version.split()[0], "hf_lrschedule": __version__}
    for name in ("torch", "transformers", "accelerate", "peft", "trl"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions
