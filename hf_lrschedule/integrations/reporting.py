"""`ScheduleReportCallback`: the `linear_refined` schedule, logged once where the run is tracked.

At train start it writes the schedule's summary (source, steps, peak position, refinement options, the sha256 of
the table, a plain-words description) as run config / params and the schedule picture as an image, to each
reporting integration the Trainer runs: TensorBoard, W&B, MLflow and trackio. With none active it logs nothing.
It never stops a run: any failure becomes one logged warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from typing import Any

from transformers import TrainerCallback

from ..refine import describe_schedule
from .transformers import LinearRefinedLambda

logger = logging.getLogger("hf_lrschedule")

PREFIX = "hf_lrschedule"
IMAGE_TAG = f"{PREFIX}/schedule"
TEXT_TAG = f"{PREFIX}/summary"


def find_refined_lambda(lr_scheduler) -> LinearRefinedLambda | None:
    """The `LinearRefinedLambda` inside a (possibly accelerate-wrapped) scheduler, or None."""
    scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate's AcceleratedScheduler
    for fn in getattr(scheduler, "lr_lambdas", None) or ():
        if isinstance(fn, LinearRefinedLambda):
            return fn
    return None


def schedule_multipliers(fn: LinearRefinedLambda) -> list[float]:
    """The multiplier of each optimizer step ``0 .. T`` (warmup included), as the run uses them."""
    return [float(fn(step * fn.steps_per_update)) for step in range(fn.num_training_steps + 1)]


def schedule_report(fn: LinearRefinedLambda) -> dict[str, Any]:
    """Flat summary (str/int/float values, keys ``hf_lrschedule/...``) of the schedule `fn` computes."""
    multipliers = schedule_multipliers(fn)
    steps = fn.num_training_steps
    peak = max(range(len(multipliers)), key=multipliers.__getitem__)
    table = "none (linear decay)" if fn.table is None else hashlib.sha256(json.dumps(fn.table).encode()).hexdigest()
    report: dict[str, Any] = {
        "source": fn.source or "unknown",
        "steps": steps,
        "warmup_steps": fn.num_warmup_steps,
        "peak_step": peak,
        "peak_fraction": round(peak / steps, 6),
        "min_lr_ratio": fn.min_lr_ratio,
        "table_sha256": table,
        "description": describe_schedule(multipliers),
    }
    for key, value in (fn.options or {}).items():
        report[key] = value
    return {f"{PREFIX}/{key}": value for key, value in report.items()}


def summary_markdown(report: dict[str, Any]) -> str:
    return "\n".join(f"* {key.split('/', 1)[1]}: {value}" for key, value in report.items())


class ScheduleReportCallback(TrainerCallback):
    """Logs the `linear_refined` schedule once, at train start, to the Trainer's reporting integrations.

    TensorBoard gets a text summary (`hf_lrschedule/summary`), scalars for the numbers and the picture
    (`hf_lrschedule/schedule`); W&B the summary as run config and the picture as a `wandb.Image`; MLflow params and
    `hf_lrschedule/schedule.png`; trackio config and a `trackio.Image`. Nothing is logged when the run reports to
    none of them, or when its scheduler is not `linear_refined`. A failure never reaches the run: it becomes one
    logged warning and training goes on.

    `GradNormRecorderCallback().attach(trainer)` adds it; `ScheduleReportCallback().attach(trainer)` alone does
    too. Passed as `Trainer(callbacks=[ScheduleReportCallback()])` it cannot see the Trainer's integrations: it then
    writes TensorBoard through a writer of its own (in `$TENSORBOARD_LOGGING_DIR` if set, else in
    `<output_dir>/runs/hf_lrschedule`, a run of its own beside the Trainer's) and uses the active W&B / MLflow run,
    but not trackio.
    """

    def __init__(self):
        self.handler = None
        self.done = False

    def attach(self, trainer) -> ScheduleReportCallback:
        """Use `trainer`'s own reporting integrations (their writers and runs); adds the callback."""
        self.handler = trainer.callback_handler
        if not any(isinstance(cb, ScheduleReportCallback) for cb in trainer.callback_handler.callbacks):
            trainer.add_callback(self)
        return self

    def on_train_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        if self.done or not state.is_world_process_zero:
            return
        try:
            fn = find_refined_lambda(lr_scheduler)
            if fn is None or fn.missing_source is not None:
                return
            targets = self._targets(args)
            if not targets:
                return
            self.done = True  # once per run; an in-process pilot before it (no integrations) does not count
            report = schedule_report(fn)
            recorder_file = self._recorder_file(args)
            if recorder_file is not None:  # where the next run refines from
                report[f"{PREFIX}/recorder_file"] = recorder_file
            from ..plotting import schedule_image

            image = schedule_image(schedule_multipliers(fn), title=report[f"{PREFIX}/description"])
            for name, log in targets:
                try:
                    log(report, image, state.global_step)
                except Exception as error:  # noqa: BLE001  (a tracker's failure must never stop training)
                    logger.warning("hf_lrschedule: could not log the schedule to %s (%s: %s)", name, type(error).__name__, error)
        except Exception as error:  # noqa: BLE001
            logger.warning("hf_lrschedule: could not report the schedule (%s: %s)", type(error).__name__, error)

    def _recorder_file(self, args) -> str | None:
        from .trainer_callback import DEFAULT_FILENAME, GradNormRecorderCallback

        for callback in self.handler.callbacks if self.handler is not None else ():
            if isinstance(callback, GradNormRecorderCallback) and callback._enabled:
                return str(callback.path or os.path.join(args.output_dir, DEFAULT_FILENAME))
        return None

    def _targets(self, args) -> list[tuple[str, Any]]:
        callbacks = list(self.handler.callbacks) if self.handler is not None else []
        by_name = {type(cb).__name__: cb for cb in callbacks}
        targets = []
        tensorboard = by_name.get("TensorBoardCallback")
        if tensorboard is not None and getattr(tensorboard, "tb_writer", None) is not None:
            targets.append(("TensorBoard", _tensorboard_logger(tensorboard.tb_writer, close=False)))
        elif self.handler is None and "tensorboard" in (args.report_to or []):
            targets.append(("TensorBoard", _own_tensorboard_logger(tensorboard_dir(args))))
        wandb = getattr(by_name.get("WandbCallback"), "_wandb", None) or sys.modules.get("wandb")
        if wandb is not None and getattr(wandb, "run", None) is not None and "wandb" in (args.report_to or []):
            targets.append(("W&B", _wandb_logger(wandb)))
        mlflow = getattr(by_name.get("MLflowCallback"), "_ml_flow", None) or sys.modules.get("mlflow")
        if mlflow is not None and "mlflow" in (args.report_to or []) and mlflow.active_run() is not None:
            targets.append(("MLflow", _mlflow_logger(mlflow)))
        trackio = getattr(by_name.get("TrackioCallback"), "_trackio", None)
        if trackio is not None and getattr(by_name["TrackioCallback"], "_initialized", False):
            targets.append(("trackio", _trackio_logger(trackio)))
        return targets


def tensorboard_dir(args) -> str:
    """Where a writer of our own goes: TensorBoardCallback's folder if it is fixed, else a run of its own."""
    folder = os.getenv("TENSORBOARD_LOGGING_DIR") or getattr(args, "logging_dir", None)
    return os.path.expanduser(folder) if folder else os.path.join(args.output_dir, "runs", "hf_lrschedule")


def _tensorboard_logger(writer, close: bool):
    def log(report, image, step):
        writer.add_text(TEXT_TAG, summary_markdown(report), step)
        for key, value in report.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                writer.add_scalar(key, value, step)
        writer.add_image(IMAGE_TAG, image, step, dataformats="HWC")
        writer.flush()
        if close:
            writer.close()

    return log


def _own_tensorboard_logger(logging_dir):
    def log(report, image, step):
        from torch.utils.tensorboard import SummaryWriter

        _tensorboard_logger(SummaryWriter(log_dir=logging_dir), close=True)(report, image, step)

    return log


def _wandb_logger(wandb):
    def log(report, image, step):
        wandb.config.update(report, allow_val_change=True)
        wandb.log({IMAGE_TAG: wandb.Image(image, caption=report[f"{PREFIX}/description"])}, commit=False)

    return log


def _mlflow_logger(mlflow):
    def log(report, image, step):
        mlflow.log_params({key: str(value)[:500] for key, value in report.items()})
        mlflow.log_image(image, f"{IMAGE_TAG}.png")

    return log


def _trackio_logger(trackio):
    def log(report, image, step):
        trackio.config.update(report)  # a plain dict: allow_val_change=True (wandb's) would become a config key
        trackio.log({IMAGE_TAG: trackio.Image(image, caption=report[f"{PREFIX}/description"])})

    return log
