"""The child side of the pilot for the Trainer: the phase hooks of the Trainer patch, and the in-process `run_pilot`.

Under `hf-lrschedule pilot` the Trainer patch (`integrations.trainer_patch`) applies `PhaseHooks`. In the pilot
phase every `Trainer` the user's script builds becomes a pilot (`PilotCallback`: records the norms, stops after the
pilot's steps, keeps its outputs in the pilot folder, ends the process); in both phases a `linear_refined` run gets
the phase's `lr_scheduler_kwargs` (`phase.phase_kwargs`).
"""

from __future__ import annotations

import copy
import logging
import random
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import PilotError, RefinementWarning
from ..health_report import brief_report
from ..integrations.accelerate import end_pilot_process
from ..integrations.reporting import find_refined_lambda
from ..integrations.trainer_callback import GradNormRecorderCallback
from ..integrations.trainer_patch import uses_linear_refined
from ..integrations.transformers import SCHEDULER_NAME
from ..options import RefineOptions
from .options import PilotOptions
from .phase import Progress, phase_kwargs, plan_pilot, quiet_linear_fallback, request_of
from .protocol import NORMS_FILE, RUN_DIR, SCHEDULE_FILE, SCHEDULER_FILE, Phase, report_error
from .runner import NOT_LINEAR_REFINED, pilot_health, refine_pilot

logger = logging.getLogger("hf_lrschedule")


class PilotCallback(GradNormRecorderCallback):
    """Records every step's gradient norms, stops after the pilot's share of the run, then ends the process."""

    replaces_automatic = False  # an in-process pilot (run_pilot): the run's own recorder stays for the full run

    def __init__(
        self,
        directory: Path,
        pilot: PilotOptions,
        explicit: Mapping[str, Any],
        *,
        explicit_where: str,
        exit_when_done: bool = True,
    ):
        super().__init__(path=directory / NORMS_FILE, extra_meta={"pilot": True})
        self.directory, self.pilot = directory, pilot
        self.explicit, self.explicit_where = dict(explicit), explicit_where
        self.exit_when_done = exit_when_done
        self.stop_at = 0
        self.progress: Progress | None = None

    def on_train_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        if find_refined_lambda(lr_scheduler) is None:
            report_error(NOT_LINEAR_REFINED, self.directory)
            raise PilotError(NOT_LINEAR_REFINED)
        self.stop_at, options = plan_pilot(
            self.directory, self.pilot, self.explicit, explicit_where=self.explicit_where,
            num_training_steps=state.max_steps, num_warmup_steps=args.get_warmup_steps(state.max_steps),
            lr_scheduler_kwargs=args.lr_scheduler_kwargs,
        )
        if options.norm == "l1":
            self.record_l1 = True
        self.extra_meta.update(
            {"pilot_steps": self.stop_at, "pilot_fraction": self.pilot.fraction, "seeds": [args.seed, args.data_seed]}
        )
        super().on_train_begin(args, state, control, lr_scheduler=lr_scheduler, **kwargs)
        if state.is_world_process_zero:
            self.progress = Progress("pilot", self.stop_at)

    def on_step_end(self, args, state, control, **kwargs):
        super().on_step_end(args, state, control, **kwargs)
        if self.progress is not None:
            self.progress.update(state.global_step)
        if state.global_step >= self.stop_at:
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        super().on_train_end(args, state, control, **kwargs)
        if self.exit_when_done:
            # The user's script would go on to evaluate, save or push the pilot's model: skip all that.
            print(f"[hf-lrschedule] pilot done after {state.global_step} steps; norms in {self.path}", flush=True)
            end_pilot_process()


def redirect_outputs(args, directory: Path) -> None:
    """Send the pilot's outputs to the pilot folder; no checkpoints, evaluation, hub pushes or best-model reload."""
    from transformers.trainer_utils import IntervalStrategy, SaveStrategy

    args.output_dir = str(directory / RUN_DIR)
    args.logging_dir = str(directory / RUN_DIR / "logs")
    args.save_strategy = SaveStrategy.NO
    args.eval_strategy = IntervalStrategy.NO
    args.load_best_model_at_end = False
    args.push_to_hub = False


def attach_pilot(trainer, callback: PilotCallback) -> PilotCallback:
    """Make `trainer` a pilot: `callback`, outputs under the pilot folder, no reporting integrations."""
    redirect_outputs(trainer.args, callback.directory)
    for existing in list(trainer.callback_handler.callbacks):
        if type(existing).__module__.startswith("transformers.integrations"):  # W&B, TensorBoard, ...
            trainer.remove_callback(existing)
    return callback.attach(trainer)


class PhaseHooks:
    """What `integrations.trainer_patch` does around `Trainer.__init__` in a phase of `hf-lrschedule pilot`."""

    def __init__(self, phase: Phase):
        self.phase = phase
        if phase.is_pilot:
            logger.addFilter(quiet_linear_fallback)

    def before_init(self, training_args) -> None:
        if self.phase.is_pilot:
            redirect_outputs(training_args, self.phase.directory)
        if uses_linear_refined(training_args):
            training_args.lr_scheduler_kwargs = phase_kwargs(self.phase, training_args.lr_scheduler_kwargs)

    def after_init(self, trainer) -> None:
        if self.phase.is_pilot:
            pilot, explicit = request_of(self.phase)
            callback = PilotCallback(self.phase.directory, pilot, explicit, explicit_where="hf-lrschedule pilot's flags")
            attach_pilot(trainer, callback)


