"""`hf-lrschedule diagnose`: the run's health from any gradient-norm source (the parser and its handler)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .health import curves_from_log, diagnose_log
from .health_report import format_report
from .readers import load_grad_norms


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``diagnose`` on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "diagnose",
        help="the run's health: loss spikes/oscillation, gradient-norm variation, whether the run settled",
        description="Read a run (recorder JSON, trainer_state.json, TensorBoard event files, W&B CSV, or a run "
        "directory holding one of them) and report the three signs to watch (loss, gradient norms, end of run), each "
        "with its value, threshold, verdict (ok / watch / act) and steps, what refinement makes of the norms, and "
        "recommendations. The loss, LR and eval loss are used where the source has them.",
    )
    parser.add_argument(
        "source",
        help="gradient-norm file, or a run directory (searched for grad_norms.json, then trainer_state.json, also in "
        "the newest checkpoint-*, then TensorBoard event files)",
    )
    parser.add_argument("--json", action="store_true", help="print the diagnosis as JSON instead of the text report")
    parser.add_argument("--plot", help="also draw a PNG: loss, norms with refinement's band, LR, events marked")
    parser.add_argument(
        "--steps", type=int, help="optimizer steps T of the run to refine for (default: the source run's, if it says)"
    )
    parser.set_defaults(handler=run_diagnose)
    return parser


def run_diagnose(args: argparse.Namespace) -> int:
    if args.steps is not None and args.steps <= 0:
        raise ValueError(f"--steps must be a positive number of optimizer steps, got {args.steps}")
    if args.plot and Path(args.plot).suffix.lower() != ".png":
        raise ValueError(f"--plot writes a PNG; give a path ending in .png, got {args.plot!r}")
    log = load_grad_norms(args.source)
    diagnosis = diagnose_log(log, num_training_steps=args.steps)
    if args.json:
        print(json.dumps(diagnosis.to_dict(), indent=1, sort_keys=True, allow_nan=False))
    else:
        print(format_report(diagnosis))
    if args.plot:
        from .health_plot import plot_health

        plot_health(diagnosis, args.plot, **curves_from_log(log))
        print(f"wrote {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0
