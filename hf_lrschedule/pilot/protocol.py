"""The pilot's contract between `hf-lrschedule pilot` (the parent) and the training processes it starts.

Two environment variables tell a child process its phase:

* ``HF_LRSCHEDULE_PHASE``: ``pilot`` or ``full`` (unset: a normal run);
* ``HF_LRSCHEDULE_PILOT_DIR``: the pilot folder.

Everything else lies in files of the pilot folder, each written atomically:

* ``request.json`` (parent, before the pilot phase): the pilot's fraction and the refinement options given on the
  parent's command line (only those given, so the child can merge them with the run's ``lr_scheduler_kwargs``);
* ``scheduler_seen.json`` (child, pilot phase): the run's length and warmup and the merged refinement options;
  proof that the command trains with ``linear_refined``, so the full phase can set its schedule;
* ``grad_norms.json`` (child, pilot phase): the recorded norms;
* ``pilot_error.json`` (child): why the pilot phase failed, for the parent to print;
* ``schedule.json`` and ``schedule.png`` (parent): the refined schedule the full phase runs with;
* ``manifest.json`` (parent, written last): the pilot is complete and may be reused;
* ``run/``: the pilot phase's own output_dir (the user's output_dir is never written by a pilot).

Stdlib only: the start-up hook loads this file by its path, without importing the package (which may be what
fails), to learn the phase and to report a pilot's error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PHASE = "HF_LRSCHEDULE_PHASE"
ENV_DIR = "HF_LRSCHEDULE_PILOT_DIR"
PHASES = ("pilot", "full")

REQUEST_FILE = "request.json"
SCHEDULER_FILE = "scheduler_seen.json"
NORMS_FILE = "grad_norms.json"  # the recorder's own name, formats.RECORDER_FILE (a test checks they agree)
ERROR_FILE = "pilot_error.json"
SCHEDULE_FILE = "schedule.json"
PLOT_FILE = "schedule.png"
MANIFEST_FILE = "manifest.json"
RUN_DIR = "run"


@dataclass(frozen=True)
class Phase:
    """The phase a process runs in (`name` None: a normal run) and its pilot folder."""

    name: str | None = None
    directory: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Phase:
        env = os.environ if environ is None else environ
        name = env.get(ENV_PHASE) or None
        if name not in (None, *PHASES):
            raise ValueError(f"{ENV_PHASE} must be 'pilot' or 'full' (or unset), got {name!r}")
        directory = env.get(ENV_DIR)
        if name is not None and not directory:
            raise ValueError(f"{ENV_PHASE}={name} needs {ENV_DIR}, the pilot folder")
        return cls(name, Path(directory) if directory else None)

    @property
    def is_pilot(self) -> bool:
        return self.name == "pilot"

    @property
    def is_full(self) -> bool:
        return self.name == "full"

    def file(self, name: str) -> Path:
        return self.directory / name

    def environ(self) -> dict[str, str]:
        """The variables that put a child process into this phase."""
        return {ENV_PHASE: self.name, ENV_DIR: str(self.directory)}

    def request(self) -> dict[str, Any]:
        """The parent's request (empty when there is none: an in-process pilot passes its settings directly)."""
        try:
            return json.loads(self.file(REQUEST_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}

    def report_error(self, message: str) -> None:
        """Leave a child's error where the parent reads it (a traceback in the child's output is hard to find)."""
        report_error(message, self.directory)


def current_phase() -> Phase:
    return Phase.from_env()


def child_environ(phase: Phase, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) without any earlier phase, plus `phase`'s variables."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in (ENV_PHASE, ENV_DIR)}
    env.update(phase.environ())
    return env


def report_error(message: str, directory: str | os.PathLike | None = None) -> None:
    """Write ``pilot_error.json`` into `directory` (default: the environment's pilot folder); best effort."""
    directory = directory if directory is not None else os.environ.get(ENV_DIR)
    if not directory:
        return
    path = Path(directory) / ERROR_FILE
    try:
        from hf_lrschedule.formats import atomic_write_json
    except Exception:  # noqa: BLE001 - the package itself is broken: a plain write is the best left
        atomic_write_json = None
    try:
        if atomic_write_json is not None:
            atomic_write_json(path, {"message": message})
        else:
            path.write_text(json.dumps({"message": message}), encoding="utf-8")
    except OSError:
        pass


def read_error(directory: Path) -> str | None:
    try:
        return json.loads((directory / ERROR_FILE).read_text(encoding="utf-8"))["message"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
