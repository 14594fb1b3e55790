"""The child side of the pilot: the Trainer patch, the accelerate loop API (`RefinedRun`) and `run_pilot`.

In the pilot phase (see `hf_lrschedule.pilot` for the environment contract) every `Trainer` built by the user's
script gets a `PilotCallback`: it records the gradient norms, stops after the pilot's steps, sends checkpoints and
logs to the pilot folder instead of the user's output dir, and ends the process once the norms are saved.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import sys
import time
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
    active_settings,
    compute_pilot_schedule,
    override_settings,
    report_error,
)
from ..recording import GradNormRecorder
from ..refine import resolve_options
from .trainer_callback import GradNormRecorderCallback

logger = logging.getLogger("hf_lrschedule")


class _Progress:
    """One line per tenth of the phase: step / total, elapsed, ETA."""

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


def _end_pilot_process() -> None:
    """End a pilot process once its norms are saved: the full phase runs in a new process.

    Under a launcher, the user's DDP model still holds the process group and would reach interpreter shutdown, where
    gloo can abort a rank (see `leave_process_group`) and fail the launch; we cannot drop the user's objects, so the
    ranks meet, leave the group and end without interpreter shutdown.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        sys.exit(0)
    from .accelerate import leave_process_group

    torch.distributed.barrier()
    leave_process_group()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class PilotCallback(GradNormRecorderCallback):
    """Records every step's gradient norms, stops after the pilot's share of the run, then ends the process."""

    def __init__(self, settings: PilotSettings, exit_when_done: bool = True):
        super().__init__(path=settings.directory / NORMS_FILE, extra_meta={"pilot": True, "pilot_mapping": settings.mapping})
        self.settings = settings
        self.exit_when_done = exit_when_done
        self.stop_at = 0
        self.progress: _Progress | None = None

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
            self.progress = _Progress("pilot", self.stop_at)

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
            _end_pilot_process()


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


class RefinedRun:
    """The pilot's two phases for a custom accelerate loop: total steps, a step hook, a "should stop" check.

    Outside `hf-lrschedule pilot` it is a plain run: `create_scheduler` builds `linear_refined` from the kwargs
    given, `clip_grad_norm_` clips (and records if `record_to` is given), `step_end` prints progress.

    Example::

        run = RefinedRun(accelerator, num_training_steps=T)
        scheduler = run.create_scheduler(optimizer)
        for batch in loader:
            with accelerator.accumulate(model):
                accelerator.backward(model(**batch).loss)
                run.clip_grad_norm_(model.parameters(), max_norm=1.0)
                optimizer.step(); scheduler.step(); optimizer.zero_grad()
            if accelerator.sync_gradients and run.step_end():
                break
        run.finish()
    """

    def __init__(self, accelerator, *, num_training_steps: int, record_to: str | None = None, record_l1: bool | None = None):
        self.accelerator = accelerator
        self.num_training_steps = int(num_training_steps)
        self.settings = active_settings()
        self.update = 0
        self.recorder: GradNormRecorder | None = None
        self.record_l1 = record_l1
        self.stop_at = self.num_training_steps
        if self.settings.phase == "pilot":
            try:
                self.stop_at = self.settings.pilot_steps(self.num_training_steps)
            except PilotError as error:
                if accelerator.is_main_process:
                    report_error(self.settings, str(error))
                raise
            record_to = str(self.settings.directory / NORMS_FILE)
        if record_to is not None:
            meta = {"num_training_steps": self.num_training_steps, "world_size": accelerator.num_processes}
            if self.settings.phase == "pilot":
                meta.update(pilot=True, pilot_mapping=self.settings.mapping, pilot_steps=self.stop_at)
            self.recorder = GradNormRecorder(record_to, meta=meta)
        label = {"pilot": "pilot", "full": "full run"}.get(self.settings.phase or "", "training")
        self.progress = _Progress(label, self.stop_at) if accelerator.is_main_process else None

    @property
    def is_pilot(self) -> bool:
        return self.settings.phase == "pilot"

    def create_scheduler(self, optimizer, *, num_warmup_steps: int = 0, **lr_scheduler_kwargs):
        """The prepared `linear_refined` scheduler for this phase (see `create_accelerate_scheduler`)."""
        from ..recording import optimizer_family
        from .accelerate import create_accelerate_scheduler

        name = type(getattr(optimizer, "optimizer", optimizer)).__name__
        if self.recorder is not None:
            self.recorder.meta.update(optimizer=name, optimizer_family=optimizer_family(name))
            if self.record_l1 is None:
                self.record_l1 = optimizer_family(name) == "adam"
        return create_accelerate_scheduler(
            self.accelerator, optimizer, num_training_steps=self.num_training_steps,
            num_warmup_steps=num_warmup_steps, **lr_scheduler_kwargs,
        )

    def clip_grad_norm_(self, parameters, max_norm: float | None) -> float | None:
        """Clip like `accelerator.clip_grad_norm_` and record the pre-clip norm of this update."""
        from .accelerate import clip_grad_norm_and_record

        return clip_grad_norm_and_record(
            self.accelerator, parameters, max_norm, self.recorder, self.update + 1, record_l1=bool(self.record_l1)
        )

    def step_end(self) -> bool:
        """Call once per optimizer update (when `accelerator.sync_gradients`); True when the loop should stop."""
        self.update += 1
        if self.progress is not None:
            self.progress.update(self.update)
        return self.update >= self.stop_at

    def finish(self) -> None:
        """Save the norms (main process). In the pilot phase, also end the process: the full phase follows."""
        if self.recorder is not None and self.accelerator.is_main_process and len(self.recorder):
            self.recorder.save()
        if self.is_pilot:
            _end_pilot_process()


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
    Returns the schedule file, which `trainer.args.lr_scheduler_kwargs` now names.
    """
    from transformers.trainer_utils import SchedulerType

    directory = Path(out).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    settings = PilotSettings(phase="pilot", directory=directory, fraction=fraction, mapping=mapping)
    saved_args = copy.deepcopy(trainer.args)
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
        trainer.args = saved_args
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
