"""The budget view: the eval loss each schedule gives a user who can afford B full-length runs (the AlgoPerf way of
comparing tuning cost), computed exactly from the benchmark's per-configuration results. Numpy only.

A user with a budget draws configurations from a schedule's search space uniformly without replacement, runs each
and keeps the best. Over a grid of N configurations sorted by eval loss, x_(1) <= ... <= x_(N), the i-th best is
the best of k drawn ones with probability C(N-i, k-1) / C(N, k), so

    E[best of k] = sum_i x_(i) * C(N-i, k-1) / C(N, k)        (k = 1: the grid's mean; k = N: its minimum)

(the "expected validation performance" of Dodge et al. 2019, "Show Your Work", EMNLP; AlgoPerf compares
optimizers by the tuning they need in the same spirit). A configuration's loss is its mean over the task's tuning
seeds (`benchmark_details.json`: ``tasks.<task>.problems.<data set>.configs.<variant>``). A diverged configuration
is a draw that gives nothing: where every drawn configuration can have diverged (k <= the diverged count) the
expected best is unbounded and the curve says null. A task over several data sets tunes each with the same budget:
its expected best is the mean of theirs (exact: the mean of expectations).

Search spaces, one benchmark variant each (`SCHEDULES`):

* `linear`, `cosine`, `warmup_stable_decay`, `schedule_free`: LR x warmup, the benchmark's tuning grid (grown where
  the best LR sat at an edge); on `smollm2_lora` the baselines other than linear share linear's LR (warmup only);
* `linear_habit`: linear at the habitual warmup `bench_variants.HABIT_WARMUP` (0: transformers' default), LR tuned;
* `linear_refined`: the product at that warmup, LR tuned: per LR, a pilot of the first ceil(0.1 T) updates at that
  LR, then the refined run (`bench_variants.habit_pilot_variant`).

Cost, in full-run units: a configuration costs its optimizer steps over T; 1 for a baseline and 1 + ceil(0.1 T) / T
for `linear_refined`, because `hf-lrschedule pilot` (and `run_pilot`) runs one pilot at the command's LR and then
the full run at that LR: every LR a user tries costs a pilot and a run. A budget of B runs affords
floor(B / cost) configurations, so `linear_refined` cannot run at B = 1 (null) and runs 3 LRs at B = 4. The
compute-matched curves put each schedule at k * cost for k = 1..N; the run-count curves at k.

Noise: the larger seeds' std, at their best configurations, of `linear`, `linear_habit` and `linear_refined` (the
schedules the targets compare): the benchmark's rule of "the larger of the two stds".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from bench_variants import LINEAR_HABIT, habit_pilot_variant

#: Budget-view schedule name -> the benchmark variant whose configurations are its search space.
SCHEDULES: dict[str, str] = {
    "linear": "linear",
    "linear_habit": LINEAR_HABIT,
    "cosine": "cosine",
    "warmup_stable_decay": "warmup_stable_decay",
    "schedule_free": "schedule_free",
    "linear_refined": habit_pilot_variant(),
}
#: The schedules whose seed spread is the task's noise (those the targets compare).
NOISE_SCHEDULES = ("linear", "linear_habit", "linear_refined")
#: The targets' budget: "at B <= 4 runs (pilot counted)".
TARGET_BUDGET = 4
#: Budgets (runs) the report's table shows, whatever the grid's size.
REPORT_BUDGETS = (1, 2, TARGET_BUDGET)
#: Targets: at least this share of the held-out LLM/network tasks.
TARGET_SHARE = 0.5


def best_of_probabilities(num_configurations: int, draws: int) -> np.ndarray:
    """P(the i-th best of `num_configurations` is the best of `draws` drawn uniformly without replacement).

    Args:
        num_configurations (`int`): N, the grid's size.
        draws (`int`): k, with 1 <= k <= N.

    Returns:
        `np.ndarray`: N probabilities (i = 1..N), C(N-i, k-1) / C(N, k); they sum to 1.

    Examples:
        >>> best_of_probabilities(3, 2).tolist()  # 2 of 3: the best is drawn 2/3 of the time, the second 1/3
        [0.6666666666666666, 0.3333333333333333, 0.0]
    """
    if num_configurations < 1 or not 1 <= draws <= num_configurations:
        raise ValueError(
            f"need 1 <= draws <= num_configurations, got {draws=}, {num_configurations=}"
        )
    total = math.comb(num_configurations, draws)
    return np.array([math.comb(num_configurations - i, draws - 1) / total for i in range(1, num_configurations + 1)])


def expected_best(losses: Sequence[float | None], draws: int) -> float:
    """Expected best (lowest) loss of `draws` configurations drawn uniformly without replacement from `losses`.

    Args:
        losses (`Sequence[float | None]`): one eval loss per configuration; None, NaN or inf = diverged.
        draws (`int`): configurations run, >= 1; more than the grid holds means the whole grid.

    Returns:
        `float`: the expectation; inf when every drawn configuration can have diverged.

    Examples:
        >>> expected_best([3.0, 1.0, 2.0], 1)  # one run: the grid's mean
        2.0
        >>> expected_best([3.0, 1.0, 2.0], 3)  # the whole grid: its minimum
        1.0
    """
    if draws < 1:
        raise ValueError(f"draws must be >= 1 (a budget that affords no run has no best), got {draws=}")
    values = np.sort(np.asarray([math.inf if v is None or not math.isfinite(v) else v for v in losses], dtype=float))
    if values.size == 0:
        raise ValueError("losses is empty: a search space needs at least one configuration")
    weights = best_of_probabilities(values.size, min(draws, values.size))
    used = weights > 0  # configurations that can be the best of the drawn ones
    if not np.all(np.isfinite(values[used])):
        return math.inf
    return float(weights[used] @ values[used])


def affordable(budget: float, cost: float) -> int:
    """Configurations of `cost` full runs each that a budget of `budget` full runs pays for."""
    if cost <= 0:
        raise ValueError(f"cost must be > 0 full runs, got {cost=}")
    return math.floor(budget / cost + 1e-9)  # 1e-9: 4 / (1 + 1/3) is 3, not 2.9999


def budget_grid(largest: float) -> list[int]:
    """1, 2, 4, ... below `largest`, then ceil(`largest`): the budget that runs every schedule's whole grid."""
    top = max(1, math.ceil(largest - 1e-9))
    budgets = [1]
    while budgets[-1] * 2 < top:
        budgets.append(budgets[-1] * 2)
    return budgets if budgets[-1] == top else [*budgets, top]


