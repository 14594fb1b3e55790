"""`hf-lrschedule transfer` and `hf-lrschedule extend`: the CLI of `transfer` and `continuation` (thin: parse, call,
print, write)."""

from __future__ import annotations

import argparse
import json

from .continuation import continue_schedule, run_history
from .formats import atomic_write_json
from .transfer import DECAY_TYPES, SCHEDULE_NAMES, transfer_learning_rate


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction of training in [0, 1), got {text}")
    return value


def _transfer(args: argparse.Namespace) -> int:
    result = transfer_learning_rate(
        args.lr,
        schedule=args.schedule,
        num_training_steps=args.steps,
        to_schedule=args.to_schedule,
        to_num_training_steps=args.to_steps,
        warmup_fraction=args.warmup,
        decay_fraction=args.decay_fraction,
        decay_type=args.decay_type,
        grad_norms=args.grad_norms,
    )
    to_schedule = args.to_schedule or args.schedule
    to_steps = args.to_steps or args.steps
    if args.json:
        sides = (("from", args.schedule, args.steps, result.source_terms), ("to", to_schedule, to_steps, result.target_terms))
        print(json.dumps({
            "learning_rate": result.learning_rate,
            "ratio": result.ratio,
            **{key: {"schedule": str(name), "steps": steps, "distance_term": terms.distance_term,
                     "noise_term": terms.noise_term} for key, name, steps, terms in sides},
            "grad_norms": args.grad_norms,
        }, indent=1, sort_keys=True))
        return 0
    print(f"from: {args.schedule}, {args.steps} steps, lr {args.lr:g}")
    print(f"to:   {to_schedule}, {to_steps} steps")
    print(f"norms: {args.grad_norms or 'constant'}")
    print(f"ratio: {result.ratio:.4f}")
    print(f"learning rate: {result.learning_rate:.6g}")
    return 0


def _extend(args: argparse.Namespace) -> int:
    history = run_history(
        args.run,
        from_step=args.from_checkpoint,
        base_learning_rate=args.base_lr,
        warmup_steps=args.warmup_steps,
        grad_norms=args.grad_norms,
        constant_norms=args.constant_norms,
    )
    for note in history.notes:
        print(note)
    result = continue_schedule(
        history.past, args.to, planned_multipliers=history.planned, grad_norms=history.grad_norms
    )
    info = {"source": history.source}
    if history.base_learning_rate is not None:
        info["base_learning_rate"] = history.base_learning_rate
    atomic_write_json(args.output, result.payload(**info))
    k, total = result.past_steps, result.num_training_steps
    print(
        f"continuation of updates {k + 1}-{total}: rewarm to {result.rewarm:.4f} of the base learning rate, then "
        f"down to {result.multipliers[-2]:.4f} (L-BFGS-B: {result.iterations} iterations, {result.seconds:.2f} s)"
    )
    print(f"bound: {result.planned_bound:.4g} for the planned run, {result.bound:.4g} continued (same units)")
    print(f"wrote {args.output}")
    print(
        f"resume: Trainer(..., max_steps={total}, warmup_steps=0, lr_scheduler_type='linear_refined', "
        f"lr_scheduler_kwargs={{'schedule': '{args.output}'}}).train(resume_from_checkpoint='.../checkpoint-{k}')"
        + ("" if history.base_learning_rate is None else f" with learning_rate={history.base_learning_rate:g}")
    )
    if args.plot:
        from .plotting import plot_continuation

        plot_continuation(result.multipliers, k, args.plot, planned=history.planned, title=str(history.source))
        print(f"wrote {args.plot}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `transfer` and `extend` on the `hf-lrschedule` subparsers."""
    transfer = sub.add_parser(
        "transfer",
        help="the bound-optimal base LR of another schedule or horizon",
        description="Given a base learning rate tuned for one schedule and horizon, print the one the last-iterate "
        "bound predicts for another schedule and/or horizon, and their ratio (Schaipp et al., arXiv 2501.18965).",
    )
    transfer.add_argument("--lr", type=float, required=True, help="the tuned base learning rate")
    schedule_help = f"{', '.join(SCHEDULE_NAMES)}, or a schedule file"
    transfer.add_argument("--schedule", required=True, help=f"the tuned run's schedule: {schedule_help}")
    transfer.add_argument("--steps", type=int, required=True, help="the tuned run's optimizer steps")
    transfer.add_argument("--to-schedule", help="the new run's schedule (default: the same)")
    transfer.add_argument("--to-steps", type=int, help="the new run's optimizer steps (default: the same)")
    transfer.add_argument("--warmup", type=_fraction, default=0.0, help="warmup fraction of both runs (default 0)")
    transfer.add_argument(
        "--decay-fraction", type=float, default=0.2, help="warmup_stable_decay: decay share of training (default 0.2)"
    )
    transfer.add_argument(
        "--decay-type", choices=DECAY_TYPES, default="cosine",
        help="warmup_stable_decay: decay shape (default cosine, as transformers)",
    )
    transfer.add_argument(
        "--grad-norms",
        help="norm source (file or run directory) resampled to each horizon; needed by linear_refined (default: "
        "constant norms)",
    )
    transfer.add_argument("--json", action="store_true", help="print the result as JSON")
    transfer.set_defaults(handler=_transfer)

    extend = sub.add_parser(
        "extend",
        help="continue a run to more steps with the bound-optimal schedule",
        description="Read the learning rates (and gradient norms) a run used, and write the schedule file that "
        "keeps its first k multipliers and continues to --to steps with the schedule minimising the last-iterate "
        "bound. Resume from checkpoint-k with max_steps=T2, warmup_steps=0, the same learning_rate, "
        "lr_scheduler_type linear_refined and lr_scheduler_kwargs {'schedule': OUTPUT}.",
    )
    extend.add_argument(
        "run",
        help="Trainer output_dir (trainer_state.json at the top or in checkpoint-*), pilot folder, trainer_state.json, "
        "recorder file, or the schedule file the run used",
    )
    extend.add_argument("--to", type=int, required=True, metavar="T2", help="optimizer steps of the continued run")
    extend.add_argument(
        "--from-checkpoint", type=int, metavar="K", help="step to continue from (default: the newest checkpoint)"
    )
    extend.add_argument("-o", "--output", required=True, help="schedule JSON to write")
    extend.add_argument("--plot", help="also draw a PNG of past and continuation")
    extend.add_argument("--base-lr", type=float, help="the run's base learning rate (default: the largest logged)")
    extend.add_argument(
        "--warmup-steps", type=int, default=0, help="a schedule file only: the run's num_warmup_steps (default 0)"
    )
    norms = extend.add_mutually_exclusive_group()
    norms.add_argument("--grad-norms", help="norm source of the run (default: the run's own log)")
    norms.add_argument("--constant-norms", action="store_true", help="assume constant gradient norms")
    extend.set_defaults(handler=_extend)
