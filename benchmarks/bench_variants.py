"""The schedules every task runs ("variants") and the refinement options they use: the one place that knows them.

A variant is a name: a baseline (`linear`, `cosine`, `warmup_stable_decay`, `schedule_free`; warmup tuned with the
LR), `linear_refined` (library defaults, refined from the complete `linear` run), a pilot (`linear_refined_pilot_<f>`),
one of the budget view's two (`linear_habit`: linear at the habitual warmup; `linear_refined_habit_pilot_<f>`: the
pilot and the refined run at that warmup) or an option-study variant (`refined_<norm>_<guard><R>[_tol<t>]`). An option is a plain dict ``{"name", "norm",
"guard", "max_norm_ratio", "tolerance"}``; the library's defaults are a dict of the same keys plus ``smoothing``.
"""

from __future__ import annotations

import warnings
from typing import Any

MAIN_SCHEDULES = [
    "cosine",
    "linear",
    "warmup_stable_decay",
    "schedule_free",
    "linear_refined",
    "linear_refined_pilot_0.05",
    "linear_refined_pilot_0.1",
    "linear_refined_pilot_0.2",
]
BASELINES = ["linear", "cosine", "warmup_stable_decay", "schedule_free"]
#: The habitual warmup (a fraction of T) of the budget view: `linear_habit` is linear at this warmup with the LR
#: tuned, and `linear_refined` in the budget view runs its pilot and its refined run at it. 0 because it is what a
#: transformers user gets without choosing (`TrainingArguments.warmup_steps` defaults to 0); the other common
#: habit, 5 %, measured the same on a held-back LM task (+4.7 % vs +4.9 % over linear with a tuned warmup). It is in
#: every task's full warmup grid, so `linear_habit`'s tuning reuses `linear`'s cells.
HABIT_WARMUP = 0.0
#: linear at `HABIT_WARMUP`, LR tuned (its cells are `linear`'s: the same runs).
LINEAR_HABIT = "linear_habit"
#: The budget view's pilot fraction: the 10 % pilot of the targets.
BUDGET_PILOT_FRACTION = 0.1
#: Every pilot fraction some task runs (a task's own are `cfg["pilot_fractions"]`).
PILOT_FRACTIONS = (0.05, 0.1, 0.2)
#: The option study (dev tasks only; l2 norms: l1 lost under every guard in the earlier study, README). Each
#: candidate is refined from the same complete linear run and runs at the LR where `linear_refined` is best.
#: (guard, R, tolerance); the library default is one of them.
OPTION_GRID: list[tuple[str, float, float]] = [
    ("none", 2.0, 1.0), ("floor", 2.0, 1.0), ("floor", 2.0, 1.5), ("floor", 2.0, 2.0),
]
#: The options an option-study variant sets; the others (smoothing) stay at the library's defaults.
OPTION_KEYS = ("norm", "guard", "max_norm_ratio", "tolerance")


def is_baseline(variant: str) -> bool:
    """Baselines get their warmup tuned with the LR; refined schedules start at their table."""
    return variant in BASELINES


def library_defaults() -> dict[str, Any]:
    """The refinement options `linear_refined` uses when given none (read from the installed library)."""
    from hf_lrschedule import RefineOptions

    return RefineOptions().to_dict()


def option_name(norm: str, guard: str, ratio: float | None, tolerance: float = 1.0) -> str:
    name = f"refined_{norm}_{'none' if guard == 'none' else f'{guard}{ratio:g}'}"
    return name if tolerance == 1.0 or guard == "none" else f"{name}_tol{tolerance:g}"


def pilot_variant(fraction: float) -> str:
    return f"linear_refined_pilot_{fraction:g}"


def habit_pilot_variant(fraction: float = BUDGET_PILOT_FRACTION) -> str:
    """The product at a user's habitual warmup: a pilot of `fraction` of T at `HABIT_WARMUP` and the LR of the cell,
    then the refined run with that warmup kept (as `hf-lrschedule pilot` runs it); its LR is tuned on the grid."""
    return f"linear_refined_habit_pilot_{fraction:g}"


def is_habit_pilot(variant: str) -> bool:
    return variant.startswith("linear_refined_habit_pilot_")


def pilot_fraction(variant: str) -> float:
    """`linear_refined_pilot_0.1` (or `linear_refined_habit_pilot_0.1`) -> 0.1."""
    return float(variant.rsplit("_", 1)[-1])


def guard_label(guard: str, ratio: float | None, tolerance: float = 1.0) -> str:
    if guard == "none":
        return "none"
    return f"{guard} R={ratio:g}" + (f", tol {tolerance:g}" if tolerance != 1.0 else "")


def option_variants(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The option study's candidates for a task (none unless it is a dev task with the study on)."""
    if not cfg["option_study"]:
        return []
    return [
        {"name": option_name("l2", g, r, tol), "norm": "l2", "guard": g, "max_norm_ratio": r, "tolerance": tol}
        for g, r, tol in OPTION_GRID
    ]


def is_default(option: dict[str, Any], defaults: dict[str, Any]) -> bool:
    if option["norm"] != defaults["norm"] or option["guard"] != defaults["guard"]:
        return False
    if option["guard"] == "none":
        return True
    return float(option["max_norm_ratio"]) == float(defaults["max_norm_ratio"]) and float(
        option.get("tolerance", 1.0)
    ) == float(defaults.get("tolerance", 1.0))


def task_variants(cfg: dict[str, Any], options: list[dict[str, Any]], defaults: dict[str, Any]) -> list[str]:
    """Every variant a task runs, in order; the option equal to the library default is `linear_refined` itself."""
    names = list(cfg["baselines"]) + ["linear_refined"] + [pilot_variant(f) for f in cfg["pilot_fractions"]]
    names += [LINEAR_HABIT, habit_pilot_variant()]  # the budget view's (bench_budget)
    return names + [o["name"] for o in options if not is_default(o, defaults)]


def option_kwargs(option: dict[str, Any] | None) -> dict[str, Any]:
    """The keyword arguments an option passes to the library (none: the library's defaults, as a user gets them)."""
    return {} if option is None else {key: option[key] for key in OPTION_KEYS}


def refine_options(option: dict[str, Any] | None, defaults: dict[str, Any]) -> dict[str, Any]:
    """All four refinement options a variant runs with (recorded in its cells' cache key)."""
    return dict(defaults) if option is None else {**option_kwargs(option), "smoothing": defaults["smoothing"]}


def refine(values: Any, num_training_steps: int, option: dict[str, Any] | None = None, positions: Any = None):
    """`refinement_details` with `option`'s settings, its warnings silenced (the benchmark feeds it real runs)."""
    from hf_lrschedule import refinement_details

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return refinement_details(values, num_training_steps, positions=positions, **option_kwargs(option))
