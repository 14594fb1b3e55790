"""The text of a `hf_lrschedule.health.Diagnosis`: the full report of ``hf-lrschedule diagnose`` and the brief one that
ends the pilot's summary (numpy/scipy only, through `hf_lrschedule.health`)."""

from __future__ import annotations

import math

from .health import Diagnosis, Sign
from .health_advice import _steps_words

__all__ = ["brief_report", "format_report"]


def brief_report(diagnosis: Diagnosis) -> list[str]:
    """The diagnosis in a few lines (the pilot's summary): each sign with its worst check, the refinement, the advice.

    Examples:
        >>> from hf_lrschedule.health import diagnose
        >>> steps = list(range(1, 101))
        >>> print("\\n".join(brief_report(diagnose((steps, [1.0] * 100)))[:4]))
        verdict: ok
        loss: n/a (no training loss in this source)
        grad_norm: ok (non_finite 0, threshold 1)
        end: n/a (no loss, learning rate or eval loss in this source)
    """
    lines = [f"verdict: {diagnosis.verdict}"]
    lines += [_sign_line(name, sign) for name, sign in diagnosis.signs.items()]
    summary = diagnosis.refinement.get("summary", "")
    if not any(summary in text for text in diagnosis.recommendations):  # else an item of advice says it already
        lines.append(f"refinement: {summary}")
    lines += [f"- {text}" for text in diagnosis.recommendations]
    return lines


def _sign_line(name: str, sign: Sign) -> str:
    """``name: verdict (worst check, its value and threshold, where)``; the sign's note when nothing was measured."""
    worst = sign.worst
    if worst is None:
        words = sign.note
    else:
        words = f"{worst.name} {_number(worst.value)}, threshold {_number(worst.threshold)}"
        words += f", {_steps_words(worst.steps)}" if worst.steps else ""
    return f"{name}: {sign.verdict}" + (f" ({words})" if words else "")


def format_report(diagnosis: Diagnosis) -> str:
    """The text report of ``hf-lrschedule diagnose``."""
    lines = []
    if diagnosis.source:
        lines.append(f"source: {diagnosis.source}")
    lines.append(f"verdict: {diagnosis.verdict}")
    for name, sign in diagnosis.signs.items():
        lines.append(_sign_line(name, sign))
        for check in sign.checks:
            thresholds = "/".join(_number(t) for t in (check.watch, check.act) if t is not None)
            limits = f"watch below {thresholds}" if check.lower_is_worse else f"watch/act {thresholds}"
            where = f" at {_steps_words(check.steps)}" if check.steps else ""
            note = f"; {check.note}" if check.note else ""
            lines.append(f"  {check.verdict:<5} {check.name} {_number(check.value)} ({limits}){where}{note}")
    lines.append(f"refinement: {diagnosis.refinement.get('summary', '')}")
    if diagnosis.recommendations:
        lines.append("recommendations:")
        lines += [f"  - {text}" for text in diagnosis.recommendations]
    return "\n".join(lines)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.3g}"
