"""`linear_refined` in transformers: the `LambdaLR` factory and its registration as an `lr_scheduler_type`.

Registration mutates transformers' own `SchedulerType` enum and `TYPE_TO_SCHEDULER_FUNCTION` table in place
(never rebinds them), so every holder of a reference sees the new name. It is idempotent.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from .._enums import extend_str_enum
from ..config import RefinedScheduleConfig
from ..errors import GradNormSourceError, RefinementWarning
from ..formats import load_schedule
from ..readers import GradNormLog, is_run_reference, load_grad_norms
from ..recording import optimizer_family
from ..refine import refinement_details
from ..schedules import check_steps, linear_decay, table_schedule

logger = logging.getLogger("hf_lrschedule")

SCHEDULER_NAME = "linear_refined"
ENUM_MEMBER = "LINEAR_REFINED"
#: A log whose run length differs from this one by more than this factor is used with a warning.
LENGTH_RATIO_WARNING = 4.0
#: Set on the log record of the "no grad_norms given" hint, so that a pilot phase (linear decay on purpose) can drop it.
LINEAR_FALLBACK = "hf_lrschedule_linear_fallback"


class LinearRefinedLambda:
    """The multiplier of `linear_refined` at a scheduler step: a picklable callable object.

    Its state is plain Python data in `__dict__`, which `LambdaLR.state_dict()` saves into `scheduler.pt` and
    `load_state_dict()` writes back: a resumed run gets the same table even if the norms file is gone, and
    `torch.load(weights_only=True)` reads it. `steps_per_update` > 1 undoes accelerate's habit of stepping a
    prepared scheduler once per process per optimizer update.
    """

    def __init__(
        self,
        *,
        num_training_steps: int,
        num_warmup_steps: int = 0,
        table: list[float] | None = None,
        min_lr_ratio: float = 0.0,
        steps_per_update: int = 1,
        missing_source: str | None = None,
        source: str | None = None,
        options: dict[str, Any] | None = None,
    ):
        self.num_training_steps = int(num_training_steps)
        self.num_warmup_steps = int(num_warmup_steps)
        self.table = None if table is None else [float(v) for v in table]
        self.min_lr_ratio = float(min_lr_ratio)
        self.steps_per_update = int(steps_per_update)
        self.missing_source = missing_source
        self.source = source  # what the table came from, for reports (`integrations.reporting`)
        self.options = None if options is None else dict(options)

    def __call__(self, current_step: int) -> float:
        if self.missing_source is not None:
            if current_step == 0:
                return 0.0  # LambdaLR evaluates step 0 while it is built, before a resume can restore the table
            raise FileNotFoundError(
                f"linear_refined: the gradient-norm source {self.missing_source!r} does not exist. Give an existing "
                "file in lr_scheduler_kwargs['grad_norms'] (a resumed run needs none: scheduler.pt holds the table)."
            )
        step = current_step // self.steps_per_update
        if self.table is None:
            return linear_decay(
                step,
                num_training_steps=self.num_training_steps,
                num_warmup_steps=self.num_warmup_steps,
                min_lr_ratio=self.min_lr_ratio,
            )
        return table_schedule(
            step,
            table=self.table,
            num_training_steps=self.num_training_steps,
            num_warmup_steps=self.num_warmup_steps,
            min_lr_ratio=self.min_lr_ratio,
        )


#: What a run is built for: when a resumed run asks for other values, its new schedule replaces the saved one.
RUN_KEYS = ("num_training_steps", "num_warmup_steps", "source", "min_lr_ratio")


def keeps_saved_schedule(built: dict[str, Any], saved: dict[str, Any] | None) -> bool:
    """Whether a resume keeps the saved `LinearRefinedLambda` state (`saved`) over the one just built (`built`).

    The saved one is kept for the same run (same `RUN_KEYS`: a bit-identical resume, even if the norms file
    changed), when the new one cannot be built (its source is gone) and when the resume gave no source at all
    (a resume needs none). A different horizon, warmup, source or floor (`hf-lrschedule extend`: ``max_steps=T2``
    and the continuation's schedule file) gets the new one, as does a state saved by another scheduler.
    """
    if not saved or "num_training_steps" not in saved:
        return False  # transformers' own lambdas (a `partial`) save {}: nothing to restore
    if built.get("missing_source") is not None:
        return True
    if built.get("table") is None and saved.get("table") is not None and built.get("source") == describe_source(
        RefinedScheduleConfig()
    ):
        return True
    return all(built.get(key) == saved.get(key) for key in RUN_KEYS)


class RefinedLambdaLR(LambdaLR):
    """`LambdaLR` whose `load_state_dict` lets a resumed run change its schedule (`keeps_saved_schedule`).

    `LambdaLR.load_state_dict` writes the saved lambda's `__dict__` over the new one: that is how a resume gets its
    table without the norms file, but it would also give a run resumed with a new horizon and schedule (continued
    training) its old table back, silently. When the new schedule wins, the learning rate of the next update is set
    from it too: the optimizer state holds the old schedule's value for it.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        built = [dict(fn.__dict__) for fn in self.lr_lambdas]
        saved = list(state_dict.get("lr_lambdas") or [None] * len(built))
        super().load_state_dict(state_dict)
        switched = False
        for fn, new, old in zip(self.lr_lambdas, built, saved):
            if isinstance(fn, LinearRefinedLambda) and not keeps_saved_schedule(new, old):
                fn.__dict__.update(new)
                switched = switched or old != new
            elif isinstance(fn, LinearRefinedLambda) and old and new.get("num_training_steps") != old.get(
                "num_training_steps"
            ):
                warnings.warn(
                    f"linear_refined: resumed with num_training_steps={new.get('num_training_steps')}, but the saved "
                    f"schedule was built for {old.get('num_training_steps')} steps and no new source was given (or "
                    "it is gone): the saved one continues, held at its last value after its end. To train longer, "
                    "pass a continued schedule (`hf-lrschedule extend`) in lr_scheduler_kwargs['schedule']",
                    RefinementWarning,
                    stacklevel=2,
                )
        if switched:
            logger.warning(
                "linear_refined: resumed at step %d with a schedule other than the saved one (%s); it applies from the "
                "next update",
                self.last_epoch,
                self.lr_lambdas[0].source,
            )
            values = [base * fn(self.last_epoch) for base, fn in zip(self.base_lrs, self.lr_lambdas)]
            for group, value in zip(self.optimizer.param_groups, values):
                group["lr"] = value
            self._last_lr = values


def build_table(
    config: RefinedScheduleConfig,
    decay_steps: int,
    optimizer: Optimizer | None = None,
    warmup_fraction: float | None = None,
) -> tuple[list[float] | None, dict[str, Any] | None]:
    """The multiplier table (``decay_steps + 1`` entries, by training fraction) for `config` and the refinement
    options it was made with (for run reports), or ``(None, None)`` for linear decay. `warmup_fraction` is this
    run's warmup share, checked against the warmup the norms were recorded under."""
    if config.schedule is not None:
        schedule = load_schedule(config.schedule)
        if "continuation" in schedule:
            warn_if_continuation_misread(schedule, decay_steps, warmup_fraction)
        settings = schedule.get("settings")  # what `refine` or the pilot used, if the file says
        return [float(m) for m in schedule["multipliers"]], settings if isinstance(settings, dict) else None
    if config.grad_norms is None:
        return None, None
    log = load_grad_norms(config.grad_norms)
    recorded_family = log.meta.get("optimizer_family")
    if optimizer is not None and recorded_family:
        family = optimizer_family(type(getattr(optimizer, "optimizer", optimizer)).__name__)
        if family != recorded_family:
            warnings.warn(
                f"{log.source} was recorded with a {recorded_family}-family optimizer "
                f"({log.meta.get('optimizer')}), this run uses {type(optimizer).__name__} ({family}); the norms of "
                "one optimizer are a poor guide for another",
                RefinementWarning,
                stacklevel=3,
            )
    if warmup_fraction is not None:
        warn_if_warmup_dropped(log, warmup_fraction)
    logged_steps = log.meta.get("num_training_steps") or (int(log.steps[-1]) if log.steps is not None and log.steps.size else None)
    if logged_steps and not log.meta.get("pilot") and max(logged_steps / decay_steps, decay_steps / logged_steps) > LENGTH_RATIO_WARNING:
        warnings.warn(
            f"{log.source} comes from a run of {logged_steps} steps, this schedule has {decay_steps}; the norms "
            "are stretched by training fraction, which is less reliable the more the lengths differ",
            RefinementWarning,
            stacklevel=3,
        )
    try:
        details = refinement_details(
            log.series(config.options.norm), decay_steps, config.options, positions=log.positions()
        )
    except (TypeError, ValueError) as error:
        raise GradNormSourceError(f"linear_refined: cannot refine from {log.source}: {error}") from error
    logger.info(
        "linear_refined: refined from %s (%s norms), peak at %.1f%% of training",
        log.source,
        config.options.norm,
        100 * details.peak_fraction,
    )
    return details.multipliers.tolist(), config.options.to_dict()


def warn_if_continuation_misread(schedule: dict[str, Any], decay_steps: int, warmup_fraction: float | None) -> None:
    """Warn when a continued schedule (`hf-lrschedule extend`) is not read one entry per update: its first entries
    are the past learning rates, warmup included, so the run needs no warmup and exactly its number of steps."""
    steps = schedule.get("num_training_steps")
    if warmup_fraction or steps != decay_steps:
        warnings.warn(
            f"this schedule file continues a run: it holds one multiplier per update for max_steps={steps} with no "
            f"warmup (its past includes the run's own), but this run has {decay_steps} steps after a warmup of "
            f"{100 * (warmup_fraction or 0):.1f} %: the past is misplaced. Resume with max_steps={steps} and "
            "warmup_steps=0",
            RefinementWarning,
            stacklevel=4,
        )


def warn_if_warmup_dropped(log: GradNormLog, warmup_fraction: float) -> None:
    """Warn when the norms were recorded under a warmup that this run drops (or cuts to less than half).

    Norms recorded under a warmup show the ramp, not the early spike that would give the refined schedule its own
    warmup; run without the warmup, such schedules lost to linear in the benchmark (docs/design.md, "The pilot and
    the user's warmup")."""
    recorded_warmup, recorded_steps = log.meta.get("num_warmup_steps"), log.meta.get("num_training_steps")
    try:
        recorded = float(recorded_warmup) / float(recorded_steps)
    except (TypeError, ValueError, ZeroDivisionError):
        return  # an older recorder file, a W&B export, ...: nothing to compare with
    if recorded > 0 and warmup_fraction < recorded / 2:
        warnings.warn(
            f"{log.source} was recorded under a warmup of {100 * recorded:.1f} % of its run; this run's warmup is "
            f"{100 * warmup_fraction:.1f} %. Norms recorded under a warmup say little about the start of a run "
            "without it, and such runs lost to linear in our benchmark: keep the warmup you used "
            f"(num_warmup_steps / --warmup_steps {recorded:.2f} of the run)",
            RefinementWarning,
            stacklevel=4,
        )


def get_linear_refined_schedule(
    optimizer: Optimizer,
    num_warmup_steps: int,
    num_training_steps: int,
    last_epoch: int = -1,
    *,
    steps_per_update: int = 1,
    **lr_scheduler_kwargs: Any,
) -> LambdaLR:
    """
    Create the `linear_refined` schedule: the refined schedule of Defazio et al. (arXiv 2310.07831) computed from
    the gradient norms of an earlier run, or plain linear decay when none are given.

    Args:
        optimizer (`torch.optim.Optimizer`):
            The optimizer for which to schedule the learning rate (each param group keeps its own base LR).
        num_warmup_steps (`int`):
            Steps of linear warmup before the refined part: keep the warmup you use with `linear` (a ramp to the
            table's first value; refinement adds its own where the norms spike).
        num_training_steps (`int`):
            The total number of optimizer steps.
        last_epoch (`int`, *optional*, defaults to -1):
            The index of the last epoch when resuming training.
        steps_per_update (`int`, *optional*, defaults to 1):
            Scheduler steps per optimizer update (see `integrations.accelerate`).
        lr_scheduler_kwargs:
            See `RefinedScheduleConfig` (`grad_norms`, `schedule`, `min_lr_ratio`) and `RefineOptions` (`norm`,
            `smoothing`, `guard`, `max_norm_ratio`, `tolerance`).

    Return:
        `torch.optim.lr_scheduler.LambdaLR` with the appropriate schedule.
    """
    config = RefinedScheduleConfig.from_kwargs(lr_scheduler_kwargs)
    check_steps(num_training_steps, num_warmup_steps)
    missing = table = options_used = None
    source = config.schedule if config.schedule is not None else config.grad_norms
    if isinstance(source, str) and not os.path.exists(source) and not is_run_reference(source):
        missing = source  # an error at the first step, unless a resume restores the table first
    else:
        table, options_used = build_table(
            config, num_training_steps - num_warmup_steps, optimizer, num_warmup_steps / num_training_steps
        )
        if table is None:
            logger.warning(
                "linear_refined: no grad_norms given, using linear decay. A Trainer run records its gradient norms "
                "in <output_dir>/grad_norms.json (unless HF_LRSCHEDULE_CALLBACKS=0): to refine the next run, pass "
                "lr_scheduler_kwargs={'grad_norms': 'that file'}, or use `hf-lrschedule pilot`.",
                extra={LINEAR_FALLBACK: True},
            )
    multiplier = LinearRefinedLambda(
        source=describe_source(config),
        options=options_used,
        num_training_steps=num_training_steps,
        num_warmup_steps=num_warmup_steps,
        table=table,
        min_lr_ratio=config.min_lr_ratio,
        steps_per_update=steps_per_update,
        missing_source=missing,
    )
    return RefinedLambdaLR(optimizer, multiplier, last_epoch)


def describe_source(config: RefinedScheduleConfig) -> str:
    """Where the schedule of `config` comes from, in a few words (for run reports)."""
    if config.schedule is not None:
        return f"schedule file {config.schedule}"
    if isinstance(config.grad_norms, (str, os.PathLike)):
        return f"gradient norms {config.grad_norms}"
    if config.grad_norms is not None:
        return f"{len(config.grad_norms)} gradient norms given in lr_scheduler_kwargs"
    return "none (linear decay)"


def extend_scheduler_type() -> None:
    """Add `linear_refined` to transformers' `SchedulerType` (idempotent)."""
    from transformers import trainer_utils

    extend_str_enum(trainer_utils.SchedulerType, ENUM_MEMBER, SCHEDULER_NAME)


def register_scheduler_function() -> None:
    """Add the factory to transformers' `TYPE_TO_SCHEDULER_FUNCTION` (idempotent)."""
    from transformers import optimization, trainer_utils

    extend_scheduler_type()
    optimization.TYPE_TO_SCHEDULER_FUNCTION[trainer_utils.SchedulerType(SCHEDULER_NAME)] = get_linear_refined_schedule


def register() -> None:
    """Make `linear_refined` a transformers `lr_scheduler_type` now (imports transformers)."""
    register_scheduler_function()
