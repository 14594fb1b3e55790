"""What a diagnosis says beyond its signs: what refinement makes of the norms, and advice in plain words.

`refinement_view` runs `hf_lrschedule.refine.refinement_details` on a run's norms and says in numbers and one
sentence whether the schedule is linear decay (the norms inside the tolerance band) or how it departs from it;
`recommendations` turns the signs of `hf_lrschedule.health` into advice, each item tied to a measured number of the
run or a cited source. `hf_lrschedule.health.diagnose` calls both.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .health import LATE_FRACTION, Curve, _curve
from .options import RefineOptions
from .refine import Refinement, refinement_details

if TYPE_CHECKING:
    from .health import Sign


# --------------------------------------------------------------------------------------------------------------- #
# What refinement makes of the norms
# --------------------------------------------------------------------------------------------------------------- #


def refinement_view(
    grad_norms: Curve | None, num_training_steps: int | None = None, options: RefineOptions | None = None
) -> dict[str, Any]:
    """What `refinement_details` makes of the norms, in numbers and one sentence.

    Keys: ``schedule`` (`describe_schedule`'s words), ``peak_fraction``, ``tolerance``, ``max_ratio`` / ``min_ratio``
    (smoothed norms over their median), ``inside_band``, ``headroom`` (the factor the smoothed norms would still have
    to rise by before the schedule leaves linear decay), ``warmup_fraction`` and ``summary``.
    """
    curve = _curve(grad_norms, "grad_norms")
    if curve is None:
        return {"summary": "no gradient norms: nothing to refine"}
    steps, values = curve
    options = options or RefineOptions()
    usable = np.isfinite(values) & (values > 0)
    if usable.sum() < 2:
        return {"summary": "fewer than 2 usable gradient norms: nothing to refine"}
    total = int(num_training_steps or steps[-1])
    positions = None
    if steps.size > 1 and not np.all(np.diff(steps) == 1):
        spacing = float(np.median(np.diff(steps)))
        positions = (steps - steps[0]) / (steps[-1] - steps[0] + spacing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropped non-finite norms are reported by the grad_norm sign instead
        details = refinement_details(values, total, options, positions=positions)
    return describe_refinement(details, total, options)


def describe_refinement(details: Refinement, num_training_steps: int, options: RefineOptions | None = None
                        ) -> dict[str, Any]:
    """`refinement_view`'s numbers and sentence for a refinement already computed (a pilot's, whose norm profile
    is not the norms themselves: `hf_lrschedule.pilot.runner.pilot_profile`)."""
    from .refine import describe_schedule

    options = options or RefineOptions()
    total = int(num_training_steps)
    middle = float(np.median(details.smoothed))
    max_ratio = float(details.smoothed.max() / middle)
    min_ratio = float(details.smoothed.min() / middle)
    tolerance = options.tolerance
    low_matters = options.guard != "floor"  # the default floor guard ignores norms below the median
    inside = max_ratio <= tolerance and (not low_matters or min_ratio >= 1 / tolerance)
    schedule = describe_schedule(details.multipliers)
    top = int(np.argmax(details.multipliers >= 0.99 * details.multipliers.max()))
    warmup = top / total
    view: dict[str, Any] = {
        "num_training_steps": total, "options": options.to_dict(), "schedule": schedule,
        "peak_fraction": details.peak_fraction, "tolerance": tolerance, "max_ratio": max_ratio,
        "min_ratio": min_ratio, "inside_band": bool(inside), "headroom": tolerance / max_ratio,
        "warmup_fraction": warmup,
    }
    if inside:
        summary = (f"linear decay: the smoothed norms stay within {max_ratio:.2f} x their median, inside the "
                   f"tolerance band of {tolerance:g} x; they would have to rise {tolerance / max_ratio:.2f} x further "
                   "(somewhere, over at least a tenth of the run) to change it")
    else:
        parts = []
        if warmup > 0:
            parts.append(f"a warmup over the first {100 * warmup:.1f} % (early norms up to {max_ratio:.2f} x the "
                         "median)")
        late = float(details.smoothed[-max(1, int(LATE_FRACTION * total)):].max() / middle)
        if late > tolerance or "faster final anneal" in schedule:
            parts.append(f"a faster anneal late in training (the smoothed norms reach {late:.2f} x their median in "
                         f"the last {100 * LATE_FRACTION:.0f} %)")
        summary = "; ".join(parts) if parts else "a schedule shaped by the norms"
        summary = f"{summary}: {schedule}"
    view["summary"] = summary
    return view


# --------------------------------------------------------------------------------------------------------------- #
# Recommendations and the entry points
# --------------------------------------------------------------------------------------------------------------- #

STUDY = "results/health.md"


def recommendations(signs: dict[str, Sign], refinement: dict[str, Any], *, warmup_steps: int | None = None,
                    max_grad_norm: float | None = None) -> list[str]:
    """Plain-words advice, each item tied to a measured number of this run or a cited source."""
    out: list[str] = []
    loss, norms, end = signs["loss"], signs["grad_norm"], signs["end"]
    spikes, relapse = loss.check("spikes"), loss.check("relapse")
    if loss.check("non_finite") and loss.check("non_finite").verdict == "act":
        steps = loss.check("non_finite").steps
        out.append(f"The loss is NaN/inf from step {steps[0]} ({len(steps)} logged values): the run diverged. Lower "
                   "the peak LR or keep a warmup; with fp16, switch to bf16 if the hardware has it.")
    if spikes and spikes.verdict != "ok":
        where = _steps_words(spikes.steps)
        if warmup_steps == 0:
            out.append(f"Loss spikes at {where} (z = {spikes.value:.3g}) with no warmup: keep a warmup or lower the "
                       "peak LR (the paper prepends a warmup to linear decay, arXiv 2310.07831 Section 2).")
        elif relapse is not None and relapse.verdict == "ok":
            out.append(f"Loss spikes at {where} (z = {spikes.value:.3g}) and the loss returns to its trend: an "
                       "outlier or corrupted batch gives exactly this (one noise batch did in this project's "
                       f"study, {STUDY}); look at the data of those steps.")
        else:
            out.append(f"Loss spikes at {where} (z = {spikes.value:.3g}) and the loss does not return to its trend "
                       f"({relapse.note if relapse else ''}): an LR too high for that stretch gives this (a 5-step LR "
                       f"spike did in {STUDY}); lower the peak LR or lengthen the warmup.")
    if relapse is not None and relapse.verdict != "ok" and not (spikes and spikes.verdict != "ok"):
        out.append(f"The loss oscillates or diverges: {relapse.note}. Lower the peak LR (30 x the good LR gave this "
                   f"in {STUDY}).")
    nonfinite = norms.check("non_finite")
    if nonfinite and nonfinite.verdict != "ok":
        out.append(f"{int(nonfinite.value)} step(s) had NaN/inf gradient norms ({nonfinite.note}; steps "
                   f"{_steps_words(nonfinite.steps)}): with fp16 these are loss-scaler overflows whose update was "
                   "skipped (PyTorch GradScaler); refinement drops them. "
                   + ("This many means the scaler is not recovering: use bf16 or find the layer that overflows."
                      if nonfinite.verdict == "act" else "A few are normal."))
    explosion = norms.check("explosion")
    if explosion and explosion.verdict != "ok":
        clip = ("clipping is off (max_grad_norm = 0): turn it on (the Trainer's default is 1.0)"
                if max_grad_norm == 0 else "clipping bounds the update; check the loss at those steps")
        out.append(f"Gradient norm {explosion.value:.3g} x its smoothed median at {_steps_words(explosion.steps)}: "
                   f"{clip}.")
    dispersion = norms.check("dispersion")
    if dispersion and dispersion.verdict != "ok":
        out.append(f"The norms vary widely ({dispersion.note}); refinement's median filter smooths this, but such "
                   f"variation came with an LR 30 x too high in {STUDY}.")
    if refinement.get("inside_band") is True:
        out.append(f"Refinement of these norms gives {refinement['summary']}. Here linear_refined and plain linear "
                   "decay are the same schedule (linear decay is the worst-case optimal one, arXiv 2310.07831).")
    elif "warmup_fraction" in refinement:
        advice = [f"Refinement of these norms gives {refinement['summary']}."]
        if refinement["warmup_fraction"] > 0:
            advice.append("Keep a warmup at least that long.")
        late = norms.check("late_rise")
        if late and late.verdict != "ok":
            advice.append(f"The late rise of the norms ({late.value:.3g} x the median) is the one AdamW with weight "
                          "decay shows (arXiv 2506.02285); refinement anneals faster for it.")
        out.append(" ".join(advice))
    falling = end.check("still_falling")
    if falling and falling.verdict in ("watch", "act"):
        middle = falling.details.get("middle", 0.0)
        if middle >= 0.5 * falling.value:
            out.append(f"The loss is still falling at the end ({falling.note}): the run is too short or the LR too "
                       f"low (1/300 of the good LR gave this in {STUDY}); train longer or raise the peak LR.")
        else:
            out.append(f"The loss stalled in the middle and fell mostly as the LR decayed ({falling.note}): the peak "
                       f"LR is likely too high (30 x the good LR gave this on the Llama tasks of {STUDY}).")
    progress = end.check("progress")
    if progress and progress.verdict == "watch":
        out.append(f"The loss barely moved over the run ({progress.note}): the LR is likely far too low "
                   f"(1/1000 of the good LR gave this on the MLP of {STUDY}), or the model is not learning from "
                   "this data; raise the peak LR.")
    floor = end.check("lr_floor")
    if floor and floor.verdict != "ok":
        out.append(f"The run ended before its decay did ({floor.note}): the last-iterate guarantee of linear decay "
                   "(arXiv 2310.07831) needs the LR to reach 0; set the schedule's length to the steps actually run.")
    last_eval = end.check("last_eval")
    if last_eval and last_eval.verdict != "ok":
        out.append(f"The last evaluation is {100 * last_eval.value:.1f} % worse than the best ({last_eval.note}): keep "
                   "the best checkpoint (load_best_model_at_end=True) or stop earlier.")
    return out


def _steps_words(steps: Sequence[int], limit: int = 8) -> str:
    if not steps:
        return "no step"
    ranges: list[str] = []
    start = previous = steps[0]
    for step in list(steps[1:]) + [None]:
        if step is not None and step == previous + 1:
            previous = step
            continue
        ranges.append(f"{start}" if start == previous else f"{start}-{previous}")
        if step is not None:
            start = previous = step
    text = ", ".join(ranges[:limit]) + (f" and {len(ranges) - limit} more" if len(ranges) > limit else "")
    return ("step " if len(steps) == 1 else "steps ") + text
