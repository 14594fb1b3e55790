"""The library's error and warning classes, in one place (stdlib only).

`RegistrationWarning` is defined by the start-up hook (`_hf_lrschedule_autoregister`), which must import without
this package, and re-exported here.
"""

from __future__ import annotations

from _hf_lrschedule_autoregister import RegistrationWarning


class GradNormSourceError(ValueError):
    """A gradient-norm or schedule file that cannot be used; the message says what was expected."""


class RefinementWarning(UserWarning):
    """Legal but suspicious gradient-norm input or settings: what was repaired or assumed, and how."""


class RefineOptionError(ValueError):
    """A refinement option with a bad value; `option` names it (callers add where it was given)."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


class OptionConflictError(ValueError):
    """The same option given in two places (a CLI flag, a keyword, `lr_scheduler_kwargs`) with different values."""


class PilotError(RuntimeError):
    """The pilot could not produce a schedule; the message says why and what to do."""


__all__ = [
    "GradNormSourceError",
    "OptionConflictError",
    "PilotError",
    "RefineOptionError",
    "RefinementWarning",
    "RegistrationWarning",
]
