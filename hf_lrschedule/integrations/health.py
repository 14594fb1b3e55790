"""`HealthCallback`: the run's health checked live, at each logging step of a `Trainer`.

It feeds each training log's ``loss`` and ``grad_norm`` to a `hf_lrschedule.health_live.HealthMonitor` (a window of
recent values: O(window) per log, nothing per step), warns once per kind of event through the ``hf_lrschedule``
logger, and adds the health scalars to the log itself as ``hf_lrschedule/health/<name>``.

Why the log itself: `Trainer.log` appends a copy of ``logs`` to ``state.log_history``, then calls every callback's
``on_log`` with the same ``logs`` dict, in list order, and the reporting integrations (TensorBoard, W&B, MLflow,
trackio, ...) come right after `DefaultFlowCallback`, before any user callback (transformers ``trainer.py``:
``DEFAULT_CALLBACKS + get_reporting_integration_callbacks(...)``, then the user's). A callback at position 0 that adds
keys to ``logs`` therefore has them logged by every integration, with no tracker-specific code; `attach` puts it
there and the callback also adds the keys to the ``log_history`` entry just appended. The integrations name the keys
as they name every training key (TensorBoard and W&B: ``train/hf_lrschedule/health/<name>``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from transformers import TrainerCallback

from ..health import EXPLOSION_ACT, LIVE_WINDOW, SPIKE_Z_ACT
from ..health_live import HealthMonitor

logger = logging.getLogger("hf_lrschedule")

PREFIX = "hf_lrschedule/health/"

WARNINGS = {
    "loss_spike": "hf_lrschedule health: loss spike at step {step} (loss {loss}, {z} robust deviations above the "
    f"recent median; the threshold is {SPIKE_Z_ACT:g}). Check the batches of that step, or lower the LR if it "
    "repeats. `hf-lrschedule diagnose <output_dir>` gives the whole picture after the run. (Warned once per run.)",
    "non_finite_norm": "hf_lrschedule health: non-finite gradient norm ({grad_norm}) at step {step}. With fp16 "
    "this is a loss-scaler overflow and the update was skipped; if it repeats, use bf16. (Warned once per run.)",
    "norm_explosion": "hf_lrschedule health: gradient norm {grad_norm} at step {step} is {ratio} x the recent median "
    f"(threshold {EXPLOSION_ACT:g}). Clipping (max_grad_norm) bounds the update; check the loss and the data of that "
    "step. (Warned once per run.)",
}


class HealthCallback(TrainerCallback):
    """Checks the loss and the gradient norm at each logging step; warns once per kind; logs health scalars.

    Kinds warned about (each once per training run): ``loss_spike`` (the logged loss more than `SPIKE_Z_ACT` robust
    deviations above the median of the recent logs, or NaN/inf), ``non_finite_norm``, ``norm_explosion`` (the norm
    more than `EXPLOSION_ACT` x the recent median). Scalars added to each training log: ``loss_z``,
    ``grad_norm_ratio`` (once there are 10 earlier logs to compare with) and ``loss_spikes`` /
    ``non_finite_norms`` / ``norm_explosions`` (counts so far), all under ``hf_lrschedule/health/``.

    It never raises into the run: the first internal failure becomes one logged warning and the callback stops.

    Use `HealthCallback().attach(trainer)`: it goes first in the callback list, so the Trainer's reporting
    integrations log its scalars. Passed as `Trainer(callbacks=[HealthCallback()])` it still warns and adds the
    scalars to ``state.log_history``, but the integrations (which run before it) do not see them.

    Args:
        window (`int`, *optional*, defaults to `LIVE_WINDOW`):
            How many recent logged values the running median uses.
    """

    def __init__(self, window: int = LIVE_WINDOW):
        self.window = window
        self.monitor = HealthMonitor(window)
        self.failed = False

    def attach(self, trainer) -> HealthCallback:
        """Put this callback first in `trainer`'s callback list (once), so that every integration logs its scalars."""
        callbacks = trainer.callback_handler.callbacks
        if not any(isinstance(cb, HealthCallback) for cb in callbacks):
            callbacks.insert(0, self)
        return self

    def on_train_begin(self, args, state, control, **kwargs):
        try:
            self.monitor = HealthMonitor(self.window)
        except Exception as error:  # noqa: BLE001  (never stop a run)
            self._fail(error)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.failed or not logs:
            return
        try:
            self._check(state, logs)
        except Exception as error:  # noqa: BLE001  (never stop a run)
            self._fail(error)

    def _check(self, state, logs: dict[str, Any]) -> None:
        loss, grad_norm = _number(logs.get("loss")), _number(logs.get("grad_norm"))
        if loss is None and grad_norm is None:
            return  # an eval or end-of-training summary log
        scalars, new = self.monitor.update(state.global_step, loss=loss, grad_norm=grad_norm)
        for kind in new:
            logger.warning(WARNINGS[kind].format(
                step=state.global_step, loss=_text(loss), grad_norm=_text(grad_norm),
                z=_text(scalars.get("loss_z")), ratio=_text(scalars.get("grad_norm_ratio")),
            ))
        keyed = {PREFIX + name: value for name, value in scalars.items() if math.isfinite(value)}
        entry = state.log_history[-1] if state.log_history else None
        # the entry Trainer.log appended just before calling on_log: a copy of these logs plus "step"
        if isinstance(entry, dict) and entry.get("step") == state.global_step and entry.get("loss") == logs.get("loss"):
            entry.update(keyed)
        logs.update(keyed)

    def _fail(self, error: Exception) -> None:
        self.failed = True
        logger.warning(
            "hf_lrschedule health: the live health check failed and is off for the rest of this run (%s: %s); "
            "training continues. Run `hf-lrschedule diagnose <output_dir>` afterwards.", type(error).__name__, error,
        )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _text(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
