"""`benchmark.md` and `budget.md`: the tables, one function per section, written from the task summaries, the
details and the budget view alone."""

from __future__ import annotations

import math
from typing import Any

from bench_budget import REPORT_BUDGETS
from bench_runner import fmt_time
from bench_variants import HABIT_WARMUP, MAIN_SCHEDULES, PILOT_FRACTIONS, guard_label


def verdict(cmp: dict[str, Any]) -> str:
    if cmp["rel_diff"] is None:
        return "n/a"
    if cmp["inside_noise"]:
        return "inside noise"
    return "better" if cmp["diff"] < 0 else "worse"


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.2f}%"


def num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def noise_mark(cmp: dict[str, Any]) -> str:
    """`~` inside the noise, `+`/`-` worse/better beyond it."""
    return "~" if cmp["inside_noise"] else ("+" if (cmp["diff"] or 0) > 0 else "-")


def markdown(summary: dict[str, Any], details: dict[str, Any]) -> str:
    sections = [
        _header(details),
        _setup(summary),
        _main_table(summary),
        _targets(details["targets"]),
        _losers(summary),
        _option_study(details["option_study"]),
        _pilot_cost(summary, details["refine_timings"]),
        *(_per_data_set(task, info) for task, info in summary.items() if len(info["problems"]) > 1),
        _files(details["pngs"]),
    ]
    return "\n".join(line for section in sections for line in section)


def _header(details: dict[str, Any]) -> list[str]:
    defaults = details["library_defaults"]
    mode = "quick (tiny sizes: a smoke test, numbers mean nothing)" if details["quick"] else "full"
    return [
        "# Schedule benchmark",
        "",
        f"Command: `{details['command']}`  ",
        (
            f"Wall time: {fmt_time(details['wall_s'])} for this invocation (cached cells are not rerun); the runs "
            f"behind these results took {fmt_time(details['compute_s'])} in all (sum over the cached cells, each "
            "timed when it ran).  "
        ),
        f"Mode: {mode}; {details['machine']}; torch threads: {details['threads']}.  ",
        (
            f"Library refinement defaults used by `linear_refined`: norm={defaults['norm']}, "
            f"guard={defaults['guard']}, max_norm_ratio={defaults['max_norm_ratio']}, "
            f"tolerance={defaults.get('tolerance', 1.0)}, smoothing={defaults['smoothing']}."
        ),
        "",
        (
            "Protocol (`results/protocol.json`): defaults and options are chosen on the **dev** tasks; the "
            "**held-out** tasks are only reported. Eval loss = final loss at the end of training (language models: "
            "held-out text; Fashion-MNIST: the 10k test images; logistic regression: the full-batch training "
            "objective, mean over the data sets). Baselines (linear, cosine, WSD, schedule-free) are tuned the way "
            "users tune them: LR jointly with the warmup (the Setup table's warmups, % of T) on the tuning seeds; "
            "refined schedules get no extra warmup and their LR is tuned on the same grid. A grid grows by one point where a "
            "schedule is best at its edge (up to twice). Mean ± sample std over seeds at each schedule's best "
            "setting. *vs linear*: relative difference of the means. *Noise*: a difference is **inside the noise** "
            "when |mean difference| < the larger of the two seeds' std."
        ),
        "",
    ]


def _setup(summary: dict[str, Any]) -> list[str]:
    lines = ["## Setup", "", "| task | split | what | T | baseline warmups | LR grid (tuning seeds) | seeds |",
             "|" + "---|" * 7]
    for task, info in summary.items():
        cfg = info["config"]
        grid = ", ".join(f"{v:g}" for v in cfg["lrs"])
        share = "; other schedules use linear's best LR" if cfg["share_linear_lr"] else ""
        warmups = ", ".join(f"{100 * w:g}%" for w in cfg["warmups"])
        lines.append(
            f"| {task} | {cfg['split']} | {info['what']} | {cfg['steps']} | {warmups} | {grid} "
            f"({', '.join(map(str, cfg['tune_seeds']))}){share} | {', '.join(map(str, cfg['seeds']))} |"
        )
    return lines


