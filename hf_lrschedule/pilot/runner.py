"""The parent side of `hf-lrschedule pilot` (no torch): run the user's command as a pilot, refine, run it in full.

The two phases are the same command line in two child processes; `protocol` says how they learn their phase. A
finished pilot is cached in its folder (``manifest.json``, written last) and reused for the same command and
settings.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import signal
import subprocess
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import PilotError, RefinementWarning
from ..formats import atomic_write_json, library_versions, load_schedule, schedule_payload
from ..health import Diagnosis, diagnose_pilot
from ..health_report import brief_report
from ..options import RefineOptions
from ..readers import load_grad_norms
from ..refine import Refinement, describe_schedule, refinement_details
from .options import PilotOptions
from .protocol import (
    ERROR_FILE,
    MANIFEST_FILE,
    NORMS_FILE,
    PLOT_FILE,
    REQUEST_FILE,
    RUN_DIR,
    SCHEDULE_FILE,
    SCHEDULER_FILE,
    Phase,
    child_environ,
    read_error,
)

#: Files named in the command whose contents enter the cache key: scripts and configs. Other files (data, models,
#: outputs the command writes) enter by path only; use --force after changing them in place.
#: (JSON files are not keyed: commands name their outputs as .json too. A reused pilot whose refinement options
#: differ from the full run's lr_scheduler_kwargs is caught in the full phase instead: `phase.phase_kwargs`.)
KEYED_SUFFIXES = (".py", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".sh")


def pilot_profile(values: np.ndarray, steps: np.ndarray, num_training_steps: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The full run's norm profile from a pilot's norms: (values, positions) for `refinement_details`.

    The pilot ran the first steps of the real run, so its norms fill fractions ``[0, f)`` of the profile; the rest
    holds the median of the pilot's last quarter (the refined schedule is then linear decay after the pilot's span).
    """
    finite = np.isfinite(values) & (values > 0)
    if not finite.any():
        return values, None  # refinement raises its own clear error
    tail = values[finite][-max(1, finite.sum() // 4) :]
    hold = float(np.median(tail))
    positions = (steps.astype(float) - 1.0) / num_training_steps  # update s used step s - 1 of the schedule
    end_of_pilot = float(steps[-1]) / num_training_steps
    if end_of_pilot >= 1.0:  # a pilot as long as the run: nothing to extend
        return values, positions
    return np.concatenate([values, [hold, hold]]), np.concatenate([positions, [end_of_pilot, 1.0]])


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


def pilot_refinement(log, options: RefineOptions) -> Refinement:
    """The full run's refinement from a pilot's recorder file (`pilot_profile` of its norms)."""
    total = int(log.meta["num_training_steps"])
    profile, positions = pilot_profile(log.series(options.norm), log.steps, total)
    return refinement_details(profile, total, options, positions=positions)


def pilot_health(directory: Path, options: RefineOptions) -> Diagnosis | None:
    """`hf_lrschedule.health.diagnose_pilot` of the pilot in `directory`; None, with a warning, if it fails: the
    diagnosis informs, it never fails a pilot."""
    try:
        log = load_grad_norms(directory / NORMS_FILE)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RefinementWarning)  # refine_pilot has shown them already
            details = pilot_refinement(log, options)
        return diagnose_pilot(log, details, options=options)
    except Exception as error:  # noqa: BLE001 - the schedule is made; the diagnosis is a bonus
        warnings.warn(f"hf_lrschedule: the pilot's health diagnosis failed ({type(error).__name__}: {error}); the "
                      "pilot and its schedule are unaffected", RuntimeWarning, stacklevel=2)
        return None


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
    log = load_grad_norms(norms_path)
    total = int(log.meta["num_training_steps"])
    values = log.series(options.norm)
    details = pilot_refinement(log, options)
    atomic_write_json(
        directory / SCHEDULE_FILE,
        schedule_payload(
            details.multipliers, num_training_steps=total, source=str(norms_path), settings=options.to_dict(),
            peak_fraction=details.peak_fraction,
        ),
    )
    png = None
    if plot:
        from ..plotting import plot_refinement

        png = plot_refinement(
            details, values, directory / PLOT_FILE, title=f"pilot: {len(values)} of {total} steps",
            norm=options.norm, raw_positions=(log.steps - 1) / total,
        )
    return {
        "num_training_steps": total,
        "pilot_steps": int(log.steps[-1]) if log.steps is not None and log.steps.size else len(values),
        "peak_fraction": details.peak_fraction,
        "plot": str(png) if png else None,
        "settings": options.to_dict(),
        "seeds": log.meta.get("seeds"),
    }


NOT_LINEAR_REFINED = (
    "the command did not build a linear_refined scheduler: add `--lr_scheduler_type linear_refined` (Trainer "
    "scripts) or use hf_lrschedule.RefinedRun (accelerate loops), or the full phase could not use the refined schedule"
)


def refine_pilot(directory: Path) -> dict[str, Any]:
    """`compute_pilot_schedule` with the refinement options the pilot phase merged (``scheduler_seen.json``)."""
    try:
        seen = json.loads((directory / SCHEDULER_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PilotError(NOT_LINEAR_REFINED) from None
    return compute_pilot_schedule(directory, RefineOptions(**seen["refine"]))


def default_pilot_dir(key: str) -> Path:
    return Path("hf_lrschedule_pilot") / key[:12]


def _run_phase(command: Sequence[str], phase: Phase, label: str) -> float:
    """Run `command` in `phase`; a failure raises the child's own error (``pilot_error.json``) if it left one."""
    (phase.directory / ERROR_FILE).unlink(missing_ok=True)
    print(f"[hf-lrschedule] {label}: {shlex.join(command)}", flush=True)
    start = time.perf_counter()
    process = subprocess.Popen(list(command), env=child_environ(phase))
    try:
        code = process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        process.wait()
        raise PilotError(f"{label} interrupted; nothing was kept that a rerun would trust") from None
    if code != 0:
        error = read_error(phase.directory)
        if error:
            raise PilotError(error if phase.is_pilot else f"{phase.name} phase: {error}")
        raise PilotError(f"{label} failed with exit code {code}; see its output above")
    return time.perf_counter() - start


def run_pilot_command(
    command: Sequence[str], pilot: PilotOptions | None = None, refine: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Run `command` as a pilot, refine, then run it in full with the schedule (unless `pilot.pilot_only`).

    Args:
        command (`Sequence[str]`): the training command line (a Trainer script, `accelerate launch ...`, a
            front-end's CLI) using `linear_refined` or `RefinedRun`.
        pilot (`PilotOptions`, *optional*): the pilot's settings.
        refine (`Mapping`, *optional*): refinement options given on the command line (only those given); they are
            merged with the command's `lr_scheduler_kwargs` in the pilot phase, a conflict is an error naming both.

    Returns:
        `dict`: the manifest, plus ``directory``, ``schedule``, ``description``, ``health`` (the pilot's diagnosis,
        `hf_lrschedule.health_report.brief_report` lines; None if it could not be made) and ``full_seconds`` (if run).
    """
    pilot = pilot if pilot is not None else PilotOptions()
    refine = dict(refine or {})
    unknown = sorted(set(refine) - set(RefineOptions.names()))
    if unknown:
        raise PilotError(f"unknown refinement option(s) {unknown}; valid: {', '.join(RefineOptions.names())}")
    try:
        RefineOptions(**refine)  # a bad flag fails here, not in the child after the model has loaded
    except ValueError as error:
        raise PilotError(str(error)) from None
    if not command:
        raise PilotError("no training command given: put it after `--`, e.g. `hf-lrschedule pilot -- python train.py ...`")
    key = cache_key(command, {"fraction": pilot.fraction, "refine": refine})
    directory = (Path(pilot.out) if pilot.out is not None else default_pilot_dir(key)).resolve()
    manifest_path = directory / MANIFEST_FILE
    manifest = _trusted_manifest(manifest_path, key) if not pilot.force else None

    if manifest is None:
        _clean(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_json(directory / REQUEST_FILE, {"fraction": pilot.fraction, "refine": refine})
        pilot_seconds = _run_phase(command, Phase("pilot", directory), f"pilot phase ({pilot.fraction:g} of the run)")
        error = read_error(directory)
        if error:
            raise PilotError(error)
        try:
            summary = refine_pilot(directory)
        except (TypeError, ValueError) as error:  # e.g. norm="l1" and no l1 norms recorded
            raise PilotError(f"the pilot's norms could not be refined: {error}") from None
        manifest = {
            "status": "complete",
            "cache_key": key,
            "command": list(command),
            "fraction": pilot.fraction,
            "refine": summary["settings"],
            "refine_given": refine,
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
    diagnosis = pilot_health(directory, RefineOptions(**manifest["refine"]))
    result["health"] = brief_report(diagnosis) if diagnosis is not None else None
    if diagnosis is not None and diagnosis.verdict == "act":  # said before the full run, which the user may stop
        print(act_text(result["health"], full_run=not pilot.pilot_only), flush=True)
    if not pilot.pilot_only:
        result["full_seconds"] = _run_phase(command, Phase("full", directory), "full phase (refined schedule)")
    print(summary_text(result), flush=True)
    return result


def summary_text(result: dict[str, Any]) -> str:
    """The pilot's closing lines: the two phases' steps and times, and what the refined schedule changes."""
    lines = [
        "[hf-lrschedule] summary",
        (
            f"  pilot: {result['pilot_steps']} of {result['num_training_steps']} steps "
            f"({result['fraction']:g} of the run), {result['pilot_seconds']:.1f} s"
        ),
    ]
    if "full_seconds" in result:
        share = result["pilot_seconds"] / result["full_seconds"] if result["full_seconds"] > 0 else float("nan")
        lines.append(f"  full run: {result['full_seconds']:.1f} s; pilot / full wall time = {share:.2f}")
    lines.append(f"  refined peak at {100 * result['peak_fraction']:.1f}% of training")
    if result.get("refine"):
        lines.append("  refinement options: " + ", ".join(f"{k}={v}" for k, v in sorted(result["refine"].items())))
    if result.get("description"):
        lines.append(f"  against linear: {result['description']}")
    lines.append(f"  schedule: {result['schedule']}")
    if result.get("plot"):
        lines.append(f"  plot: {result['plot']}")
    if result.get("health"):
        lines.append("  health of the pilot's steps (hf_lrschedule.health; the end of the run is judged after it):")
        lines += [f"    {line}" for line in result["health"]]
    return "\n".join(lines)


def act_text(health: Sequence[str], *, full_run: bool) -> str:
    """What the parent prints when the pilot's diagnosis has an `act` sign (`health`: its `brief_report`)."""
    when = "before the full run starts (Ctrl-C stops it)" if full_run else "before you run it in full"
    return "\n".join([f"[hf-lrschedule] the pilot's health needs action {when}:", *(f"  {line}" for line in health)])


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
    for name in (MANIFEST_FILE, REQUEST_FILE, NORMS_FILE, SCHEDULER_FILE, ERROR_FILE, SCHEDULE_FILE, PLOT_FILE):
        (directory / name).unlink(missing_ok=True)
    shutil.rmtree(directory / RUN_DIR, ignore_errors=True)
