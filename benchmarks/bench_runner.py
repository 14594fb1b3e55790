"""Running a task's cells: one training run per (data set, variant, LR, seed), cached as JSON, with progress and ETA.

A cell is written atomically under ``<out>/cells/<task>-<fingerprint>/<data set>/<variant>/lr<LR>_seed<S>.json``
when it finishes, and loaded instead of rerun when its cache meta matches: an interrupted benchmark resumes there.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import bench_tasks
import numpy as np
from bench_registry import BenchTask
from bench_variants import (
    HABIT_WARMUP,
    LINEAR_HABIT,
    is_baseline,
    is_habit_pilot,
    option_kwargs,
    option_variants,
    pilot_fraction,
    refine,
    refine_options,
    task_variants,
)

from hf_lrschedule.formats import atomic_write_text

BENCH_VERSION = 2  # 2: baselines' warmup is tuned (a cell's warmup is in its path and meta)
#: Configuration keys that only decide which cells run (not what a cell computes): left out of the cache key.
SELECTION_KEYS = (
    "lrs", "seeds", "tune_seeds", "est_step_s", "problems", "option_study", "warmups", "lr_extensions", "split", "baselines", "pilot_fractions",
)


def fingerprint(name: str, cfg: dict[str, Any]) -> str:
    keep = {k: v for k, v in cfg.items() if k not in SELECTION_KEYS}
    blob = json.dumps({"task": name, "cfg": keep, "version": BENCH_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def write_json(path: Path, payload: Any) -> None:
    """Compact JSON in the payload's own key order (`benchmark.json` keeps the schedules in table order)."""
    atomic_write_text(path, json.dumps(payload, allow_nan=False))


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
        print(f"[bench]   {self.cell_label}: step {step}/{total}{loss_text} | cell ETA {fmt_time(cell_eta)}",
              flush=True)

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
    def __init__(self, task: BenchTask, quick: bool, out: Path, defaults: dict[str, Any]):
        self.task, self.quick, self.defaults = task, quick, defaults
        self.name, self.cfg = task.name, task.config(quick)
        self.progress: Progress | None = None  # set before `run`
        self.T = self.cfg["steps"]
        self.cells_dir = out / "cells" / f"{self.name}-{fingerprint(self.name, self.cfg)}"
        self.best_lr: dict[tuple[str, str], float] = {}
        #: (problem, variant) -> warmup fraction of the best cell (None for refined schedules: no extra warmup)
        self.best_warmup: dict[tuple[str, str], float | None] = {}
        #: (problem, variant) -> the LR grid it was tuned on (extended where the best LR sat at an edge)
        self.lr_grid: dict[tuple[str, str], list[float]] = {}
        self._problem_cache: dict[str, Any] = {}
        self.options = option_variants(self.cfg)

    def estimate_s(self) -> float:
        """Seconds per cell before any is measured (the first ETA)."""
        overhead = 4.0 if self.cfg["kind"] == "lora" else 0.3
        return self.cfg["est_step_s"] * self.T + overhead

    # ---- data / problems (loaded lazily: a fully cached task never touches the data) ----
    def problem(self, key: str):
        if key not in self._problem_cache:
            self._problem_cache[key] = self.task.problem(self.cfg, key)
        return self._problem_cache[key]

    # ---- variants ----
    def variants(self) -> list[str]:
        return task_variants(self.cfg, self.options, self.defaults)

    def option(self, variant: str) -> dict[str, Any] | None:
        return next((o for o in self.options if o["name"] == variant), None)

    def shares_lr(self, variant: str) -> bool:
        """Runs at one LR chosen for another schedule: the LoRA task (linear's) and the option study (refined's).
        The budget view's variants tune their own LR everywhere: their LR grid is what the budget view counts."""
        if self.option(variant) is not None:
            return True
        return self.cfg["share_linear_lr"] and variant not in ("linear", LINEAR_HABIT) and not is_habit_pilot(variant)

    def grid(self, variant: str) -> list[float]:
        if self.option(variant) is not None:
            return [self.best_lr[(self.current_problem, "linear_refined")]]
        if self.shares_lr(variant):
            return [self.best_lr[(self.current_problem, "linear")]]
        return list(self.cfg["lrs"])

    def warmups(self, variant: str) -> list[float | None]:
        if variant == LINEAR_HABIT:
            return [HABIT_WARMUP]
        return list(self.cfg["warmups"]) if is_baseline(variant) else [None]

    @staticmethod
    def cell_variant(variant: str) -> str:
        """The variant whose cells a variant's runs are: `linear_habit` is `linear` at one warmup (the same runs)."""
        return "linear" if variant == LINEAR_HABIT else variant

    def warmup_steps(self, fraction: float | None) -> int:
        return 0 if fraction is None else round(fraction * self.T)

    def linear_warmup(self, problem: str) -> float:
        """The warmup fraction of the tuned linear run (pilots and refinement start from linear as users run it)."""
        return self.best_warmup[(problem, "linear")]

    def flag_flip(self, problem: str) -> tuple[float, float | None]:
        """(LR, warmup) of a refined cell "at linear's best LR and warmup": what a user who only changes
        `--lr_scheduler_type` gets (their `--warmup_steps` stays: a ramp to the table's first value, the library's
        rule). A zero warmup is the table alone, the same cell as the main row's."""
        w = self.linear_warmup(problem)
        return self.best_lr[(problem, "linear")], (w or None)

    def runs_flag_flip(self, variant: str) -> bool:
        budget_only = variant == LINEAR_HABIT or is_habit_pilot(variant)  # their warmup is the habit, not linear's
        return not is_baseline(variant) and self.option(variant) is None and not budget_only

    def weight(self, variant: str) -> float:
        """A cell's share of the ETA: a LoRA pilot cell also runs its pilot."""
        if self.cfg["kind"] == "lora" and (variant.startswith("linear_refined_pilot_") or is_habit_pilot(variant)):
            return 1.0 + pilot_fraction(variant)
        return 1.0

    def planned_cells(self) -> float:
        """Cells this task will run (for the ETA): grid x warmups x tuning seeds + the other seeds at the best LR
        (+ refined schedules at linear's best LR); LR-grid extensions are not foreseen."""
        seeds, tune = self.cfg["seeds"], self.cfg["tune_seeds"]
        total = 0.0
        for variant in self.variants():
            grid = 1 if self.shares_lr(variant) else len(self.cfg["lrs"])
            grid *= len(self.warmups(variant))
            count = grid * len(tune) + len(seeds) - len(tune) if grid > 1 else len(seeds)
            if variant == LINEAR_HABIT and HABIT_WARMUP in self.cfg["warmups"]:
                count = len(seeds) - len(tune)  # its tuning cells are linear's
            if self.runs_flag_flip(variant):
                count += len(seeds)  # at linear's best LR and warmup
            total += count * self.weight(variant)
        return total * len(self.cfg["problems"])

    # ---- cells ----
    def cell_path(self, problem: str, variant: str, lr: float, seed: int, warmup: float | None = None) -> Path:
        tag = "" if warmup is None else f"_w{warmup:g}"
        return self.cells_dir / problem / variant / f"lr{lr:g}{tag}_seed{seed}.json"

    def load(self, path: Path, meta: dict[str, Any]) -> dict[str, Any] | None:
        try:
            cell = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return cell if cell.get("meta") == clean_json(meta) else None

    def cell(
        self, problem: str, variant: str, lr: float, seed: int, warmup: float | None = None, count: bool = True
    ) -> dict[str, Any]:
        variant = self.cell_variant(variant)
        path = self.cell_path(problem, variant, lr, seed, warmup)
        spec, meta, extra = self.spec(problem, variant, lr, seed, warmup)
        cached = self.load(path, meta)
        label = f"{variant} lr={lr:g}{'' if warmup is None else f' warmup={warmup:g}'} seed={seed}"
        if problem != "main":
            label = f"[{problem}] {label}"
        if cached is not None:
            if count:
                self.progress.end(self.name, None, cached, self.weight(variant))
            return cached
        self.progress.begin(self.name, label)
        start = time.perf_counter()
        result = self.execute(problem, spec, lr, seed, extra)
        seconds = time.perf_counter() - start
        if result.get("pilot_grad_norms_l2"):  # the real pilot (Trainer) against the linear run's first updates
            w = meta.get("pilot_warmup", self.linear_warmup(problem))
            linear_meta = {"variant": "linear", "lr": lr, "seed": seed, "warmup": w}
            linear = self.load(self.cell_path(problem, "linear", lr, seed, w), linear_meta)
            if linear is not None:
                a = np.asarray(result["pilot_grad_norms_l2"], dtype=float)
                b = np.asarray(linear["grad_norms_l2"][: a.size], dtype=float)
                result["pilot_vs_linear_prefix_max_rel_diff"] = float(np.max(np.abs(a - b) / b))
        cell = clean_json({"meta": meta, **extra.get("record", {}), **result, "seconds": seconds})
        write_json(path, cell)
        self.progress.end(self.name, seconds, cell, self.weight(variant))
        return cell

    def prefix_cell(self, problem: str, lr: float, seed: int, warmup: float | None = None) -> dict[str, Any]:
        """The first ceil(max f * T) updates of the linear run (a pilot) at `warmup` (default: linear's tuned one)
        when the full run is not needed."""
        n = math.ceil(max(self.cfg["pilot_fractions"] or [0.2]) * self.T)
        w = self.linear_warmup(problem) if warmup is None else warmup
        return self.auxiliary_cell(
            self.cell_path(problem, "_linear_prefix", lr, seed, w),
            {"variant": "_linear_prefix", "lr": lr, "seed": seed, "steps": n, "warmup": w},
            f"pilot prefix ({n} steps) lr={lr:g} warmup={w:g} seed={seed}",
            lambda: self.execute(
                problem, {"kind": "hf", "name": "linear"}, lr, seed, {"max_steps": n, "warmup_steps": self.warmup_steps(w)}
            ),
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
        write_json(path, cell)
        print(f"[bench]   done in {seconds:.1f}s", flush=True)
        return cell

    def linear_norms(
        self, problem: str, lr: float, seed: int, steps: int, warmup: float | None = None
    ) -> dict[str, list[float]]:
        """Norms of the first `steps` updates of the linear run at (lr, seed, warmup; default: linear's tuned
        warmup): from the full run if it exists."""
        w = self.linear_warmup(problem) if warmup is None else warmup
        path = self.cell_path(problem, "linear", lr, seed, w)
        full_meta = self.spec(problem, "linear", lr, seed, w)[1]
        cell = self.load(path, full_meta) if path.is_file() else None
        if cell is None:
            cell = self.prefix_cell(problem, lr, seed, w)
        l1 = cell.get("grad_norms_l1")
        source = "linear run" if cell["meta"]["variant"] == "linear" else "prefix run"
        return {"l2": cell["grad_norms_l2"][:steps], "l1": l1[:steps] if l1 else None, "source": source}

    def spec(
        self, problem: str, variant: str, lr: float, seed: int, warmup: float | None = None
    ) -> tuple[dict, dict, dict]:
        """(schedule spec, cache meta, extras) of a cell. Refined cells compute their table here; their `warmup`
        (None in the main rows) is a ramp before the table, as `--warmup_steps` gives with `linear_refined`."""
        meta: dict[str, Any] = {"variant": variant, "lr": lr, "seed": seed}
        if is_baseline(variant):
            meta["warmup"] = warmup
            extra = {"warmup_steps": self.warmup_steps(warmup)}
            if variant == "schedule_free":
                return {"kind": "schedule_free"}, meta, extra
            return {"kind": "hf", "name": variant}, meta, extra
        spec, meta, extra = self.refined_spec(problem, variant, lr, seed, meta)
        if warmup is not None:  # the flag flip: the user's warmup ramps to the table's first value
            meta["warmup"] = warmup
            extra["refined_warmup_steps"] = self.warmup_steps(warmup)
        return spec, meta, extra

    def refined_spec(self, problem: str, variant: str, lr: float, seed: int, meta: dict[str, Any]):
        from hf_lrschedule.pilot.runner import pilot_profile

        lora = self.cfg["kind"] == "lora"
        if variant.startswith("linear_refined_pilot_") or is_habit_pilot(variant):
            habit = is_habit_pilot(variant)
            fraction = pilot_fraction(variant)
            w = HABIT_WARMUP if habit else self.linear_warmup(problem)
            # `mapping` stays in the cache key (always "extend", the pilot's only mapping): cached cells keep matching
            meta.update(pilot_fraction=fraction, refine=dict(self.defaults), mapping="extend", pilot_warmup=w)
            # The habit pilot is the product at the user's warmup: kept as a ramp before the table in the refined run.
            # The main pilot rows (pre-registered) start the refined run at its table.
            ramp = {"refined_warmup_steps": self.warmup_steps(w)} if habit and w else {}
            if lora:  # the pilot phase runs linear with the warmup w
                return {"kind": "pilot"}, meta, {"pilot_fraction": fraction, "warmup_steps": self.warmup_steps(w), **ramp}
            n = math.ceil(fraction * self.T)
            norms = self.linear_norms(problem, lr, seed, n, w)  # the first n updates of the real run (linear over T)
            values = np.asarray(norms[self.defaults["norm"]], dtype=float)
            profile, positions = pilot_profile(values, np.arange(1, n + 1), self.T)
            details = refine(profile, self.T, positions=positions)
            record = {"peak_fraction": details.peak_fraction, "pilot_steps": n, "pilot_source": norms["source"]}
            return {"kind": "table", "table": details.multipliers.tolist()}, meta, {"record": record, **ramp}
        # refined from the complete linear run at linear's best LR and warmup, same seed
        source_lr, source_w = self.best_lr[(problem, "linear")], self.linear_warmup(problem)
        option = self.option(variant)
        options = refine_options(option, self.defaults)
        meta.update(source_lr=source_lr, source_warmup=source_w, refine=options)
        source = self.cell(problem, "linear", source_lr, seed, source_w, count=False)
        if lora:
            spec = {"kind": "grad_norms", "l2": source["grad_norms_l2"], "l1": source["grad_norms_l1"]}
            if option is not None:  # through lr_scheduler_kwargs, as a user would set them
                spec["options"] = option_kwargs(option)
            return spec, meta, {}
        values = source["grad_norms_l1"] if options["norm"] == "l1" else source["grad_norms_l2"]
        details = refine(values, self.T, option)  # no option: the library's defaults, exactly as a user gets them
        record = {"peak_fraction": details.peak_fraction}
        return {"kind": "table", "table": details.multipliers.tolist()}, meta, {"record": record}

    def execute(self, problem: str, spec: dict, lr: float, seed: int, extra: dict) -> dict[str, Any]:
        cfg = self.cfg
        if cfg["kind"] == "lora":
            data = self.problem(problem)
            with tempfile.TemporaryDirectory(prefix="hf_lrschedule_bench_norms_") as folder:
                if spec["kind"] == "grad_norms":
                    spec = self.recorder_spec(spec, Path(folder))
                return bench_tasks.run_lora(
                    {**cfg["model"], "steps": self.T, "warmup": extra.get("warmup_steps", 0),
                     "refined_warmup": extra.get("refined_warmup_steps", 0), "wsd_decay": cfg["wsd_decay"]}, data,
                    spec=spec, lr=lr, seed=seed, pilot_fraction=extra.get("pilot_fraction"),
                    progress=self.progress.step,
                )
        marks = tuple(sorted({math.ceil(f * self.T) for f in cfg["pilot_fractions"]}))
        return bench_tasks.run_loop(
            self.problem(problem), spec=spec, lr=lr, seed=seed, num_training_steps=self.T,
            warmup=extra.get("warmup_steps", extra.get("refined_warmup_steps", 0)),
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
        """Best (LR, warmup) on the tuning seeds, growing the LR grid while the best LR sits at an edge; then the
        other seeds at the best; refined schedules also run every seed at linear's best LR (the flag flip)."""
        self.current_problem = problem
        grid, warmups, seeds, tune_seeds = self.grid(variant), self.warmups(variant), self.cfg["seeds"], self.cfg["tune_seeds"]
        extensions = 0 if self.shares_lr(variant) else self.cfg["lr_extensions"]
        if len(grid) * len(warmups) == 1:
            best = (grid[0], warmups[0])
            for seed in seeds:
                self.cell(problem, variant, best[0], seed, best[1])
        else:
            scores: dict[tuple[float, float | None], float] = {}
            while True:
                for lr in grid:
                    for w in warmups:
                        if (lr, w) not in scores:
                            losses = [self.cell(problem, variant, lr, s, w).get("eval_loss") for s in tune_seeds]
                            ok = all(v is not None for v in losses)
                            scores[(lr, w)] = float(np.mean(losses)) if ok else math.inf
                best = min(scores, key=lambda k: (scores[k], k[0], k[1] or 0.0))
                at_top, at_bottom = best[0] == grid[-1], best[0] == grid[0]
                if len(grid) < 2 or extensions == 0 or not (at_top or at_bottom) or not math.isfinite(scores[best]):
                    break
                extensions -= 1
                if at_top:
                    grid.append(grid[-1] * grid[-1] / grid[-2])
                else:
                    grid.insert(0, grid[0] * grid[0] / grid[1])
            for seed in seeds:
                if seed not in tune_seeds:
                    self.cell(problem, variant, best[0], seed, best[1])
        self.best_lr[(problem, variant)], self.best_warmup[(problem, variant)] = best
        self.lr_grid[(problem, variant)] = grid
        if self.runs_flag_flip(variant):
            lin_lr, lin_w = self.flag_flip(problem)
            for seed in seeds:  # what a user who only flips the flag gets
                self.cell(problem, variant, lin_lr, seed, lin_w)

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
        full = self.cell(problem, "linear", lr, seed, self.linear_warmup(problem), count=False)
        a = np.asarray(prefix["grad_norms_l2"], dtype=float)
        b = np.asarray(full["grad_norms_l2"][: a.size], dtype=float)
        return {"problem": problem, "lr": lr, "seed": seed, "steps": int(a.size),
                "max_rel_diff": float(np.max(np.abs(a - b) / b)),
                "prefix_train_s": prefix.get("train_s"), "full_wall_s": full.get("wall_s")}

    def config_record(
        self, variant: str, lr: float, warmup: float | None, cells: list[dict | None], eval_loss: float | None
    ) -> dict[str, Any]:
        """One tuned configuration as the budget view reads it: its tuning seeds' eval loss (mean; None when a seed
        diverged or is missing) and its cost in optimizer steps, a pilot's included (a pilot's steps are the first
        updates of a linear run: the benchmark reuses them, a user runs them)."""
        pilot = variant.startswith("linear_refined_pilot_") or is_habit_pilot(variant)
        pilot_steps = math.ceil(pilot_fraction(variant) * self.T) if pilot else 0
        seconds = [c.get("seconds") for c in cells if c]
        return {
            "lr": lr,
            "warmup": warmup,
            "eval_loss": eval_loss,
            "tune_seeds": [
                {"seed": s, "eval_loss": c.get("eval_loss") if c else None} for s, c in zip(self.cfg["tune_seeds"], cells)
            ],
            "steps": self.T + pilot_steps,
            "pilot_steps": pilot_steps,
            "seconds": float(np.mean(seconds)) if seconds and None not in seconds else None,
        }

    def results(self) -> dict[str, Any]:
        """Per problem and variant: best LR, per-seed eval losses, curves and schedules (for the report)."""
        out: dict[str, Any] = {}
        for problem in self.cfg["problems"]:
            self.current_problem = problem
            rows = {}
            for variant in self.variants():
                lr, w = self.best_lr[(problem, variant)], self.best_warmup[(problem, variant)]
                cells = [self.cell(problem, variant, lr, s, w, count=False) for s in self.cfg["seeds"]]
                grid = self.lr_grid[(problem, variant)]
                grid_scores, configs = {}, []
                source = self.cell_variant(variant)
                for g in grid:
                    for v in self.warmups(variant):
                        values = [
                            self.load(self.cell_path(problem, source, g, s, v), self.spec(problem, source, g, s, v)[1])
                            for s in self.cfg["tune_seeds"]
                        ]
                        losses = [c.get("eval_loss") if c else None for c in values]
                        key = f"{g:g}" if v is None else f"{g:g}@w{v:g}"
                        grid_scores[key] = float(np.mean(losses)) if all(x is not None for x in losses) else None
                        configs.append(self.config_record(variant, g, v, values, grid_scores[key]))
                row = {
                    "lr": lr,
                    "warmup_fraction": w,
                    "lr_grid": grid,
                    "lr_at_grid_edge": len(grid) > 1 and lr in (min(grid), max(grid)),
                    "grid_scores": grid_scores,
                    "configs": configs,
                    "seeds": [{"seed": s, "eval_loss": c.get("eval_loss")} for s, c in zip(self.cfg["seeds"], cells)],
                    "cells": cells,
                }
                if self.runs_flag_flip(variant):
                    lin_lr, lin_w = self.flag_flip(problem)
                    at = [self.cell(problem, variant, lin_lr, s, lin_w, count=False) for s in self.cfg["seeds"]]
                    row["at_linear_lr"] = {
                        "lr": lin_lr, "warmup_fraction": lin_w or 0.0,
                        "seeds": [{"seed": s, "eval_loss": c.get("eval_loss")} for s, c in zip(self.cfg["seeds"], at)],
                    }
                rows[variant] = row
            out[problem] = rows
        return out


def compute_seconds(runners: Iterable[TaskRunner]) -> float:
    """Every cell of the runners' current configuration, pilot prefixes included: the time they took when run."""
    total = 0.0
    for runner in runners:
        for path in runner.cells_dir.rglob("*.json"):
            try:
                total += float(json.loads(path.read_text(encoding="utf-8")).get("seconds") or 0.0)
            except (OSError, ValueError):
                continue
    return total
