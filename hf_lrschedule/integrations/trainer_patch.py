"""What every `transformers.Trainer` gets from hf_lrschedule with no edit to the script (the import hook's part).

The start-up hook calls `patch_trainer` when `transformers.trainer` loads; it wraps `Trainer.__init__` once:

* a run whose ``lr_scheduler_type`` is ``linear_refined`` gets its companion callbacks (`attach_companions`): the
  gradient-norm recorder (``<output_dir>/grad_norms.json``, what the next run refines from), the schedule's summary
  and picture in every reporting integration of the run, and the live health checks (`HealthCallback`).
  ``HF_LRSCHEDULE_CALLBACKS=0`` switches them off. They never stop a run: a failure to attach them is one logged warning;
* under ``hf-lrschedule pilot``, each Trainer gets its phase (`hf_lrschedule.pilot.trainer.PhaseHooks`); there a
  failure is an error, so that a pilot can never train on the wrong schedule.
"""

from __future__ import annotations

import logging
import os

from .transformers import SCHEDULER_NAME

logger = logging.getLogger("hf_lrschedule")

ENV_CALLBACKS = "HF_LRSCHEDULE_CALLBACKS"


def companions_enabled() -> bool:
    return os.environ.get(ENV_CALLBACKS, "1").strip().lower() not in ("0", "false", "no", "off")


def uses_linear_refined(args) -> bool:
    kind = getattr(args, "lr_scheduler_type", None)
    return getattr(kind, "value", kind) == SCHEDULER_NAME


def attach_companions(trainer) -> None:
    """Give a `linear_refined` Trainer its recorder, schedule report and health checks, unless switched off.

    Callbacks the script attached itself (a `GradNormRecorderCallback` with its own path, a `ScheduleReportCallback`)
    are kept: the automatic ones step aside (see `GradNormRecorderCallback.attach`). Never raises.
    """
    if not companions_enabled() or not uses_linear_refined(trainer.args):
        return
    try:
        from .health import HealthCallback
        from .trainer_callback import GradNormRecorderCallback

        GradNormRecorderCallback(automatic=True).attach(trainer)  # also adds the ScheduleReportCallback
        HealthCallback().attach(trainer)
    except Exception as error:  # noqa: BLE001 - the user's run goes on without them
        logger.warning(
            "hf_lrschedule: could not add its callbacks to this Trainer (%s: %s); training is unaffected. Set %s=0 "
            "to stop trying", type(error).__name__, error, ENV_CALLBACKS,
        )


def patch_trainer() -> None:
    """Import hook of `transformers.trainer`: wrap `Trainer.__init__` (once) as the module docstring says."""
    from transformers import trainer as trainer_module

    from ..pilot.protocol import current_phase

    original_init = trainer_module.Trainer.__init__
    if getattr(original_init, "_hf_lrschedule_patched", False):
        return
    phase = current_phase()
    if phase.name is None and not companions_enabled():
        return  # nothing to do: leave the class untouched
    hooks = None
    if phase.name is not None:
        from ..pilot.trainer import PhaseHooks

        hooks = PhaseHooks(phase)

    def __init__(self, *args, **kwargs):
        training_args = kwargs.get("args", args[1] if len(args) > 1 else None)
        if hooks is not None and training_args is not None:  # before __init__ creates the output dir, hub repo
            hooks.before_init(training_args)
        original_init(self, *args, **kwargs)
        if hooks is not None:
            hooks.after_init(self)
        if phase.name is None or not phase.is_pilot:  # a pilot records and reports through its own callback
            attach_companions(self)

    __init__._hf_lrschedule_patched = True  # type: ignore[attr-defined]
    __init__.__wrapped__ = original_init  # type: ignore[attr-defined]
    __init__.__doc__ = original_init.__doc__
    trainer_module.Trainer.__init__ = __init__
