"""One budget view from several benchmark invocations: the tasks of each ``budget.json``, the targets recomputed.

    python benchmarks/merge_budget.py results/ /tmp/bench_heldout /tmp/bench_long

A full benchmark takes hours; its tasks are often run in groups (``--tasks ... --out DIR``). This writes
``budget.json``, ``budget.md`` and the ``budget_<task>.png`` of every task into the first directory, from the
``budget.json`` (and ``benchmark_details.json``, for the commands) of the others, in the order given (a task in two
of them: the later one wins). The budget targets are judged again over the merged tasks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

from bench_budget import budget_targets
from bench_markdown import budget_markdown
from bench_runner import write_json

from hf_lrschedule.formats import atomic_write_text


def read_run(folder: Path) -> tuple[dict[str, Any], str, bool]:
    """(budget view, command, quick) of one benchmark output folder."""
    budget_file = folder / "budget.json"
    if not budget_file.is_file():
        raise SystemExit(f"{budget_file} does not exist: pass folders a benchmark invocation wrote (--out)")
    details_file = folder / "benchmark_details.json"
    details = json.loads(details_file.read_text()) if details_file.is_file() else {}
    return json.loads(budget_file.read_text()), details.get("command", f"(unknown command, {folder})"), bool(
        details.get("quick", False)
    )


def merge(folders: list[Path], merged_by: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """(merged view, the details `budget_markdown` reads); `merged_by` is this script's command line, for the
    report."""
    view: dict[str, Any] = {}
    commands, modes = [], set()
    for folder in folders:
        part, command, quick = read_run(folder)
        view.update(part)
        commands.append(command)
        modes.add(quick)
    if len(modes) > 1:
        raise SystemExit("cannot merge a --quick run with a full run: their numbers mean different things")
    if merged_by:
        commands.append(f"merged by {merged_by}")
    details = {"command": "`; `".join(commands), "quick": modes.pop(), "targets": {"budget": budget_targets(view)}}
    return view, details


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="where budget.json, budget.md and the PNGs go")
    parser.add_argument("folders", type=Path, nargs="+", help="benchmark output folders (--out of each invocation)")
    args = parser.parse_args(argv)
    command = " ".join(["python benchmarks/merge_budget.py", *(sys.argv[1:] if argv is None else argv)])
    view, details = merge(args.folders, command)
    args.out.mkdir(parents=True, exist_ok=True)
    for folder in args.folders:
        for task in view:
            png = folder / f"budget_{task}.png"
            target = args.out / png.name
            if png.is_file() and png.resolve() != target.resolve():
                partial = target.with_name(f".{png.name}.partial")  # no half-copied PNG under the final name
                shutil.copyfile(png, partial)
                os.replace(partial, target)
    write_json(args.out / "budget.json", view)
    atomic_write_text(args.out / "budget.md", budget_markdown(view, details))
    targets = details["targets"]["budget"]
    print(f"[budget] {len(view)} tasks -> {args.out}; held-out LLM/network tasks: {', '.join(targets['tasks'])}; "
          f"beats habit: {targets['beats_habit']['status']}, quarter of linear: {targets['quarter_of_linear']['status']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
