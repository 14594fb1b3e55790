"""The budget view (benchmarks/bench_budget.py): the order statistics against brute-force enumeration of every
subset, hand cases, the pilot's cost accounting, the targets and the `budget.json` contract's keys."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_budget
from bench_budget import (
    affordable,
    best_of_probabilities,
    budget_grid,
    budget_targets,
    budget_view,
    expected_best,
    task_budget,
)
from bench_variants import LINEAR_HABIT, habit_pilot_variant

CONTRACT_KEYS = ["split", "family", "steps", "weight_decay", "noise", "budgets", "curves"]


def brute_force_best(losses: list[float], draws: int) -> float:
    """The mean, over every subset of `draws` configurations, of the subset's best loss."""
    subsets = list(itertools.combinations(losses, draws))
    return sum(min(subset) for subset in subsets) / len(subsets)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8])
def test_expected_best_matches_every_subset(size):
    rng = np.random.default_rng(size)
    losses = rng.normal(2.0, 0.3, size).tolist()
    losses[size // 2] = losses[0]  # a tie
    for draws in range(1, size + 1):
        assert expected_best(losses, draws) == pytest.approx(brute_force_best(losses, draws), rel=1e-12)


@pytest.mark.parametrize("size", [1, 4, 9])
def test_best_of_probabilities_sum_to_one_and_match_counting(size):
    for draws in range(1, size + 1):
        probabilities = best_of_probabilities(size, draws)
        assert probabilities.sum() == pytest.approx(1.0)
        # the i-th best is the best of the draw when it is drawn and the other draws - 1 come from the size - i worse
        for i in range(1, size + 1):
            count = sum(1 for s in itertools.combinations(range(1, size + 1), draws) if min(s) == i)
            assert probabilities[i - 1] == pytest.approx(count / math.comb(size, draws))


def test_hand_cases():
    losses = [4.0, 1.0, 3.0, 2.0]
    assert expected_best(losses, 1) == pytest.approx(2.5)  # one run: the mean
    assert expected_best(losses, 4) == 1.0  # the whole grid: the minimum
    assert expected_best(losses, 9) == 1.0  # more than the grid: the whole grid
    # two of four: 6 pairs, best 1 in 3 of them, 2 in 2, 3 in 1 -> (3 + 4 + 3) / 6
    assert expected_best(losses, 2) == pytest.approx(10 / 6)


def test_diverged_configurations():
    losses = [1.0, None, 2.0, math.nan]
    assert expected_best(losses, 2) == math.inf  # the two diverged ones can be the whole draw
    # three of four always hold a finite one: 4 triples, best 1 in 3 of them, 2 in the other
    assert expected_best(losses, 3) == pytest.approx((3 * 1.0 + 2.0) / 4)


@pytest.mark.parametrize(("draws", "size"), [(0, 3), (4, 3), (1, 0)])
def test_bad_draws_raise(draws, size):
    with pytest.raises(ValueError, match="draws"):
        best_of_probabilities(size, draws)


def test_expected_best_needs_a_configuration():
    with pytest.raises(ValueError, match="empty"):
        expected_best([], 1)
    with pytest.raises(ValueError, match="draws must be >= 1"):
        expected_best([1.0], 0)


def test_pilot_cost_accounting():
    # a 10 % pilot before each refined run: 1.1 runs per LR tried
    assert affordable(1, 1.1) == 0  # one run does not pay for a pilot and its run
    assert affordable(2, 1.1) == 1
    assert affordable(4, 1.1) == 3  # 3.3 runs
    assert affordable(4.4, 1.1) == 4  # exactly four pilots and runs (no float round-down)
    assert affordable(4, 1 + 1 / 3) == 3
    assert affordable(4, 1.0) == 4
    with pytest.raises(ValueError, match="cost"):
        affordable(4, 0.0)


def test_budget_grid():
    assert budget_grid(1) == [1]
    assert budget_grid(3.3) == [1, 2, 4]
    assert budget_grid(8) == [1, 2, 4, 8]
    assert budget_grid(15) == [1, 2, 4, 8, 15]


def test_task_budget_counts_the_pilot():
    linear = [3.0, 1.0, 2.0, 4.0]  # 4 configurations at 1 run each
    refined = [1.5, 1.2, 2.1]  # 3 LRs at 1.1 runs each
    out = task_budget({"linear": [linear], "linear_refined": [refined]}, {"linear": 1.0, "linear_refined": 1.1}, 0.05)
    assert out["budgets"] == [1, 2, 4]
    assert out["curves"]["linear"] == pytest.approx([2.5, brute_force_best(linear, 2), 1.0])
    # B = 1: no refined run fits; B = 2: one LR (the mean); B = 4: three LRs (the whole grid, 3.3 runs)
    assert out["curves"]["linear_refined"][0] is None
    assert out["curves"]["linear_refined"][1] == pytest.approx(np.mean(refined))
    assert out["curves"]["linear_refined"][2] == pytest.approx(1.2)
    assert out["by_configurations"]["linear_refined"] == pytest.approx(
        [np.mean(refined), brute_force_best(refined, 2), 1.2]
    )
    assert out["linear_optimum"] == 1.0
    # linear reaches its own optimum (within 0.05) only with all 4 runs; refined never (1.2 > 1.05)
    assert out["configurations_to_reach_linear_optimum"] == {"linear": 4, "linear_refined": None}
    assert out["runs_to_reach_linear_optimum"] == {"linear": 4.0, "linear_refined": None}
    wide = task_budget({"linear": [linear], "linear_refined": [refined]}, {"linear": 1.0, "linear_refined": 1.1}, 0.31)
    # within 0.31 of 1.0: refined's best of two LRs, (2 * 1.2 + 1.5) / 3 = 1.3, costs 2.2 runs
    assert wide["configurations_to_reach_linear_optimum"]["linear_refined"] == 2
    assert wide["runs_to_reach_linear_optimum"]["linear_refined"] == pytest.approx(2.2)
    assert wide["at_budgets"]["4"]["linear_refined"] == pytest.approx(1.2)


def test_task_budget_over_data_sets_is_the_mean_of_theirs():
    first, second = [1.0, 3.0], [2.0, 4.0, 6.0]  # each data set tuned on its own grid with the same budget
    out = task_budget({"linear": [first, second]}, {"linear": 1.0}, None)
    assert out["budgets"] == [1, 2, 3]
    assert out["curves"]["linear"] == pytest.approx([(2.0 + 4.0) / 2, (1.0 + (2 + 2 + 4) / 3) / 2, (1.0 + 2.0) / 2])
    assert out["grid_sizes"] == {"linear": 3}


def test_task_budget_needs_linear():
    with pytest.raises(ValueError, match="linear"):
        task_budget({"cosine": [[1.0]]}, {"cosine": 1.0}, 0.1)


def summary_entry(split: str, domain: str, configs: dict[str, list[float]], stds: dict[str, float]) -> dict:
    """A task summary as `bench_report.task_summary` writes it, with only what the budget view reads."""
    steps = 100
    return {
        "domain": domain,
        "config": {"split": split, "steps": steps, "model": {"weight_decay": 0.1}},
        "schedules": {variant: {"eval_loss_std": std} for variant, std in stds.items()},
        "problems": {"main": {"configs": {
            variant: [{"eval_loss": loss, "steps": steps + (10 if "pilot" in variant else 0)} for loss in losses]
            for variant, losses in configs.items()
        }}},
    }


def test_budget_view_contract_and_targets():
    pilot = habit_pilot_variant()
    summary = {
        "llm_task": summary_entry(
            "heldout", "llm",
            {"linear": [2.0, 1.9, 1.8, 2.2, 2.1, 1.85, 2.3, 2.4], LINEAR_HABIT: [2.2, 2.1], pilot: [1.82, 1.84, 1.9]},
            {"linear": 0.02, LINEAR_HABIT: 0.01, pilot: 0.03},
        ),
        "convex_task": summary_entry(
            "heldout", "convex", {"linear": [1.0, 1.1], "cosine": [0.9, 1.2]}, {"linear": 0.001, "cosine": 0.5},
        ),
    }
    view = budget_view(summary)
    llm = view["llm_task"]
    assert list(llm)[: len(CONTRACT_KEYS)] == CONTRACT_KEYS
    assert (llm["split"], llm["family"], llm["steps"], llm["weight_decay"]) == ("heldout", "llm", 100, 0.1)
    assert llm["noise"] == 0.03  # the largest of linear's, linear_habit's and linear_refined's
    assert set(llm["curves"]) == {"linear", "linear_habit", "linear_refined"}  # schedules the task ran, no others
    assert llm["cost_runs"] == {"linear": 1.0, "linear_habit": 1.0, "linear_refined": 1.1}
    assert all(len(curve) == len(llm["budgets"]) for curve in llm["curves"].values())
    convex = view["convex_task"]
    assert convex["noise"] == 0.001  # cosine's spread is not the noise
    assert set(convex["curves"]) == {"linear", "cosine"}

    targets = budget_targets(view)
    assert targets["tasks"] == ["llm_task"]  # held-out LLM/network tasks only
    # at 4 runs: refined runs all 3 LRs (3.3 runs) -> 1.82; habit its 2 -> 2.1; 1.82 < 2.1 - 0.03
    beats = targets["beats_habit"]["per_task"]["llm_task"]
    assert beats["linear_refined"] == pytest.approx(1.82) and beats["linear_habit"] == pytest.approx(2.1)
    assert beats["met"] and targets["beats_habit"]["status"] == "met"
    # linear's optimum 1.8 + 0.03: refined's best of 2 LRs is (2 * 1.82 + 1.84) / 3 = 1.8267 -> 2.2 runs <= 8 / 4
    quarter = targets["quarter_of_linear"]["per_task"]["llm_task"]
    assert quarter["runs"] == pytest.approx(2.2) and quarter["limit"] == 2.0 and not quarter["met"]
    assert targets["quarter_of_linear"]["status"] == "missed"


def test_targets_not_evaluated_without_heldout_networks():
    view = budget_view({"convex_task": summary_entry("heldout", "convex", {"linear": [1.0]}, {"linear": 0.1})})
    targets = budget_targets(view)
    assert targets["tasks"] == []
    assert targets["beats_habit"]["status"] == targets["quarter_of_linear"]["status"] == "not evaluated"


def test_schedule_names_are_the_contracts():
    assert list(bench_budget.SCHEDULES) == [
        "linear", "linear_habit", "cosine", "warmup_stable_decay", "schedule_free", "linear_refined",
    ]


def test_budget_variants():
    from bench_variants import HABIT_WARMUP, is_habit_pilot, pilot_fraction, task_variants

    assert habit_pilot_variant() == "linear_refined_habit_pilot_0.1" and is_habit_pilot(habit_pilot_variant())
    assert pilot_fraction(habit_pilot_variant()) == 0.1 and pilot_fraction("linear_refined_pilot_0.05") == 0.05
    assert HABIT_WARMUP == 0.0  # transformers' default warmup (bench_variants says why)
    cfg = {"baselines": ["linear", "cosine"], "pilot_fractions": [0.1]}
    assert task_variants(cfg, [], {}) == [
        "linear", "cosine", "linear_refined", "linear_refined_pilot_0.1",
        LINEAR_HABIT, "linear_refined_habit_pilot_0.1",
    ]


def test_merge_budget_joins_invocations_and_judges_the_targets_again(tmp_path):
    """`merge_budget.py` writes one view from two invocations' folders: every task, the later folder winning a task
    both ran, the targets judged over the merged held-out tasks; a quick run does not merge with a full one."""
    import json

    import merge_budget

    pilot = habit_pilot_variant()
    winning = {"linear": [2.0, 1.9, 1.8, 2.2], LINEAR_HABIT: [2.2, 2.1], pilot: [1.82, 1.84, 1.9]}
    losing = {"linear": [2.0, 1.9, 1.8, 2.2], LINEAR_HABIT: [1.8, 1.8], pilot: [2.5, 2.6, 2.7]}
    stds = {"linear": 0.02, LINEAR_HABIT: 0.01, pilot: 0.03}
    first, second, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    runs = {
        first: {"dev_task": summary_entry("dev", "llm", winning, stds),
                "heldout_task": summary_entry("heldout", "llm", losing, stds)},
        second: {"heldout_task": summary_entry("heldout", "llm", winning, stds),
                 "other_task": summary_entry("heldout", "network", losing, stds)},
    }
    for folder, summary in runs.items():
        folder.mkdir()
        (folder / "budget.json").write_text(json.dumps(budget_view(summary)))
        (folder / "benchmark_details.json").write_text(json.dumps({"command": f"run {folder.name}", "quick": False}))
    assert merge_budget.main([str(out), str(first), str(second)]) == 0
    merged = json.loads((out / "budget.json").read_text())
    assert list(merged) == ["dev_task", "heldout_task", "other_task"]
    assert merged["heldout_task"] == json.loads(json.dumps(budget_view(runs[second])["heldout_task"]))
    report = (out / "budget.md").read_text()
    assert "run a" in report and "run b" in report
    # one of the two held-out tasks beats the habit (the later folder's), the other does not: half, so met
    assert "heldout_task, other_task" in report
    targets = budget_targets(merged)
    assert targets["beats_habit"]["status"] == "met"
    assert [t["met"] for t in targets["beats_habit"]["per_task"].values()] == [True, False]

    (second / "benchmark_details.json").write_text(json.dumps({"command": "quick", "quick": True}))
    with pytest.raises(SystemExit, match="quick"):
        merge_budget.main([str(out), str(first), str(second)])
    with pytest.raises(SystemExit, match="does not exist"):
        merge_budget.main([str(out), str(tmp_path / "missing")])
