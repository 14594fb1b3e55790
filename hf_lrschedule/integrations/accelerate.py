"""`linear_refined` and gradient-norm recording in custom `accelerate` loops.

Caveat handled here, in one place: `accelerator.prepare(scheduler)` steps a scheduler `num_processes` times per
optimizer update unless `split_batches=True` (accelerate/scheduler.py). `create_accelerate_scheduler` prepares
the scheduler itself and tells its multiplier how many scheduler steps make one update, so 1 and N processes see
the same learning rate at every update.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterable
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch.optim import Optimizer

from ..recording import GradNormRecorder
from .trainer_callback import grad_l1_norm, unclip
from .transformers import get_linear_refined_schedule


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
