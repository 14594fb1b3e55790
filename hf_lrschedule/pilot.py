"""Pilot runs: a fraction of the training budget gathers the gradient norms, then the full run is refined.

The parent side lives here (no torch): it runs the user's own training command twice, in two phases that the
child processes learn from environment variables (the contract below), computes the schedule in between, and
caches the result. The child side is `integrations/pilot_hooks.py` (the Trainer patch, `run_pilot`) and `integrations/accelerate.py`
(`RefinedRun`, for custom loops).

Environment contract (read by `plan_for_phase`, which the `linear_refined` factory calls, and by the pilot hooks in
every child process):

* ``HF_LRSCHEDULE_PHASE``: ``pilot`` or ``full`` (unset: a normal run);
* ``HF_LRSCHEDULE_PILOT_DIR``: the pilot folder;
* ``HF_LRSCHEDULE_PILOT_FRACTION``: ``f``; ``HF_LRSCHEDULE_PILOT_MAPPING``: ``extend`` or ``stretch``;
* ``HF_LRSCHEDULE_SCHEDULE``: in the full phase, the schedule file the run must use.

How the pilot's norms become the full run's profile (``mapping``), see `pilot_profile`:

* ``extend`` (default): the pilot runs the first ``f*T`` steps of the real run (linear decay over ``T``) and its
  norms fill fractions ``[0, f)`` of the profile; the rest of the profile holds the median of the pilot's last
  quarter. The refined schedule is then a data-driven warmup followed by linear decay.
* ``stretch``: the pilot is a complete short run (linear decay over ``f*T`` steps) and its norm profile is
  stretched to ``T`` by training fraction (measured worse than linear in a first test: see the README).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .config import RefinedScheduleConfig
from .options import RefineOptions
from .refine import describe_schedule, refinement_details
from .sources import atomic_write_json, load_grad_norms, load_schedule, schedule_payload

ENV_PHASE = "HF_LRSCHEDULE_PHASE"
ENV_DIR = "HF_LRSCHEDULE_PILOT_DIR"
ENV_FRACTION = "HF_LRSCHEDULE_PILOT_FRACTION"
ENV_MAPPING = "HF_LRSCHEDULE_PILOT_MAPPING"
ENV_SCHEDULE = "HF_LRSCHEDULE_SCHEDULE"

logger = logging.getLogger("hf_lrschedule")

MAPPINGS = ("extend", "stretch")
#: Fewest optimizer steps a pilot may have: fewer leave the median filter and the warmup estimate nothing to use.
MIN_PILOT_STEPS = 10

NORMS_FILE = "grad_norms.json"
SCHEDULER_FILE = "scheduler_seen.json"
ERROR_FILE = "pilot_error.json"
SCHEDULE_FILE = "schedule.json"
PLOT_FILE = "schedule.png"
MANIFEST_FILE = "manifest.json"
RUN_DIR = "run"


class PilotError(RuntimeError):
    """The pilot could not produce a schedule; the message says why and what to do."""


@dataclass(frozen=True)
class PilotSettings:
    """What a child process needs to know about the phase it runs in (from the environment)."""

    phase: str | None
    directory: Path | None = None
    fraction: float = 0.1
    mapping: str = "extend"
    schedule: Path | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> PilotSettings:
        env = os.environ if environ is None else environ
        phase = env.get(ENV_PHASE) or None
        if phase not in (None, "pilot", "full"):
            raise ValueError(f"{ENV_PHASE} must be 'pilot' or 'full' (or unset), got {phase!r}")
        return cls(
            phase=phase,
            directory=Path(env[ENV_DIR]) if env.get(ENV_DIR) else None,
            fraction=float(env.get(ENV_FRACTION, "0.1")),
            mapping=env.get(ENV_MAPPING, "extend"),
            schedule=Path(env[ENV_SCHEDULE]) if env.get(ENV_SCHEDULE) else None,
        )

    def pilot_steps(self, num_training_steps: int) -> int:
        """Optimizer steps of the pilot for a full run of `num_training_steps`; a clear error if too few."""
        steps = math.ceil(self.fraction * num_training_steps)
        if steps < MIN_PILOT_STEPS:
            smallest = MIN_PILOT_STEPS / num_training_steps
            raise PilotError(
                f"--fraction {self.fraction} gives a pilot of {steps} optimizer steps for a run of "
                f"{num_training_steps}; refinement needs at least {MIN_PILOT_STEPS}: use --fraction "
                f"{math.ceil(smallest * 1000) / 1000:g} or more"
            )
        return min(steps, num_training_steps)


_override: PilotSettings | None = None


def active_settings() -> PilotSettings:
    """The phase this process runs in: an in-process `run_pilot`'s settings, else the environment's."""
    return _override if _override is not None else PilotSettings.from_env()


@contextmanager
def override_settings(settings: PilotSettings) -> Iterator[None]:
    global _override
    previous, _override = _override, settings
    try:
        yield
    finally:
        _override = previous


def report_error(settings: PilotSettings, message: str) -> None:
    """Leave a child's error where the parent reads it (a traceback in the child's output is hard to find)."""
    if settings.directory is not None:
        atomic_write_json(settings.directory / ERROR_FILE, {"message": message})


def mark_scheduler_seen(settings: PilotSettings, **info: Any) -> None:
    """Written by the `linear_refined` factory: proof that the command uses the schedule the full phase sets."""
    if settings.directory is not None:
        atomic_write_json(settings.directory / SCHEDULER_FILE, info)


@dataclass(frozen=True)
class PhasePlan:
    """What the `linear_refined` factory builds in this process: a config and the run it spans."""

    config: RefinedScheduleConfig
    num_training_steps: int
    num_warmup_steps: int
    is_pilot: bool = False


def plan_for_phase(config: RefinedScheduleConfig, num_training_steps: int, num_warmup_steps: int) -> PhasePlan:
    """The schedule this process's phase uses, for a run of `num_training_steps` with `num_warmup_steps` warmup.

    * no pilot: `config` as given;
    * pilot phase: plain linear decay over the full run (`extend`) or over the pilot's steps only (`stretch`); the
      factory's call is recorded (`scheduler_seen.json`), as proof that the full phase can set the schedule;
    * full phase: the pilot's schedule file replaces any `grad_norms` / `schedule` given.
    """
    settings = active_settings()
    if settings.phase == "pilot":
        try:
            pilot_steps = settings.pilot_steps(num_training_steps)
        except PilotError as error:
            report_error(settings, str(error))
            raise
        mark_scheduler_seen(settings, num_training_steps=num_training_steps, num_warmup_steps=num_warmup_steps)
        length = pilot_steps if settings.mapping == "stretch" else num_training_steps
        warmup = min(num_warmup_steps * length // num_training_steps, length - 1)
        if settings.mapping == "extend" and warmup >= pilot_steps:
            # Measured (benchmark, Llama with a tuned 20 % warmup): a pilot that ends inside the warmup sees only the
            # ramp's small-LR norms and refines to a schedule with no warmup of its own; the full run then needs the
            # user's warmup kept (it matched or beat linear) and lost to linear without it.
            logger.warning(
                "linear_refined: the pilot (%d steps) ends inside the warmup (%d steps): its norms come from the ramp "
                "only and say nothing about the run after it; use a --fraction above the warmup's share (%.2f)",
                pilot_steps, warmup, warmup / num_training_steps,
            )
        return PhasePlan(RefinedScheduleConfig(), length, warmup, is_pilot=True)
    if settings.phase == "full" and settings.schedule is not None:
        if config.grad_norms is not None or config.schedule is not None:
            logger.warning("linear_refined: the pilot's schedule %s replaces the grad_norms/schedule given", settings.schedule)
        config = config.replace(grad_norms=None, schedule=str(settings.schedule))
    return PhasePlan(config, num_training_steps, num_warmup_steps)


def pilot_profile(
    values: np.ndarray, steps: np.ndarray, num_training_steps: int, mapping: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """The full run's norm profile from a pilot's norms: (values, positions) for `refinement_details`."""
    if mapping == "stretch":
        return values, None
    if mapping != "extend":
        raise ValueError(f"mapping must be one of {MAPPINGS}, got {mapping!r}")
    finite = np.isfinite(values) & (values > 0)
    if not finite.any():
        return values, None  # refinement raises its own clear error
    tail = values[finite][-max(1, finite.sum() // 4) :]
    hold = float(np.median(tail))
    positions = (steps.astype(float) - 1.0) / num_training_steps  # update s used step s - 1 of the schedule
    end_of_pilot = float(steps[-1]) / num_training_steps
    ext_values = np.concatenate([values, [hold, hold]])
    ext_positions = np.concatenate([positions, [end_of_pilot, 1.0]])
    if end_of_pilot >= 1.0:  # a pilot as long as the run: nothing to extend
        return values, positions
    return ext_values, ext_positions


#: Files named in the command whose contents enter the cache key: scripts and configs. Other files (data, models,
#: outputs the command writes) enter by path only; use --force after changing them in place.
KEYED_SUFFIXES = (".py", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".sh")


def cache_key(command: Sequence[str], settings: dict[str, Any]) -> str:
    """Hash of the command line, the scripts and configs it names, and the pilot settings."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"command": list(command), "settings": settings, "version": __version__}).encode())
    for token in command:
        path = Path(token.split("=", 1)[-1])
        if path.suffix.lower() in KEYED_SUFFIXES and path.is_file():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": sys.version.split()[0], "hf_lrschedule": __version__}
    for name in ("torch", "transformers", "accelerate", "peft", "trl"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def compute_pilot_schedule(directory: Path, options: RefineOptions | None = None, *, plot: bool = True) -> dict[str, Any]:
    """Refine from the pilot's norms file; write schedule.json (and the PNG) atomically. Returns a summary."""
    norms_path = directory / NORMS_FILE
    if not norms_path.is_file():
        raise PilotError(
            f"the pilot recorded no gradient norms ({norms_path} is missing): the command ran no optimizer step "
            "through a Trainer or a RefinedRun loop. Is it a training command with --lr_scheduler_type "
            "linear_refined?"
        )
    options = options if options is not None else RefineOptions()
    norm = options.norm
    log = load_grad_norms(norms_path)
    meta = log.meta
    total = int(meta["num_training_steps"])
    mapping = meta.get("pilot_mapping", "extend")
    values = log.series(norm)
    profile, positions = pilot_profile(values, log.steps, total, mapping)
    details = refinement_details(profile, total, options, positions=positions)
    settings = {**options.to_dict(), "mapping": mapping}
    atomic_write_json(
        directory / SCHEDULE_FILE,
        schedule_payload(
            details.multipliers, num_training_steps=total, source=str(norms_path), settings=settings,
            peak_fraction=details.peak_fraction,
        ),
    )
    png = None
    if plot:
        from .plotting import plot_refinement

        png = plot_refinement(
            details, values, directory / PLOT_FILE, title=f"pilot: {len(values)} of {total} steps ({mapping})",
            norm=norm, raw_positions=(log.steps - 1) / (log.steps[-1] if mapping == "stretch" else total),
        )
    return {
        "num_training_steps": total,
        "pilot_steps": int(log.steps[-1]) if log.steps is not None and log.steps.size else len(values),
        "peak_fraction": details.peak_fraction,
        "plot": str(png) if png else None,
        "settings": settings,
        "seeds": meta.get("seeds"),
    }


class Progress:
    """One line per tenth of the phase: step / total, elapsed, ETA (flushed lines, so a pipe or a log file shows them).

    Printed by the Trainer's pilot phase (`PilotCallback`) and by `RefinedRun` in both phases; a Trainer's full
    phase is the user's own run and shows its own progress (tqdm or logs).
    """

    def __init__(self, label: str, total: int):
        self.label, self.total = label, max(1, total)
        self.start = time.perf_counter()
        self.every = max(1, self.total // 10)

    def update(self, step: int) -> None:
        if step % self.every and step != self.total:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / max(step, 1) * (self.total - step)
        print(f"[hf-lrschedule] {self.label}: step {step}/{self.total}, {elapsed:.1f} s elapsed, ETA {eta:.1f} s", flush=True)


def default_pilot_dir(key: str) -> Path:
    return Path("hf_lrschedule_pilot") / key[:12]


def _run_phase(command: Sequence[str], env: dict[str, str], label: str) -> float:
    print(f"[hf-lrschedule] {label}: {shlex.join(command)}", flush=True)
    start = time.perf_counter()
    process = subprocess.Popen(list(command), env=env)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        process.wait()
        raise PilotError(f"{label} interrupted; nothing was kept that a rerun would trust") from None
    if code != 0:
        raise PilotError(f"{label} failed with exit code {code}; see its output above")
    return time.perf_counter() - start


def run_pilot_command(
    command: Sequence[str],
    *,
    fraction: float,
    out: str | os.PathLike | None = None,
    pilot_only: bool = False,
    force: bool = False,
    mapping: str = "extend",
    options: RefineOptions | None = None,
) -> dict[str, Any]:
    """Run `command` as a pilot (fraction `fraction` of its steps), refine, then run it in full with the schedule."""
    if not command:
        raise PilotError("no training command given: put it after `--`, e.g. `hf-lrschedule pilot -- python train.py ...`")
    if not 0.0 < fraction <= 1.0:
        raise PilotError(f"--fraction must be in (0, 1], got {fraction}")
    if mapping not in MAPPINGS:
        raise PilotError(f"--mapping must be one of {MAPPINGS}, got {mapping!r}")
    options = options if options is not None else RefineOptions()
    refine_settings = options.to_dict()
    key = cache_key(command, {"fraction": fraction, "mapping": mapping, **refine_settings})
    directory = Path(out) if out is not None else default_pilot_dir(key)
    directory = directory.resolve()
    manifest_path = directory / MANIFEST_FILE
    manifest = _trusted_manifest(manifest_path, key) if not force else None

    if manifest is None:
        _clean(directory)
        directory.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update({ENV_PHASE: "pilot", ENV_DIR: str(directory), ENV_FRACTION: repr(fraction), ENV_MAPPING: mapping})
        env.pop(ENV_SCHEDULE, None)
        try:
            pilot_seconds = _run_phase(command, env, f"pilot phase ({fraction:g} of the run)")
        except PilotError:
            error = _child_error(directory)
            if error:
                raise PilotError(error) from None
            raise
        error = _child_error(directory)
        if error:
            raise PilotError(error)
        if not (directory / SCHEDULER_FILE).is_file():
            raise PilotError(
                "the command did not build a linear_refined scheduler: add `--lr_scheduler_type linear_refined` "
                "(Trainer scripts) or use hf_lrschedule.RefinedRun (accelerate loops), or the full phase could not "
                "use the refined schedule"
            )
        summary = compute_pilot_schedule(directory, options)
        manifest = {
            "status": "complete",
            "cache_key": key,
            "command": list(command),
            "fraction": fraction,
            "mapping": mapping,
            "refine": refine_settings,
            "num_training_steps": summary["num_training_steps"],
            "pilot_steps": summary["pilot_steps"],
            "pilot_seconds": pilot_seconds,
            "peak_fraction": summary["peak_fraction"],
            "seeds": summary["seeds"],
            "files": {name: file_sha256(directory / name) for name in (NORMS_FILE, SCHEDULE_FILE)},
            "plot": summary["plot"],
            "versions": library_versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        atomic_write_json(manifest_path, manifest)  # written last: its presence means the pilot is usable
    else:
        print(f"[hf-lrschedule] reusing the pilot in {directory} (same command and settings; --force redoes it)")

    result = dict(manifest, directory=str(directory), schedule=str(directory / SCHEDULE_FILE))
    result["description"] = describe_schedule(load_schedule(directory / SCHEDULE_FILE)["multipliers"])
    if not pilot_only:
        env = dict(os.environ)
        env.update({ENV_PHASE: "full", ENV_SCHEDULE: str(directory / SCHEDULE_FILE)})
        for name in (ENV_DIR, ENV_FRACTION, ENV_MAPPING):
            env.pop(name, None)
        result["full_seconds"] = _run_phase(command, env, "full phase (refined schedule)")
    print(summary_text(result), flush=True)
    return result


def summary_text(result: dict[str, Any]) -> str:
    """The pilot's closing lines: the two phases' steps and times, and what the refined schedule changes."""
    lines = [
        "[hf-lrschedule] summary",
        (
            f"  pilot: {result['pilot_steps']} of {result['num_training_steps']} steps "
            f"({result['fraction']:g} of the run, mapping {result['mapping']}), {result['pilot_seconds']:.1f} s"
        ),
    ]
    if "full_seconds" in result:
        share = result["pilot_seconds"] / result["full_seconds"] if result["full_seconds"] > 0 else float("nan")
        lines.append(f"  full run: {result['full_seconds']:.1f} s; pilot / full wall time = {share:.2f}")
    lines.append(f"  refined peak at {100 * result['peak_fraction']:.1f}% of training")
    if result.get("description"):
        lines.append(f"  against linear: {result['description']}")
    lines.append(f"  schedule: {result['schedule']}")
    if result.get("plot"):
        lines.append(f"  plot: {result['plot']}")
    return "\n".join(lines)


def _trusted_manifest(path: Path, key: str) -> dict[str, Any] | None:
    """The manifest of a finished pilot with the same key whose files are intact, else None."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("status") != "complete" or manifest.get("cache_key") != key:
        return None
    for name, digest in (manifest.get("files") or {}).items():
        file = path.parent / name
        if not file.is_file() or file_sha256(file) != digest:
            return None
    return manifest


def _clean(directory: Path) -> None:
    """Remove what an earlier, unfinished pilot left (never anything outside the pilot folder)."""
    for name in (MANIFEST_FILE, NORMS_FILE, SCHEDULER_FILE, ERROR_FILE, SCHEDULE_FILE, PLOT_FILE):
        (directory / name).unlink(missing_ok=True)
    shutil.rmtree(directory / RUN_DIR, ignore_errors=True)


def _child_error(directory: Path) -> str | None:
    try:
        return json.loads((directory / ERROR_FILE).read_text(encoding="utf-8"))["message"]
    except (OSError, ValueError, KeyError):
        return None
