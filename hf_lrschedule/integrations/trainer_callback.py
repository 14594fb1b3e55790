"""`GradNormRecorderCallback`: the Trainer adapter of `GradNormRecorder`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from ..formats import RECORDER_FILE
from ..readers.log import METRIC_NAMES
from ..recording import GradNormRecorder, optimizer_family
from .norms import grad_l1_norm, unclip

DEFAULT_FILENAME = RECORDER_FILE


class GradNormRecorderCallback(TrainerCallback):
    """Records the pre-clip global gradient norm of every optimizer step of a `Trainer` run.

    The l2 norm is the one the Trainer computes for clipping (after accumulation and across processes). Two ways
    to get it at every step:

    * `GradNormRecorderCallback().attach(trainer)` (preferred): wraps `trainer.accelerator.clip_grad_norm_`,
      the call that computes the norm, and keeps its result on the device until the next save (no sync per step).
      The user's logging is unchanged. It also adds a `ScheduleReportCallback` (the schedule, logged once to the
      run's reporting integrations).
    * `Trainer(callbacks=[GradNormRecorderCallback()])`: the callback cannot reach that call, so it asks the
      Trainer to log every step and reads `logs["grad_norm"]`; the logged `loss` then becomes per-step too.

    For Adam-family optimizers the l1 norm is recorded as well: computed on the clipped gradients and divided by
    the clip factor, which torch applies to all gradients alike. Rank 0 writes the file atomically at the end and
    *before* each checkpoint (at the step or epoch end whose control asks for a save), so whenever `checkpoint-N`
    exists the norms of steps 1..N are on disk: a run killed right after a checkpoint loses none of them.

    Args:
        path (`str` or `os.PathLike`, *optional*):
            Where to write the recorder file (default: `<output_dir>/grad_norms.json`).
        record_l1 (`bool`, *optional*):
            Also record l1 norms (default: for Adam-family optimizers only).
        extra_meta (`dict`, *optional*):
            Added to the file's `meta` (the pilot stores its settings there).
        automatic (`bool`, *optional*, defaults to `False`):
            Set by the Trainer patch, which gives every `linear_refined` run a recorder: one the script attaches
            itself replaces it.
    """

    #: A recorder the script attaches takes the place of the automatic one (a pilot's does not: see `attach`).
    replaces_automatic = True

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        record_l1: bool | None = None,
        extra_meta: dict[str, Any] | None = None,
        automatic: bool = False,
    ):
        self.path = Path(path) if path is not None else None
        self.automatic = automatic
        self._enabled = True
        self.record_l1 = record_l1
        self.extra_meta = dict(extra_meta or {})
        self.recorder = GradNormRecorder()
        self._clipped_l1: torch.Tensor | None = None
        self._attached = False
        self._last_norm: tuple[Any, torch.Tensor | None] | None = None
        self._unsynced: list[tuple[int, Any, torch.Tensor | None]] = []
        self._max_grad_norm = 0.0

    def attach(self, trainer) -> GradNormRecorderCallback:
        """Read the norm straight from `trainer`'s clip call (see the class docstring); adds the callback.

        A recorder the Trainer patch attached on its own steps aside (one recorder per run), except for a pilot's
        (`replaces_automatic` False), which records into its own folder while the run's recorder stays for the full
        run.
        """
        for existing in list(trainer.callback_handler.callbacks):
            if isinstance(existing, GradNormRecorderCallback) and existing.automatic and existing is not self:
                if self.automatic:
                    return existing  # already has one
                if self.replaces_automatic:
                    existing._enabled = False
                    trainer.remove_callback(existing)
        accelerator = trainer.accelerator
        original = accelerator.clip_grad_norm_
        sharded = bool(getattr(trainer, "is_fsdp_enabled", False))
        if getattr(trainer, "is_deepspeed_enabled", False):
            self.record_l1 = False  # ZeRO keeps the gradients inside the engine: only its global l2 is available
            self.extra_meta["l1_skipped"] = "DeepSpeed"

        def clip_grad_norm_(parameters, max_norm, *args, **kwargs):
            if not self._enabled:
                return original(parameters, max_norm, *args, **kwargs)
            parameters = list(parameters)
            norm = original(parameters, max_norm, *args, **kwargs)
            self._last_norm = (norm, grad_l1_norm(parameters, sharded) if self.record_l1 else None)
            return norm

        accelerator.clip_grad_norm_ = clip_grad_norm_
        self._attached = True
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        from .reporting import ScheduleReportCallback

        ScheduleReportCallback().attach(trainer)  # the schedule, once, in the run's TensorBoard / W&B / MLflow / trackio
        return self

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.path is None:
            self.path = Path(args.output_dir) / DEFAULT_FILENAME
        optimizer_class = type(getattr(optimizer, "optimizer", optimizer)).__name__ if optimizer is not None else ""
        family = optimizer_family(optimizer_class)
        if self.record_l1 is None:
            self.record_l1 = family == "adam"
        self._max_grad_norm = args.max_grad_norm
        self.recorder = GradNormRecorder(self.path)
        if state.global_step > 0 and self.path.is_file():  # resumed: keep what the earlier run recorded
            self.recorder.load_state_dict(json.loads(self.path.read_text(encoding="utf-8")))
            self.recorder.truncate(state.global_step)
        self.recorder.meta.update(
            {
                "optimizer": optimizer_class,
                "optimizer_family": family,
                "world_size": args.world_size,
                "gradient_accumulation_steps": args.gradient_accumulation_steps,
                "per_device_train_batch_size": args.per_device_train_batch_size,
                "max_grad_norm": args.max_grad_norm,
                "learning_rate": args.learning_rate,
                "num_training_steps": state.max_steps,
                "num_warmup_steps": args.get_warmup_steps(state.max_steps),
                "norm_is": "pre-clip global gradient norm of each optimizer step",
                **self.extra_meta,
            }
        )

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if not self._attached:
            self._clipped_l1 = grad_l1_norm(model.parameters()) if self.record_l1 and model is not None else None

    def on_step_end(self, args, state, control, **kwargs):
        if not self._attached:
            control.should_log = True  # the Trainer puts this step's pre-clip norm into the logs
            return  # the norm arrives in on_log, which the Trainer calls before it saves
        if self._last_norm is not None:
            self._unsynced.append((state.global_step, *self._last_norm))
            self._last_norm = None
        self._save_before_checkpoint(state, control)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._save_before_checkpoint(state, control)

    def _save_before_checkpoint(self, state, control) -> None:
        # Callbacks run before the Trainer acts on `control` (trainer.py: on_step_end, then
        # _maybe_log_save_evaluate), so writing here puts the norms on disk before `checkpoint-N` appears.
        if control.should_save:
            self._save(state)

    def _save(self, state) -> None:
        self.flush()
        if state.is_world_process_zero and len(self.recorder):
            self.recorder.save()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or self.recorder is None:
            return
        for name in METRIC_NAMES:  # the loss, LR and eval loss beside the norms: diagnose and extend read them
            value = logs.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.recorder.record_metric(name, state.global_step, value)
        if self._attached or "grad_norm" not in logs:
            return
        l2 = float(logs["grad_norm"])
        l1 = unclip(_to_float(self._clipped_l1), l2, args.max_grad_norm) if self.record_l1 else None
        self.recorder.record(state.global_step, l2, l1)
        self._clipped_l1 = None
        self._save_before_checkpoint(state, control)

    def flush(self) -> GradNormRecorder:
        """Move the norms still on the device into the recorder (one sync for many steps)."""
        for step, norm, clipped_l1 in self._unsynced:
            l2 = _to_float(norm)
            self.recorder.record(step, l2, unclip(_to_float(clipped_l1), l2, self._max_grad_norm) if self.record_l1 else None)
        self._unsynced.clear()
        return self.recorder

    def on_save(self, args, state, control, **kwargs):  # also covers a save that another callback asked for late
        self._save(state)

    def on_train_end(self, args, state, control, **kwargs):
        self._save(state)


def _to_float(value) -> float | None:
    if value is None:
        return None
    return float(value.item()) if hasattr(value, "item") else float(value)
