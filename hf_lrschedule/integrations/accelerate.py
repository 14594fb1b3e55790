"""`linear_refined` in custom `accelerate` loops: `RefinedRun` and its building blocks.

`RefinedRun` is the one API for a loop (scheduler, clip-and-record, pilot phases); the functions below it are its
building blocks. Caveat handled here, in one place: `accelerator.prepare(scheduler)` steps a scheduler `num_processes` times per
optimizer update unless `split_batches=True` (accelerate/scheduler.py). `create_accelerate_scheduler` prepares
the scheduler itself and tells its multiplier how many scheduler steps make one update, so 1 and N processes see
the same learning rate at every update.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import sys
from collections.abc import Iterable
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch.optim import Optimizer

from ..errors import PilotError
from ..pilot.phase import Progress, phase_kwargs, plan_pilot, quiet_linear_fallback, request_of
from ..pilot.protocol import NORMS_FILE, current_phase
from ..recording import GradNormRecorder, optimizer_family
from .norms import grad_l1_norm, unclip
from .transformers import get_linear_refined_schedule, logger


def scheduler_steps_per_update(accelerator: Accelerator) -> int:
    """How many times a prepared scheduler is stepped per optimizer update."""
    if accelerator.step_scheduler_with_optimizer and not accelerator.split_batches:
        return accelerator.num_processes
    return 1


def create_accelerate_scheduler(
    accelerator: Accelerator,
    optimizer: Optimizer,
    *,
    num_training_steps: int,
    num_warmup_steps: int = 0,
    **lr_scheduler_kwargs: Any,
):
    """The `linear_refined` scheduler for a custom loop, already passed through `accelerator.prepare`.

    Count `num_training_steps` in optimizer updates (as the Trainer does), whatever the number of processes;
    call `scheduler.step()` once per iteration after `optimizer.step()`, as usual.
    """
    scheduler = get_linear_refined_schedule(
        optimizer,
        num_warmup_steps,
        num_training_steps,
        steps_per_update=scheduler_steps_per_update(accelerator),
        **lr_scheduler_kwargs,
    )
    return accelerator.prepare_scheduler(scheduler)


def clip_grad_norm_and_record(
    accelerator: Accelerator,
    parameters: Iterable[torch.nn.Parameter],
    max_norm: float | None,
    recorder: GradNormRecorder | None,
    step: int,
    *,
    record_l1: bool = False,
) -> float | None:
    """`accelerator.clip_grad_norm_` that also records the pre-clip norm of update `step` (1-based).

    Call it where you would call `clip_grad_norm_` (it does nothing while gradients accumulate, i.e. when
    `accelerator.sync_gradients` is False); `max_norm=None` or 0 measures without clipping. Only the main
    process records. Returns the pre-clip l2 norm, or None on accumulation steps.
    """
    if not accelerator.sync_gradients:
        return None
    # all of them, grads or not: accelerate takes its FSDP1 path only for the model's full parameter list, and
    # FSDP1's `use_orig_params=True` leaves `.grad` None on the ranks that hold none of a parameter
    parameters = list(parameters)
    limit = max_norm if max_norm and max_norm > 0 else math.inf
    l2 = float(accelerator.clip_grad_norm_(parameters, limit))
    # under FSDP each process holds a shard of every gradient: the l1 sum is then a collective, on every process
    sharded = record_l1 and _sharded(accelerator, parameters)
    l1 = None
    if record_l1 and (sharded or (recorder is not None and accelerator.is_main_process)):
        l1 = grad_l1_norm(parameters, sharded=sharded)
    if recorder is not None and accelerator.is_main_process:
        l1 = None if l1 is None else unclip(float(l1), l2, limit if math.isfinite(limit) else 0.0)
        recorder.record(step, l2, l1)
    return l2


def _sharded(accelerator: Accelerator, parameters: list[torch.nn.Parameter]) -> bool:
    # accelerate's FSDP backend (FSDP1 flat shards, FSDP2), or a model sharded with torch's `fully_shard` directly
    if accelerator.distributed_type == DistributedType.FSDP:
        return True
    return any(placement.is_shard() for p in parameters for placement in getattr(p.grad, "placements", ()))


def leave_process_group() -> None:
    """Destroy the default process group while the interpreter is fully alive; call it last, after `main()`.

    With torch 2.13 on CPU, a DDP-wrapped model that outlives `destroy_process_group` into interpreter shutdown makes
    gloo abort a rank now and then ("terminate called without an active exception", about 1 run in 7 here), which
    fails the whole launch after the work is done. Dropping the prepared objects first (return from `main`, or
    `del` them and `accelerator.free_memory()`) and collecting the cycles around them avoids it.
    """
    gc.collect()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def end_pilot_process() -> None:
    """End a pilot process once its norms are saved: the full phase runs in a new process.

    Under a launcher, the user's DDP model still holds the process group and would reach interpreter shutdown, where
    gloo can abort a rank (see `leave_process_group`) and fail the launch; we cannot drop the user's objects, so the
    ranks meet, leave the group and end without interpreter shutdown.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        sys.exit(0)
    torch.distributed.barrier()
    leave_process_group()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class RefinedRun:
    """The pilot's two phases for a custom accelerate loop: total steps, a step hook, a "should stop" check.

    Outside `hf-lrschedule pilot` it is a plain run: `create_scheduler` builds `linear_refined` from the kwargs
    given, `clip_grad_norm_` clips (and records if `record_to` is given), `step_end` prints progress.

    Args:
        accelerator (`accelerate.Accelerator`):
            The loop's accelerator (its processes count as one run).
        num_training_steps (`int`):
            Optimizer updates of the full run, whatever the number of processes (as the Trainer counts them).
        record_to (`str`, *optional*):
            Recorder file to write the norms to outside a pilot (inside one, the pilot folder is used).
        record_l1 (`bool`, *optional*):
            Also record l1 norms (default: for Adam-family optimizers).

    Examples:
        ```python
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
        ```
    """

    def __init__(self, accelerator, *, num_training_steps: int, record_to: str | None = None, record_l1: bool | None = None):
        self.accelerator = accelerator
        self.num_training_steps = int(num_training_steps)
        self.phase = current_phase()
        self.update = 0
        self.recorder: GradNormRecorder | None = None
        self.record_l1 = record_l1
        self.stop_at = self.num_training_steps
        if self.phase.is_pilot:
            self.pilot, self.explicit = request_of(self.phase)
            try:
                self.stop_at = self.pilot.pilot_steps(self.num_training_steps)
            except PilotError as error:
                if accelerator.is_main_process:
                    self.phase.report_error(str(error))
                raise
            record_to = str(self.phase.file(NORMS_FILE))
            logger.addFilter(quiet_linear_fallback)  # one instance: added once however many runs
        if record_to is not None:
            meta = {"num_training_steps": self.num_training_steps, "world_size": accelerator.num_processes}
            if self.phase.is_pilot:
                meta.update(pilot=True, pilot_steps=self.stop_at)
            self.recorder = GradNormRecorder(record_to, meta=meta)
        label = {"pilot": "pilot", "full": "full run"}.get(self.phase.name or "", "training")
        self.progress = Progress(label, self.stop_at) if accelerator.is_main_process else None

    @property
    def is_pilot(self) -> bool:
        return self.phase.is_pilot

    def create_scheduler(self, optimizer, *, num_warmup_steps: int = 0, **lr_scheduler_kwargs):
        """The prepared `linear_refined` scheduler for this phase (see `create_accelerate_scheduler`).

        Under `hf-lrschedule pilot`, the phase's kwargs replace the norms source as for the Trainer (the pilot
        phase trains on linear decay, the full phase on the pilot's schedule); every other key is kept.
        """
        name = type(getattr(optimizer, "optimizer", optimizer)).__name__
        if self.recorder is not None:
            self.recorder.meta.update(
                optimizer=name, optimizer_family=optimizer_family(name), num_warmup_steps=num_warmup_steps
            )
            if self.record_l1 is None:
                self.record_l1 = optimizer_family(name) == "adam"
        kwargs = phase_kwargs(self.phase, lr_scheduler_kwargs)
        if self.is_pilot:  # every rank checks (the same result); the files are written atomically
            _, options = plan_pilot(
                self.phase.directory, self.pilot, self.explicit, explicit_where="hf-lrschedule pilot's flags",
                num_training_steps=self.num_training_steps, num_warmup_steps=num_warmup_steps,
                lr_scheduler_kwargs=kwargs,
            )
            if options.norm == "l1":
                self.record_l1 = True
        return create_accelerate_scheduler(
            self.accelerator, optimizer, num_training_steps=self.num_training_steps,
            num_warmup_steps=num_warmup_steps, **kwargs,
        )

    def clip_grad_norm_(self, parameters, max_norm: float | None) -> float | None:
        """Clip like `accelerator.clip_grad_norm_` and record the pre-clip norm of this update."""
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
            end_pilot_process()