def _main_table(summary: dict[str, Any]) -> list[str]:
    lines = ["", "## Main table", "",
             ("| task | schedule | eval loss | vs linear | per-seed Δ vs linear | seeds' std | noise | best LR (warmup) "
             "| at linear's best LR and warmup |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for task, info in summary.items():
        for name in MAIN_SCHEDULES:
            if name not in info["schedules"]:
                continue
            entry, cmp = info["schedules"][name], info["compare"][name]
            at = info["at_linear_lr"].get(name)
            if at is None:
                at_text = "same" if name.startswith("linear_refined") else ""
            else:
                at_text = f"{num(at['eval_loss_mean'])} ({pct(at['compare']['rel_diff'])}, {verdict(at['compare'])})"
            paired = ", ".join(f"{v:+.4f}" for v in cmp["paired"]) if cmp["paired"] else "n/a"
            if name == "linear":
                paired, flag, rel = "", "", ""
            else:
                flag, rel = verdict(cmp), pct(cmp["rel_diff"])
            lines.append(
                f"| {task} | {name} | {num(entry['eval_loss_mean'])} | {rel} | {paired} "
                f"| {num(entry['eval_loss_std'])} | {flag} | {info['lr_text'][name]} | {at_text} |"
            )
    return lines + [
        "",
        ("An LR marked `*` is at the edge of its grid even after the grid grew (the optimum may lie outside); "
        "`w5%` = the tuned warmup. *At linear's best LR and warmup*: the refined schedule run at linear's tuned LR "
        "with linear's tuned warmup kept as a ramp to the table's first value (what a user who only changes `--lr_scheduler_type` gets)."),
        "",
    ]


def _targets(h: dict[str, Any]) -> list[str]:
    def met(flag: bool) -> str:
        return "MET" if flag else "MISSED"

    hard = []
    for task, row in h["hard"]["per_task"].items():
        parts = []
        for name, v in row.items():
            short = "refined" if name == "linear_refined" else "pilot 0.1"
            parts.append(f"{short} n/a" if v is None else
                         f"{short} {pct(v['rel_diff'])} (Δ {v['diff']:+.4f} vs noise {v['noise']:.4f}: "
                         f"{'ok' if v['met'] else 'over'})")
        hard.append(f"{task}: " + ", ".join(parts))
    moon = ", ".join(f"{t}: {'yes' if v else 'no'}" for t, v in h["moonshot_better"]["per_task"].items())
    flip = ", ".join(f"{t}: {'ok' if v else 'over'}" for t, v in h["moonshot_flag_flip"]["per_task"].items())
    return [
        "## Targets on the held-out tasks",
        "",
        f"Held-out tasks: {', '.join(h['tasks']) or 'none in this run'}.",
        "",
        (
            f"1. **Hard: `linear_refined` and `linear_refined_pilot_0.1` mean ≤ tuned-warmup `linear` mean + the "
            f"larger seeds' std on every held-out task: {met(h['hard']['met'])}** — " + "; ".join(hard) + "."
        ),
        (
            f"2. **Moonshot: better than tuned-warmup linear beyond the noise on at least half of the held-out "
            f"network/LLM tasks: {met(h['moonshot_better']['met'])}** — {moon or 'none'}."
        ),
        (
            f"3. **Moonshot: at linear's best LR and warmup, `linear_refined` never worse than linear beyond the "
            f"noise: {met(h['moonshot_flag_flip']['met'])}** — {flip or 'none'}."
        ),
        *_budget_target_lines(h["budget"], first=4),
        "",
    ]


def _budget_target_lines(b: dict[str, Any], first: int = 1) -> list[str]:
    """The budget view's two targets, numbered from `first` (the per-task numbers: `budget.md`)."""
    def task_text(per_task: dict[str, Any], show) -> str:
        return "; ".join(f"{t}: {'no data' if v is None else show(v)}" for t, v in per_task.items()) or "none"

    def beats(v: dict[str, Any]) -> str:
        return (f"{num(v['linear_refined'])} vs {num(v['linear_habit'])} (noise {num(v['noise'])}: "
                f"{'yes' if v['met'] else 'no'})")

    def quarter(v: dict[str, Any]) -> str:
        runs = "never" if v["runs"] is None else f"{v['runs']:.3g} runs"
        return f"{runs} vs at most {v['limit']:g} ({'yes' if v['met'] else 'no'})"

    return [
        (
            f"{first}. **Budget: at B = {b['budget']} runs (pilot counted), `linear_refined` beats `linear_habit` "
            f"beyond the noise on at least half of the held-out LLM/network tasks: "
            f"{b['beats_habit']['status'].upper()}** — " + task_text(b["beats_habit"]["per_task"], beats) + "."
        ),
        (
            f"{first + 1}. **Budget: on at least half of them `linear_refined` reaches linear's full-sweep optimum, "
            f"within the noise, with at most a quarter of linear's runs: {b['quarter_of_linear']['status'].upper()}**"
            " — " + task_text(b["quarter_of_linear"]["per_task"], quarter) + "."
        ),
    ]


def budget_markdown(view: dict[str, Any], details: dict[str, Any]) -> str:
    """`budget.md`: the targets, then per task each schedule's expected best at B = 1, 2, 4 runs and over its whole
    grid, and the runs it needs to reach linear's full-sweep optimum within the noise."""
    mode = "quick (tiny sizes: a smoke test, numbers mean nothing)" if details["quick"] else "full"
    lines = [
        "# Budget view: the eval loss a tuning budget buys",
        "",
        f"Command: `{details['command']}`; mode: {mode}.",
        "",
        (
            "What a user who can afford B full-length runs gets from each schedule: the expected best eval loss (on "
            "the tuning seeds) when B configurations are drawn from the schedule's search space uniformly without "
            "replacement, computed exactly from every configuration the benchmark ran (order statistics over the "
            "grid, `benchmarks/bench_budget.py`). Search spaces: `linear`, `cosine`, `warmup_stable_decay`, "
            f"`schedule_free`: LR × warmup; `linear_habit`: linear at a {100 * HABIT_WARMUP:g} % warmup "
            "(transformers' default), LR tuned; `linear_refined`: the 10 % pilot and the refined run at that same "
            "warmup, LR tuned. Each LR `linear_refined` tries costs its pilot too (`hf-lrschedule pilot` runs one "
            "pilot per command, at the command's LR), so B runs afford floor(B / 1.1) of its configurations: none "
            "at B = 1 (—). *Noise*: the larger seeds' std of `linear`, `linear_habit` and `linear_refined` at their "
            "best configurations. *Runs to reach linear*: the fewest runs (pilot counted) whose expected best is "
            "within the noise of linear's full-sweep optimum (— : not even the whole grid). Curves against runs "
            "and against compute: `budget_<task>.png`."
        ),
        "",
        "## Targets on the held-out LLM/network tasks",
        "",
        f"Tasks: {', '.join(details['targets']['budget']['tasks']) or 'none in this run'}.",
        "",
        *_budget_target_lines(details["targets"]["budget"]),
        "",
        "## Per task",
        "",
        ("| task | family | schedule | " + " | ".join(f"B = {b}" for b in REPORT_BUDGETS)
         + " | whole grid (configurations, runs) | runs to reach linear |"),
        "|---|---|---|" + "---|" * len(REPORT_BUDGETS) + "---|---|",
    ]
    for task, entry in view.items():
        for name, curve in entry["by_configurations"].items():
            size, cost = entry["grid_sizes"][name], entry["cost_runs"][name]
            at = [entry["at_budgets"][str(b)][name] for b in REPORT_BUDGETS]
            reach = entry["runs_to_reach_linear_optimum"][name]
            lines.append(
                f"| {task} | {entry['family']} | {name} | " + " | ".join("—" if v is None else num(v) for v in at)
                + f" | {num(curve[-1])} ({size}, {size * cost:.3g}) | {'—' if reach is None else f'{reach:.3g}'} |"
            )
    lines += ["", "Noise and linear's full-sweep optimum per task:", ""]
    lines += [f"- {task} ({entry['split']}, T = {entry['steps']}, weight decay {entry['weight_decay']:g}): optimum "
              f"{num(entry['linear_optimum'])}, noise {num(entry['noise'])}." for task, entry in view.items()]
    return "\n".join(lines + [""])


def _losers(summary: dict[str, Any]) -> list[str]:
    # Below the tables' precision (0.01 %) a "loss" is a tie: on convex tasks the schedule often *is* linear decay.
    losers = [
        (task, info) for task, info in summary.items() if (info["compare"]["linear_refined"]["rel_diff"] or 0) >= 5e-5
    ]
    lines = ["## Where linear_refined loses to linear", ""]
    if not losers:
        lines.append("Nowhere: linear_refined's mean is at or below linear's (to 0.01 %) on every task.")
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
    return lines + [""]


def _option_study(study: dict[str, Any]) -> list[str]:
    tasks = study["tasks"]
    lines = [
        "## Refinement options (the defaults question; dev tasks only)", "",
        (
            "Each candidate (l2 norms; guard, R, tolerance) is refined from the same complete tuned-warmup linear run "
            "(same seed) and runs at the LR where `linear_refined` is best. Cells: relative difference to linear "
            "(`~` = inside the noise, `+`/`-` = worse/better beyond the noise)."
        ),
        "",
        "| guard | " + " | ".join(tasks) + " | mean | worst | loses beyond noise on |",
        "|---|" + "---|" * len(tasks) + "---|---|---|",
    ]
    for row in study["rows"].values():
        cells = []
        for task in tasks:
            v = row["tasks"].get(task)
            cells.append("n/a" if v is None or v["rel_diff"] is None else f"{pct(v['rel_diff'])} {noise_mark(v)}")
        guard = guard_label(row["guard"], row["max_norm_ratio"], row["tolerance"])
        default = " (library default)" if row["is_library_default"] else ""
        loses = ", ".join(row["loses_beyond_noise"]) or "—"
        lines.append(
            f"| {guard}{default} | " + " | ".join(cells)
            + f" | {pct(row['mean_rel_diff'])} | {pct(row['worst_rel_diff'])} | {loses} |"
        )
    lines.append("")
    if study["recommended"]:
        rec = study["rows"][study["recommended"]]
        lines.append(
            f"**Passes the screen with the best mean** (never loses to linear beyond the noise nor by more than 1 % "
            f"on any dev task): {guard_label(rec['guard'], rec['max_norm_ratio'], rec['tolerance'])} (mean "
            f"{pct(rec['mean_rel_diff'])}, worst {pct(rec['worst_rel_diff'])}). Others that pass, best first: "
            f"{', '.join(study['safe'][1:]) or 'none'}."
        )
    else:
        lines.append("**No candidate** passes the screen (never loses beyond the noise and never > 1 % worse).")
    return lines + [""]


def _pilot_cost(summary: dict[str, Any], timings: dict[str, Any]) -> list[str]:
    lines = ["## Pilot cost and refinement speed", "",
             "| task | " + " | ".join(f"pilot {f:g}" for f in PILOT_FRACTIONS) + " | measured as |",
             "|---|" + "---|" * len(PILOT_FRACTIONS) + "---|"]
    for task, info in summary.items():
        share = info["pilot_cost"]["share"]
        lines.append(f"| {task} | " + " | ".join(pct(share[f"{f:g}"]).lstrip("+") for f in PILOT_FRACTIONS)
                     + f" | {info['pilot_cost']['how']} |")
    speed = ", ".join(f"10^{int(math.log10(int(n)))}: {1000 * v['median_s']:.1f} ms" for n, v in timings.items())
    return lines + ["", "Time to refine n gradient norms for an n-step run (`refine_schedule`, library defaults, "
                    "median of repeats): " + speed + ".", ""]


def _per_data_set(task: str, info: dict[str, Any]) -> list[str]:
    others = [s for s in MAIN_SCHEDULES if s != "linear" and s in info["schedules"]]
    lines = [f"## {task}: per data set", "",
             "| data set | n × d, classes | " + " | ".join(others) + " |",
             "|---|---|" + "---|" * len(others)]
    for problem, p in info["problems"].items():
        cells = [f"{pct(p['compare'][name]['rel_diff'])} {noise_mark(p['compare'][name])}" for name in others]
        lines.append(f"| {problem} (linear {num(p['linear_mean'])}) | {p['shape']} | " + " | ".join(cells) + " |")
    lines += ["", "Option study per data set (relative difference to linear):", ""]
    opts = [o for o in info["problems"][next(iter(info["problems"]))]["compare"] if o.startswith("refined_")]
    lines += ["| data set | " + " | ".join(opts) + " |", "|---|" + "---|" * len(opts)]
    for problem, p in info["problems"].items():
        marks = [f"{pct(p['compare'][o]['rel_diff'])} {noise_mark(p['compare'][o])}" for o in opts]
        lines.append(f"| {problem} | " + " | ".join(marks) + " |")
    return lines + [""]


def _files(pngs: list[str]) -> list[str]:
    return [
        "## Files", "",
        (
            "- `benchmark.json`: task → schedule → `eval_loss_mean`, `eval_loss_std` (sample std over seeds), "
            "`seeds` (list of `{seed, eval_loss}`)."
        ),
        (
            "- `benchmark_details.json`: configuration, best LRs and grid scores, option study, targets, pilot "
            "cost, timings."
        ),
        "- `budget.json`, `budget.md`, `budget_<task>.png`: the budget view (the eval loss B runs buy).",
        "- PNGs: " + ", ".join(f"`{p}`" for p in pngs) + ".",
        "",
    ]