def curve_by_configurations(grids: Sequence[Sequence[float | None]], count: int) -> list[float]:
    """Expected best for k = 1..`count` configurations per data set: the mean over the data sets' grids."""
    return [float(np.mean([expected_best(grid, k) for grid in grids])) for k in range(1, count + 1)]


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def task_budget(
    grids: dict[str, Sequence[Sequence[float | None]]], costs: dict[str, float], noise: float | None
) -> dict[str, Any]:
    """The budget view of one task.

    Args:
        grids (`dict[str, Sequence[Sequence[float | None]]]`): schedule -> one list of configuration losses per data
            set (`linear` required: the reference).
        costs (`dict[str, float]`): schedule -> cost of one configuration in full runs (a pilot's share included).
        noise (`float`, *optional*): the seeds' spread; None counts as 0 (no tolerance).

    Returns:
        `dict`: ``budgets`` (runs, pilot counted), ``curves`` (schedule -> expected best per budget, None where the
        budget affords no configuration or every draw can diverge), ``by_configurations`` (schedule -> expected best
        after k = 1..N configurations), ``cost_runs``, ``grid_sizes``, ``linear_optimum`` (linear's full-sweep
        best), ``at_budgets`` (str(B) -> schedule -> expected best at B runs, for B in `REPORT_BUDGETS`) and
        ``runs_to_reach_linear_optimum`` / ``configurations_to_reach_linear_optimum`` (schedule -> the fewest runs,
        pilot counted, whose expected best is within `noise` of linear's optimum; None: not even the whole grid).
    """
    if "linear" not in grids:
        raise ValueError(f"the budget view needs linear's grid (the reference), got schedules {sorted(grids)}")
    sizes = {name: max(len(grid) for grid in per_problem) for name, per_problem in grids.items()}
    by_configurations = {name: curve_by_configurations(grids[name], sizes[name]) for name in grids}
    budgets = budget_grid(max(sizes[name] * costs[name] for name in grids))

    def at(name: str, budget: float) -> float | None:
        count = affordable(budget, costs[name])
        return None if count < 1 else finite_or_none(by_configurations[name][min(count, sizes[name]) - 1])

    optimum = by_configurations["linear"][-1]
    target = optimum + (noise or 0.0)
    reach = {}
    for name, curve in by_configurations.items():
        k = next((i + 1 for i, value in enumerate(curve) if value <= target), None)
        reach[name] = k
    return {
        "budgets": budgets,
        "curves": {name: [at(name, budget) for budget in budgets] for name in grids},
        "by_configurations": {name: [finite_or_none(v) for v in curve] for name, curve in by_configurations.items()},
        "cost_runs": dict(costs),
        "grid_sizes": sizes,
        "linear_optimum": finite_or_none(optimum),
        "at_budgets": {str(budget): {name: at(name, budget) for name in grids} for budget in REPORT_BUDGETS},
        "runs_to_reach_linear_optimum": {
            name: None if k is None else round(k * costs[name], 6) for name, k in reach.items()
        },
        "configurations_to_reach_linear_optimum": reach,
    }


