"""The child side of a pilot, shared by the Trainer patch and `RefinedRun`: the phase's `lr_scheduler_kwargs`, the
pilot's plan (its length, the merged refinement options, the proof that `linear_refined` is used) and progress lines.

The `linear_refined` factory knows nothing of pilots: each phase hands it `lr_scheduler_kwargs` as a user would.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import PilotError
from ..formats import atomic_write_json
from ..options import RefineOptions, merge_options
from .options import PilotOptions
from .protocol import SCHEDULE_FILE, SCHEDULER_FILE, Phase, report_error

logger = logging.getLogger("hf_lrschedule")

#: The keys that name where a schedule comes from: a pilot phase trains on linear decay, the full phase on its file.
SOURCE_KEYS = ("grad_norms", "schedule")


def phase_kwargs(phase: Phase, lr_scheduler_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The run's `lr_scheduler_kwargs` for `phase`: every key of the user's is kept, except the norms source.

    * pilot phase: no source (linear decay over the full run, the user's warmup and floor kept);
    * full phase: ``schedule`` = the pilot's schedule file (it replaces a ``grad_norms``/``schedule`` given);
    * no phase: unchanged.
    """
    kwargs = dict(lr_scheduler_kwargs or {})
    if phase.name is None:
        return kwargs
    given = [key for key in SOURCE_KEYS if kwargs.pop(key, None) is not None]
    if phase.is_full:
        if given:
            logger.warning("linear_refined: the pilot's schedule replaces the %s given", " and ".join(given))
        schedule = phase.file(SCHEDULE_FILE)
        try:  # a pilot reused for a run whose options changed since (in a file the cache key does not cover)
            settings = json.loads(schedule.read_text(encoding="utf-8")).get("settings") or {}
            merge_options(("the pilot's schedule (rerun the pilot with --force)", settings),
                          ("the run's lr_scheduler_kwargs", kwargs))
        except OSError:
            pass  # the factory says the file is missing, as for any schedule file
        except ValueError as error:
            report_error(str(error), phase.directory)
            raise
        kwargs["schedule"] = str(schedule)
    return kwargs


def request_of(phase: Phase) -> tuple[PilotOptions, dict[str, Any]]:
    """The pilot options and the refinement options given on the parent's command line (from ``request.json``)."""
    request = phase.request()
    return PilotOptions(fraction=request.get("fraction", PilotOptions.fraction)), dict(request.get("refine") or {})


def plan_pilot(
    directory: Path,
    pilot: PilotOptions,
    explicit: Mapping[str, Any],
    *,
    explicit_where: str,
    num_training_steps: int,
    num_warmup_steps: int,
    lr_scheduler_kwargs: Mapping[str, Any] | None,
) -> tuple[int, RefineOptions]:
    """Check a pilot before it trains and write ``scheduler_seen.json``; returns the pilot's optimizer steps and the
    merged refinement options (with ``norm="l1"`` the recorder must record l1 norms, whatever the optimizer).

    The refinement options are those of `explicit` (a CLI flag, a `run_pilot` keyword) merged with the run's
    `lr_scheduler_kwargs`: given in both with different values, it is an error that names both. Any error is also
    left in the pilot folder for the parent and raised.
    """
    try:
        stop_at = pilot.pilot_steps(num_training_steps)
        options = merge_options((explicit_where, explicit), ("the run's lr_scheduler_kwargs", lr_scheduler_kwargs))
    except (PilotError, ValueError) as error:
        report_error(str(error), directory)
        raise
    atomic_write_json(
        directory / SCHEDULER_FILE,
        {"num_training_steps": num_training_steps, "num_warmup_steps": num_warmup_steps, "refine": options.to_dict()},
    )
    if num_warmup_steps >= stop_at:
        # A pilot inside the warmup sees only the ramp's small-LR norms (docs: design decisions, "the pilot and the
        # user's warmup").
        logger.warning(
            "linear_refined: the pilot (%d steps) ends inside the warmup (%d steps): its norms come from the ramp "
            "only and say nothing about the run after it; use a --fraction above the warmup's share (%.2f)",
            stop_at, num_warmup_steps, num_warmup_steps / num_training_steps,
        )
    return stop_at, options


class QuietLinearFallback(logging.Filter):
    """Drops the factory's "no grad_norms given" hint: a pilot phase trains on linear decay on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        from ..integrations.transformers import LINEAR_FALLBACK

        return not getattr(record, LINEAR_FALLBACK, False)


#: The one instance the pilot adds (`Logger.addFilter` ignores an instance already added).
quiet_linear_fallback = QuietLinearFallback()


class Progress:
    """One line per tenth of the phase: step / total, elapsed, ETA (flushed lines, so a pipe or a log file shows them).

    Printed by the Trainer's pilot phase and by `RefinedRun` in both phases; a Trainer's full phase is the user's
    own run and shows its own progress (tqdm or logs).
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
