"""hf_lrschedule: the linear and refined learning-rate schedules of Defazio et al. (arXiv 2310.07831) for the
Hugging Face training stack.

Importing the package makes `linear_refined` an `lr_scheduler_type` of transformers: at once if transformers is
loaded, otherwise the moment it loads. The torch/transformers glue is imported lazily, on first use of its names.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import _hf_lrschedule_autoregister

from ._version import __version__ as __version__
from .config import RefinedScheduleConfig
from .errors import GradNormSourceError, OptionConflictError, PilotError, RefinementWarning
from .formats import load_schedule
from .health import diagnose
from .options import RefineOptions
from .pilot.options import PilotOptions
from .readers import load_grad_norms
from .recording import GradNormRecorder
from .refine import refine_schedule, refinement_details
from .schedules import linear_decay

if TYPE_CHECKING:
    from .integrations.accelerate import RefinedRun
    from .integrations.health import HealthCallback
    from .integrations.reporting import ScheduleReportCallback
    from .integrations.trainer_callback import GradNormRecorderCallback
    from .integrations.transformers import get_linear_refined_schedule, register
    from .pilot.trainer import run_pilot

# Names whose modules import torch/transformers/accelerate: loaded on first access (PEP 562).
_LAZY = {
    "get_linear_refined_schedule": "integrations.transformers",
    "register": "integrations.transformers",
    "GradNormRecorderCallback": "integrations.trainer_callback",
    "RefinedRun": "integrations.accelerate",
    "run_pilot": "pilot.trainer",
    "ScheduleReportCallback": "integrations.reporting",
    "HealthCallback": "integrations.health",
}

# The public API (docs/api.md), one name per job. Building blocks (the schedule functions, the accelerate helpers
# `RefinedRun` is made of, the pilot's parent side) stay importable from their modules.
__all__ = [
    "GradNormRecorder",
    "GradNormRecorderCallback",
    "GradNormSourceError",
    "HealthCallback",
    "OptionConflictError",
    "PilotError",
    "PilotOptions",
    "RefineOptions",
    "RefinedRun",
    "RefinedScheduleConfig",
    "RefinementWarning",
    "ScheduleReportCallback",
    "diagnose",
    "get_linear_refined_schedule",
    "linear_decay",
    "load_grad_norms",
    "load_schedule",
    "refine_schedule",
    "refinement_details",
    "register",
    "run_pilot",
]

# Registration happens even with HF_LRSCHEDULE_AUTOREGISTER=0: that switch only stops the start-up hook.
_hf_lrschedule_autoregister.install()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'hf_lrschedule' has no attribute {name!r}")
