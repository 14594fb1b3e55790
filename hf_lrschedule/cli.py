"""`hf-lrschedule`: refine a schedule from gradient norms, show a schedule file, list schedules, run a pilot."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import __version__
from .errors import PilotError
from .formats import atomic_write_json, load_schedule, schedule_payload
from .options import RefineOptions
from .pilot.options import PilotOptions
from .readers import load_grad_norms
from .refine import describe_schedule, refinement_details

SUMMARY_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 0.95)


def schedule_summary(multipliers: Sequence[float]) -> str:
    """Peak position, the values at the start, 25/50/75/95 % of training (multipliers at fractions k/T), and what
    changes against linear decay in plain words."""
    values = np.asarray(multipliers, dtype=float)
    steps = values.size - 1
    peak = int(np.argmax(values))
    parts = [f"steps: {steps}", f"peak: step {peak} ({100 * peak / steps:.1f}% of training)"]
    parts += [f"at {int(100 * f)}%: {values[round(f * steps)]:.4f}" for f in SUMMARY_FRACTIONS]
    parts.append(f"against linear: {describe_schedule(values)}")
    return "\n".join(parts)


def _run_length(meta: dict) -> int | None:
    steps = meta.get("num_training_steps")
    return steps if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0 else None


def _refine(args: argparse.Namespace) -> int:
    if args.steps is not None and args.steps <= 0:
        raise ValueError(f"--steps must be a positive number of optimizer steps, got {args.steps}")
    options = RefineOptions.from_arguments(args)
    log = load_grad_norms(args.source)
    print(f"source: {log.describe()}")
    # a run directory's schedule names the file found in it; a file is named as given
    used = log.source if Path(args.source).is_dir() else str(args.source)
    steps = args.steps if args.steps is not None else _run_length(log.meta)
    if steps is None:
        raise ValueError(
            f"--steps is needed: {log.source} does not say how many optimizer steps its run had; pass the T of the "
            "run to schedule"
        )
    raw = log.series(options.norm)
    details = refinement_details(raw, steps, options, positions=log.positions())
    payload = schedule_payload(
        details.multipliers, num_training_steps=steps, source=used, settings=options.to_dict(),
        peak_fraction=details.peak_fraction,
    )
    atomic_write_json(args.output, payload)
    print(schedule_summary(details.multipliers))
    print(f"wrote {args.output}")
    if args.plot:
        from .plotting import plot_refinement

        raw = np.asarray(raw, dtype=float)
        plot_refinement(
            details, raw, args.plot, title=used, norm=options.norm, raw_positions=log.positions()
        )
        print(f"wrote {args.plot}")
    return 0


def _show(args: argparse.Namespace) -> int:
    data = load_schedule(args.schedule)
    print(schedule_summary(data["multipliers"]))
    for key in ("source", "settings"):
        if key in data:
            print(f"{key}: {data[key]}")
    return 0


def _pilot(args: argparse.Namespace) -> int:
    from .pilot.runner import run_pilot_command

    command = list(args.training_command)
    if command and command[0] == "--":
        command = command[1:]
    try:
        run_pilot_command(command, PilotOptions.from_arguments(args), RefineOptions.given_arguments(args))
    except PilotError as error:
        print(f"hf-lrschedule pilot: error: {error}", file=sys.stderr)
        return 1
    return 0


def _list(args: argparse.Namespace) -> int:
    from transformers.trainer_utils import SchedulerType

    import hf_lrschedule  # noqa: F401  (registers linear_refined)

    for member in SchedulerType:
        print(member.value)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-lrschedule",
        description="Refined learning-rate schedules (Defazio et al., arXiv 2310.07831) for the Hugging Face stack.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    refine = sub.add_parser(
        "refine",
        help="compute a refined schedule from gradient norms",
        description="Read gradient norms (recorder JSON, trainer_state.json, W&B CSV, TensorBoard event files, or a "
        "run directory holding one of them), write the refined schedule.",
    )
    refine.add_argument(
        "source",
        help="gradient-norm file, or a run directory (searched for grad_norms.json, then trainer_state.json, also in "
        "the newest checkpoint-*, then TensorBoard event files)",
    )
    refine.add_argument(
        "--steps", type=int, help="optimizer steps T of the run to schedule (default: the source run's, if it says)"
    )
    refine.add_argument("-o", "--output", required=True, help="schedule JSON to write")
    refine.add_argument("--plot", help="also draw a PNG of norms and schedule")
    RefineOptions.add_arguments(refine)
    refine.set_defaults(handler=_refine)

    from .continuation_cli import add_parsers as add_continuation_parsers

    add_continuation_parsers(sub)  # transfer, extend

    show = sub.add_parser("show", help="summarise a schedule file")
    show.add_argument("schedule", help="schedule JSON written by `refine` or the pilot")
    show.set_defaults(handler=_show)

    from .health_cli import add_parser as add_diagnose_parser

    add_diagnose_parser(sub)

    listing = sub.add_parser("list", help="list transformers' lr_scheduler_type values (with linear_refined)")
    listing.set_defaults(handler=_list)

    pilot = sub.add_parser(
        "pilot",
        help="pilot run + refined full run of your training command",
        description="Run COMMAND for a fraction of its optimizer steps, record the gradient norms, refine the "
        "schedule, then run COMMAND in full with it. COMMAND is your own command line (python train.py ..., "
        "accelerate launch ..., torchrun ...) using --lr_scheduler_type linear_refined or hf_lrschedule.RefinedRun. "
        "Refinement options may be given here or in the command's lr_scheduler_kwargs (with different values in "
        "both, it is an error); min_lr_ratio and the warmup are the command's own.",
        usage="hf-lrschedule pilot [options] -- COMMAND [ARGS...]",
    )
    PilotOptions.add_arguments(pilot)
    # only the flags given: merged with the command's lr_scheduler_kwargs in the pilot phase (a conflict is an error)
    RefineOptions.add_arguments(pilot, with_defaults=False)
    pilot.add_argument("training_command", nargs=argparse.REMAINDER, help="after --: the training command")
    pilot.set_defaults(handler=_pilot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _show_warning
            return args.handler(args)
    except (OSError, ValueError, TypeError) as error:
        print(f"hf-lrschedule {args.command}: error: {error}", file=sys.stderr)
        return 2


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