def budget_view(summary: dict[str, Any]) -> dict[str, Any]:
    """`results/budget.json` from the benchmark's task summaries (`bench_report.task_summary`).

    Returns:
        `dict`: task -> ``{"split", "family", "steps", "weight_decay", "noise", "budgets", "curves", ...}`` (the
        contract, then `task_budget`'s other keys); a schedule a task does not run is absent.
    """
    view = {}
    for task, info in summary.items():
        cfg, steps = info["config"], info["config"]["steps"]
        grids, costs = {}, {}
        for name, variant in SCHEDULES.items():
            if variant not in info["schedules"]:
                continue
            per_problem = [problem["configs"][variant] for problem in info["problems"].values()]
            grids[name] = [[config["eval_loss"] for config in configs] for configs in per_problem]
            costs[name] = max(config["steps"] for configs in per_problem for config in configs) / steps
        stds = [info["schedules"][SCHEDULES[name]]["eval_loss_std"] for name in NOISE_SCHEDULES if name in grids]
        known = [std for std in stds if std is not None]
        noise = max(known) if known else None
        view[task] = {
            "split": cfg["split"],
            "family": info["domain"],
            "steps": steps,
            "weight_decay": float(cfg["model"].get("weight_decay", 0.0)),
            "noise": noise,
            **task_budget(grids, costs, noise),
        }
    return view


def _judge(per_task: dict[str, dict[str, Any] | None]) -> str:
    """"met" when at least `TARGET_SHARE` of the tasks meet it (a task without the data counts as missed), "not
    evaluated" when no task has the data."""
    if not per_task or all(v is None for v in per_task.values()):
        return "not evaluated"
    met = sum(1 for v in per_task.values() if v is not None and v["met"])
    return "met" if met >= TARGET_SHARE * len(per_task) else "missed"


def budget_targets(view: dict[str, Any]) -> dict[str, Any]:
    """The budget targets on the held-out LLM/network tasks.

    * ``beats_habit``: at `TARGET_BUDGET` runs (pilot counted) `linear_refined`'s expected best is below
      `linear_habit`'s by more than the noise;
    * ``quarter_of_linear``: `linear_refined` reaches linear's full-sweep optimum within the noise with at most a
      quarter of linear's runs (its grid size).

    Each is "met" on at least half of the tasks, "missed", or "not evaluated" (no such task, or no data).
    """
    tasks = [t for t, e in view.items() if e["split"] == "heldout" and e["family"] in ("llm", "network")]
    beats: dict[str, dict[str, Any] | None] = {}
    quarter: dict[str, dict[str, Any] | None] = {}
    for task in tasks:
        entry = view[task]
        refined = entry["at_budgets"][str(TARGET_BUDGET)].get("linear_refined")
        habit = entry["at_budgets"][str(TARGET_BUDGET)].get("linear_habit")
        noise = entry["noise"]
        beats[task] = None if None in (refined, habit, noise) else {
            "linear_refined": refined, "linear_habit": habit, "noise": noise, "met": refined < habit - noise,
        }
        if "linear_refined" not in entry["grid_sizes"]:
            quarter[task] = None
            continue
        limit = entry["grid_sizes"]["linear"] * entry["cost_runs"]["linear"] / 4
        runs = entry["runs_to_reach_linear_optimum"]["linear_refined"]
        quarter[task] = {"runs": runs, "limit": limit, "met": runs is not None and runs <= limit}
    return {
        "tasks": tasks,
        "budget": TARGET_BUDGET,
        "beats_habit": {"per_task": beats, "status": _judge(beats)},
        "quarter_of_linear": {"per_task": quarter, "status": _judge(quarter)},
    }
