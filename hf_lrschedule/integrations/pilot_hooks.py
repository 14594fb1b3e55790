"""The child side of the pilot for the Trainer: the Trainer patch and `run_pilot` (accelerate loops: `RefinedRun`).

In the pilot phase (see `hf_lrschedule.pilot` for the environment contract) every `Trainer` built by the user's
script gets a `PilotCallback`: it records the gradient norms, stops after the pilot's steps, sends checkpoints and
logs to the pilot folder instead of the user's output dir, and ends the process once the norms are saved.
"""

from __future__ import annotations

import copy
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..options import RefineOptions
from ..pilot import (
    NORMS_FILE,
    RUN_DIR,
    SCHEDULE_FILE,
    PilotError,
    PilotSettings,
    Progress,
    active_settings,
    compute_pilot_schedule,
    override_settings,
    report_error,
)
from ..refine import resolve_options
from .accelerate import end_pilot_process
from .trainer_callback import GradNormRecorderCallback

logger = logging.getLogger("hf_lrschedule")


class PilotCallback(GradNormRecorderCallback):
    """Records every step's gradient norms, stops after the pilot's share of the run, then ends the process."""

    def __init__(self, settings: PilotSettings, exit_when_done: bool = True):
        super().__init__(path=settings.directory / NORMS_FILE, extra_meta={"pilot": True, "pilot_mapping": settings.mapping})
        self.settings = settings
        self.exit_when_done = exit_when_done
        self.stop_at = 0
        self.progress: Progress | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        try:
            self.stop_at = self.settings.pilot_steps(state.max_steps)
        except PilotError as error:
            report_error(self.settings, str(error))
            raise
        self.extra_meta.update(
            {"pilot_steps": self.stop_at, "pilot_fraction": self.settings.fraction, "seeds": [args.seed, args.data_seed]}
        )
        super().on_train_begin(args, state, control, **kwargs)
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


def redirect_outputs(args, settings: PilotSettings) -> None:
    """Send the pilot's outputs to the pilot folder; no checkpoints, evaluation, hub pushes or best-model reload."""
    from transformers.trainer_utils import IntervalStrategy, SaveStrategy

    args.output_dir = str(settings.directory / RUN_DIR)
    args.logging_dir = str(settings.directory / RUN_DIR / "logs")
    args.save_strategy = SaveStrategy.NO
    args.eval_strategy = IntervalStrategy.NO
    args.load_best_model_at_end = False
    args.push_to_hub = False


def attach_pilot(trainer, settings: PilotSettings, exit_when_done: bool = True) -> PilotCallback:
    """Make `trainer` a pilot: the callback above, outputs under the pilot folder, no reporting integrations."""
    redirect_outputs(trainer.args, settings)
    for callback in list(trainer.callback_handler.callbacks):
        if type(callback).__module__.startswith("transformers.integrations"):  # W&B, TensorBoard, ...
            trainer.remove_callback(callback)
    return PilotCallback(settings, exit_when_done=exit_when_done).attach(trainer)


def patch_trainer() -> None:
    """Import hook of `transformers.trainer`: in the pilot phase, every new Trainer becomes a pilot."""
    settings = active_settings()
    if settings.phase != "pilot" or settings.directory is None:
        return
    from transformers import trainer as trainer_module

    original_init = trainer_module.Trainer.__init__
    if getattr(original_init, "_hf_lrschedule_pilot", False):
        return

    def __init__(self, *args, **kwargs):
        training_args = kwargs.get("args", args[1] if len(args) > 1 else None)
        if training_args is not None:  # before __init__, which creates the output dir and the hub repo
            redirect_outputs(training_args, settings)
        original_init(self, *args, **kwargs)
        attach_pilot(self, settings)

    __init__._hf_lrschedule_pilot = True  # type: ignore[attr-defined]
    trainer_module.Trainer.__init__ = __init__


def run_pilot(
    trainer,
    *,
    fraction: float = 0.1,
    out: str | Path = "hf_lrschedule_pilot",
    mapping: str = "extend",
    options: RefineOptions | None = None,
    **option_overrides: Any,
) -> Path:
    """Run a pilot of `trainer` in this process, then set it up to train with the refined schedule.

    The model's weights, the optimizer (if you passed one), the RNG states and the arguments are restored after the
    pilot, so the following `trainer.train()` starts from the same point, on the same data order, as it would have
    without the pilot. It costs one copy of the model's weights in CPU memory while the pilot runs.

    Args:
        trainer (`transformers.Trainer`):
            The Trainer of the full run, not trained yet.
        fraction (`float`, *optional*, defaults to 0.1):
            Share of the optimizer steps the pilot runs.
        out (`str` or `Path`, *optional*, defaults to `"hf_lrschedule_pilot"`):
            Folder for the pilot's norms, schedule and plot.
        mapping (`str`, *optional*, defaults to `"extend"`):
            How the pilot's norms become the full run's profile (see `hf_lrschedule.pilot`).
        options (`RefineOptions`, *optional*):
            The refinement options (default: `RefineOptions()`); `option_overrides` change single fields.

    Returns:
        `Path`: the schedule file, which `trainer.args.lr_scheduler_kwargs` now names.
    """
    from transformers.trainer_utils import SchedulerType

    directory = Path(out).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    settings = PilotSettings(phase="pilot", directory=directory, fraction=fraction, mapping=mapping)
    user_args = trainer.args  # the caller's object: the pilot runs on a copy, so only the two scheduler fields
    trainer.args = copy.deepcopy(user_args)  # below ever change in it (its output_dir stays the full run's)
    model = trainer.model
    saved_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    saved_optimizer = copy.deepcopy(trainer.optimizer.state_dict()) if trainer.optimizer is not None else None
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    saved_callbacks = list(trainer.callback_handler.callbacks)

    trainer.args.lr_scheduler_type = SchedulerType("linear_refined")
    trainer.args.lr_scheduler_kwargs = {}
    attach_pilot(trainer, settings, exit_when_done=False)
    try:
        with override_settings(settings):
            trainer.train()
    finally:
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
    summary = compute_pilot_schedule(directory, resolve_options(options, option_overrides))
    schedule = directory / SCHEDULE_FILE
    trainer.args.lr_scheduler_type = SchedulerType("linear_refined")
    trainer.args.lr_scheduler_kwargs = {"schedule": str(schedule)}
    logger.info("pilot done: peak at %.1f%% of training; schedule %s", 100 * summary["peak_fraction"], schedule)
    return schedule
