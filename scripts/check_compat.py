"""Compatibility matrix of hf_lrschedule over Python interpreters x transformers versions.

For each cell (interpreter, transformers version) it builds a venv, installs torch, that transformers and the
package from a source tree (the repo by default, so the start-up hook `hf_lrschedule.pth` is installed the way
users get it), and runs five checks in the venv, each in its own process:

  registration  `from transformers import Trainer, TrainingArguments; TrainingArguments(...,
                lr_scheduler_type="linear_refined")` in a process that never imports hf_lrschedule itself
  stock script  tests/scripts/stock_train.py (HfArgumentParser + Trainer, no hf_lrschedule import) with
                `--lr_scheduler_type linear_refined`: its logged LRs are the refined schedule, and its
                `training_args.bin` unpickles in a fresh process
  10-step run   Trainer on a tiny Llama for 10 steps: every logged LR is base LR x the refined multiplier
  resume        a run saving checkpoint-5, then (norms file deleted) a resume from it: steps 6..10 log the
                bit-identical LRs of the uninterrupted run
  broken glue   with the package's transformers glue raising at import, `from transformers import Trainer` still
                works and the start-up hook warns once

Results go to results/compat.json and results/compat.md (rewritten atomically after every cell).

The default matrix is cheap: every interpreter x the newest transformers, plus 3.11 x every transformers version;
an interpreter that the newest transformers' `requires-python` excludes also gets the newest release it accepts.
`--full` runs the cross product. Cells whose transformers release excludes the interpreter by `requires-python`
are listed as "excluded by metadata" and not built.

Torch: `torch==2.13.0` on 3.11 comes from the local CPU wheel (/opt/wheels, via pip's find-links); on other
interpreters PyPI has only the CUDA build of Linux torch (+cu130) with its nvidia-* dependencies: ~1.4 GB to
download (torch, cudnn, nccl, triton; the other nvidia wheels are on the local mirror), 4.7 GB installed, 4-6
minutes. A CUDA wheel installed with --no-deps does not import (ImportError: libcudnn.so.9), and pip's HTTP cache
kept none of these downloads here, so torch goes once per interpreter into a shared venv under --venv-dir that every
cell venv of that interpreter sees through a .pth line, and that later runs reuse (--no-share-torch: one torch per
cell). `--torch-index-url https://download.pytorch.org/whl/cpu` gets the small CPU build where that index is
reachable.

Examples:
    python scripts/check_compat.py                       # default matrix (8 cells, 1 excluded), fresh venvs
    python scripts/check_compat.py --reuse               # keep built venvs, reinstall only the package
    python scripts/check_compat.py --full --reuse
    python scripts/check_compat.py --pythons 3.10 --transformers 5.0.0,latest
    python scripts/check_compat.py --git-ref HEAD        # test a committed tree instead of the working tree

Stdlib only; runs under any Python >= 3.8. Never installs into the interpreter that runs it. The checks are in
compat_checks.py (run inside a cell's venv), the matrix, the venvs and the check runs in compat_matrix.py, the
reports in compat_report.py.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from compat_matrix import (
    EXCLUDED,
    REPO,
    build_matrix,
    discover_pythons,
    fetch_release_index,
    log,
    prepare_source,
    python_allowed,
    resolve_transformers,
    run_checks,
    setup_cell,
)
from compat_report import render_markdown, write_reports

DEFAULT_VENV_DIR = Path(tempfile.gettempdir()) / "hf_lrschedule_compat"
DEFAULT_TRANSFORMERS = "5.0.0,5.6.*,5.16.1,latest"
DEFAULT_TORCH = "2.13.0"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--pythons", help="comma-separated interpreter versions (3.11 or 3.11.7) or paths "
                        "(default: every CPython >= 3.10 under `pyenv root`/versions)")
    parser.add_argument("--transformers", default=DEFAULT_TRANSFORMERS,
                        help=f"comma-separated versions; 'latest' and '5.6.*' resolve on the index (default: {DEFAULT_TRANSFORMERS})")
    parser.add_argument("--full", action="store_true", help="every interpreter x every transformers version")
    parser.add_argument("--torch", default=DEFAULT_TORCH, help=f"torch version to install (default: {DEFAULT_TORCH})")
    parser.add_argument("--torch-index-url", help="index for torch only (e.g. https://download.pytorch.org/whl/cpu)")
    parser.add_argument("--no-share-torch", dest="share_torch", action="store_false",
                        help="install torch into every cell venv instead of one shared torch venv per interpreter")
    parser.add_argument("--index-url", default="https://pypi.org/simple", help="PEP 691 index for release metadata")
    parser.add_argument("--venv-dir", default=str(DEFAULT_VENV_DIR), help=f"venvs, logs, work dirs (default: {DEFAULT_VENV_DIR})")
    parser.add_argument("--reuse", action="store_true",
                        help="keep a venv built for the same (python, transformers, torch); only reinstall the package "
                        "(pip install --no-deps --force-reinstall SOURCE)")
    parser.add_argument("--source", default=str(REPO), help=f"package source tree to install (default: {REPO})")
    parser.add_argument("--git-ref", help="install this commit (git archive of the repo) instead of --source")
    parser.add_argument("--output-json", default=str(REPO / "results" / "compat.json"))
    parser.add_argument("--output-md", default=str(REPO / "results" / "compat.md"))
    parser.add_argument("--pip-timeout", type=int, default=3600, help="seconds per pip command")
    parser.add_argument("--check-timeout", type=int, default=1200, help="seconds per check")
    parser.add_argument("--dry-run", action="store_true", help="print the matrix and exit")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    started = time.monotonic()
    venv_dir = Path(args.venv_dir).resolve()
    args.venv_dir = str(venv_dir)
    venv_dir.mkdir(parents=True, exist_ok=True)
    os.environ.pop("PIP_REQUIRE_VIRTUALENV", None)

    pythons = discover_pythons([p.strip() for p in args.pythons.split(",")] if args.pythons else None)
    specs = [s.strip() for s in args.transformers.split(",") if s.strip()]
    try:
        releases = fetch_release_index(args.index_url)
    except Exception as error:  # noqa: BLE001 - offline: exact versions only, pip decides on requires-python
        log(f"could not read {args.index_url} ({error}); requires-python is left to pip")
        releases = {}
    versions = resolve_transformers(specs, releases)
    cells = build_matrix(pythons, versions, releases, args.full)
    log(f"{len(cells)} cells: " + ", ".join(f"{c[0]} x {c[2]}" for c in cells))
    if args.dry_run:
        return 0
    source, source_info = prepare_source(args)

    report = {
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python scripts/check_compat.py", *(argv if argv is not None else sys.argv[1:])]),
        "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "source": source_info,
        "torch_requested": args.torch + (f" from {args.torch_index_url}" if args.torch_index_url else ""),
        "transformers_requires_python": {v: releases.get(v) for v in versions},
        "cells": [],
        "total_s": 0.0,
    }
    for py, _, tf, why in cells:
        report["cells"].append({"python": py, "transformers": tf, "why": why, "requires_python": releases.get(tf)})

    logs = venv_dir / "logs"
    logs.mkdir(exist_ok=True)
    for index, cell in enumerate(cells):
        py, _, tf, _ = cell
        entry = report["cells"][index]
        log(f"cell {index + 1}/{len(cells)}: Python {py} x transformers {tf}")
        cell_start = time.monotonic()
        requires = releases.get(tf)
        if releases and not python_allowed(requires, py):
            entry.update(status=EXCLUDED, excluded_reason=f"{EXCLUDED}: transformers {tf} requires Python {requires}", wall_s=0.0)
            log(f"    {entry['excluded_reason']}")
        else:
            log_file = logs / f"py{py}-tf{tf}.log"
            log_file.write_text("")
            venv, info = setup_cell(cell, source, args, log_file)
            entry.update(venv=info["venv"], reused=info.get("reused"), setup_s=info.get("timings", {}), log=str(log_file))
            if info.get("excluded"):
                entry.update(status=EXCLUDED, excluded_reason=info["excluded"])
            elif info.get("error"):
                entry.update(status="setup failed", setup_error=info["error"])
                log(f"    setup failed: {info['error']}")
            else:
                log(f"    venv ready ({'reused' if info.get('reused') else 'built'}; {info.get('timings')})")
                checks = run_checks(venv, source, venv_dir / "work" / f"py{py}-tf{tf}", args, log_file)
                entry["checks"] = checks
                versions_seen = next((c["versions"] for c in checks.values() if isinstance(c.get("versions"), dict)), {})
                entry["torch"] = versions_seen.get("torch")
                entry["installed"] = versions_seen
                entry["status"] = "pass" if all(c["ok"] for c in checks.values()) else "fail"
            entry["wall_s"] = round(time.monotonic() - cell_start, 1)
        report["total_s"] = round(time.monotonic() - started, 1)
        write_reports(report, args.output_json, args.output_md)
    report["total_s"] = round(time.monotonic() - started, 1)
    write_reports(report, args.output_json, args.output_md)
    print(render_markdown(report))
    return 0 if all(c.get("status") in ("pass", EXCLUDED) for c in report["cells"]) else 1


if __name__ == "__main__":
    sys.exit(main())