def run_pilot(
    trainer,
    *,
    fraction: float = PilotOptions.fraction,
    out: str | Path = "hf_lrschedule_pilot",
    options: RefineOptions | None = None,
    **option_overrides: Any,
) -> Path:
    """Run a pilot of `trainer` in this process, then set it up to train with the refined schedule.

    The model's weights, the optimizer (if you passed one), the RNG states and the arguments are restored after the
    pilot, so the following `trainer.train()` starts from the same point, on the same data order, as it would have
    without the pilot. It costs one copy of the model's weights in CPU memory while the pilot runs.

    The refinement options are `options` and `option_overrides` merged with those in
    `trainer.args.lr_scheduler_kwargs` (the same option with different values in both is an error that names both);
    every other key of `lr_scheduler_kwargs` (`min_lr_ratio`, ...) is kept for the full run.

    Args:
        trainer (`transformers.Trainer`):
            The Trainer of the full run, not trained yet.
        fraction (`float`, *optional*, defaults to 0.1):
            Share of the optimizer steps the pilot runs (see `PilotOptions`).
        out (`str` or `Path`, *optional*, defaults to `"hf_lrschedule_pilot"`):
            Folder for the pilot's norms, schedule and plot.
        options (`RefineOptions`, *optional*):
            Refinement options (all of its fields count as given); `option_overrides` give single fields.

    Returns:
        `Path`: the schedule file, which `trainer.args.lr_scheduler_kwargs` now names.
    """
    from transformers.trainer_utils import SchedulerType

    unknown = sorted(set(option_overrides) - set(RefineOptions.names()))
    if unknown:
        raise TypeError(f"run_pilot got unknown refinement option(s) {unknown}; valid: {', '.join(RefineOptions.names())}")
    explicit = {**(options.to_dict() if options is not None else {}), **option_overrides}
    RefineOptions(**explicit)  # bad values fail here, before the trainer is touched
    directory = Path(out).resolve()
    pilot = PilotOptions(fraction=fraction, out=str(directory))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / SCHEDULER_FILE).unlink(missing_ok=True)
    user_args = trainer.args  # the caller's object: the pilot runs on a copy, so only the two scheduler fields
    trainer.args = copy.deepcopy(user_args)  # below ever change in it (its output_dir stays the full run's)
    user_kwargs = _linear_refined_kwargs(user_args)
    model = trainer.model
    saved_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    saved_optimizer = copy.deepcopy(trainer.optimizer.state_dict()) if trainer.optimizer is not None else None
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    saved_callbacks = list(trainer.callback_handler.callbacks)

    trainer.args.lr_scheduler_type = SchedulerType(SCHEDULER_NAME)
    trainer.args.lr_scheduler_kwargs = phase_kwargs(Phase("pilot", directory), user_kwargs)
    callback = PilotCallback(
        directory, pilot, explicit,
        explicit_where="run_pilot's options", exit_when_done=False,
    )
    attach_pilot(trainer, callback)
    logger.addFilter(quiet_linear_fallback)
    try:
        trainer.train()
    finally:
        logger.removeFilter(quiet_linear_fallback)
        trainer.callback_handler.callbacks = saved_callbacks
        trainer.args = user_args
        model.load_state_dict(saved_weights)
        if saved_optimizer is not None:
            trainer.optimizer.load_state_dict(saved_optimizer)
        else:
            trainer.optimizer = None
        trainer.lr_scheduler = None
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
    summary = refine_pilot(directory)
    schedule = directory / SCHEDULE_FILE
    trainer.args.lr_scheduler_type = SchedulerType(SCHEDULER_NAME)
    trainer.args.lr_scheduler_kwargs = phase_kwargs(Phase("full", directory), user_kwargs)
    logger.info("pilot done: peak at %.1f%% of training; schedule %s", 100 * summary["peak_fraction"], schedule)
    diagnosis = pilot_health(directory, RefineOptions(**summary["settings"]))
    if diagnosis is not None:  # an act sign is a warning: the user has not started the full run yet
        log = logger.warning if diagnosis.verdict == "act" else logger.info
        log("pilot health (before the full run):\n  %s", "\n  ".join(brief_report(diagnosis)))
    return schedule


def _linear_refined_kwargs(args) -> dict[str, Any]:
    """`args.lr_scheduler_kwargs` when they are linear_refined's; another scheduler's kwargs cannot apply to it."""
    kwargs = dict(args.lr_scheduler_kwargs or {})
    if kwargs and not uses_linear_refined(args):
        kind = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
        warnings.warn(
            f"run_pilot switches lr_scheduler_type {kind!r} to {SCHEDULER_NAME!r}; the lr_scheduler_kwargs of "
            f"{kind!r} ({sorted(kwargs)}) do not apply to it and are not used. Set lr_scheduler_type="
            f"'{SCHEDULER_NAME}' with its own kwargs (min_lr_ratio, tolerance, ...) to keep settings",
            RefinementWarning,
            stacklevel=3,
        )
        return {}
    return kwargs
