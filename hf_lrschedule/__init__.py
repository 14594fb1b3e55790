"""hf_lrschedule: the linear and refined learning-rate schedules of Defazio et al. (arXiv 2310.07831) for the
Hugging Face training stack.

Importing the package makes `linear_refined` an `lr_scheduler_type` of transformers: at once if transformers is
loaded, otherwise the moment it loads. The torch/transformers glue is imported lazily, on first use of its names.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import _hf_lrschedule_autoregister

from .config import RefinedScheduleConfig
from .options import RefineOptions
from .recording import GradNormRecorder
from .refine import RefinementWarning, refine_schedule, refinement_details
from .schedules import Schedule, cosine_decay, linear_decay, table_schedule
from .sources import GradNormSourceError, load_grad_norms, load_schedule

if TYPE_CHECKING:
    from .integrations.accelerate import clip_grad_norm_and_record, create_accelerate_scheduler
    from .integrations.pilot_hooks import RefinedRun, run_pilot
    from .integrations.trainer_callback import GradNormRecorderCallback
    from .integrations.transformers import get_linear_refined_schedule, register

__version__ = "0.1.0"

# Names whose modules import torch/transformers/accelerate: loaded on first access (PEP 562).
_LAZY = {
    "get_linear_refined_schedule": "integrations.transformers",
    "register": "integrations.transformers",
    "GradNormRecorderCallback": "integrations.trainer_callback",
    "create_accelerate_scheduler": "integrations.accelerate",
    "clip_grad_norm_and_record": "integrations.accelerate",
    "RefinedRun": "integrations.pilot_hooks",
    "run_pilot": "integrations.pilot_hooks",
}

__all__ = [
    "GradNormRecorder",
    "GradNormRecorderCallback",
    "GradNormSourceError",
    "RefineOptions",
    "RefinedRun",
    "RefinedScheduleConfig",
    "RefinementWarning",
    "Schedule",
    "clip_grad_norm_and_record",
    "cosine_decay",
    "create_accelerate_scheduler",
    "get_linear_refined_schedule",
    "linear_decay",
    "load_grad_norms",
    "load_schedule",
    "refine_schedule",
    "refinement_details",
    "register",
    "run_pilot",
    "table_schedule",
]

# Registration happens even with HF_LRSCHEDULE_AUTOREGISTER=0: that switch only stops the start-up hook.
_hf_lrschedule_autoregister.install()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'hf_lrschedule' has no attribute {name!r}")
