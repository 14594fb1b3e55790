"""The compatibility matrix's reports: results/compat.json (every fact) and results/compat.md (the tables)."""

from __future__ import annotations

import json

from compat_checks import CHECKS, HEADERS
from compat_matrix import EXCLUDED, atomic_write


def _md_escape(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(report):
    lines = [
        "# hf_lrschedule compatibility matrix",
        "",
        f"Generated {report['generated']} by `{report['command']}` (total {report['total_s']:.0f} s).",
        f"Source: `{report['source']['path']}` at {str(report['source'].get('commit'))[:12]}"
        + (" + working-tree changes" if report["source"].get("uncommitted_package_changes") else "")
        + f"; torch requested: {report['torch_requested']}.",
        "",
        "| python | transformers | torch | " + " | ".join(HEADERS[n] for n in CHECKS) + " | error | wall s |",
        "|---|---|---|" + "---|" * len(CHECKS) + "---|---|",
    ]
    for cell in report["cells"]:
        if cell.get("status") == EXCLUDED:
            marks = [EXCLUDED] + ["—"] * (len(CHECKS) - 1)  # the reason goes to the error column
        elif "checks" not in cell:
            marks = ["not run"] * len(CHECKS)
        else:
            marks = ["pass" if cell["checks"][n]["ok"] else "**FAIL**" for n in CHECKS]
        lines.append("| " + " | ".join(_md_escape(x) for x in [
            cell["python"], cell["transformers"], cell.get("torch") or "—", *marks,
            cell.get("error_summary") or "", f"{cell.get('wall_s', 0):.0f}",
        ]) + " |")
    lines += [
        "",
        "Why each cell: " + "; ".join(f"{c['python']} x {c['transformers']}: {c['why']}" for c in report["cells"]) + ".",
        "",
        "## Wall time per cell (seconds)",
        "",
        (
            "Setup: venv + pip (torch is installed once per interpreter into a shared venv that cell venvs see through "
            "a .pth line, unless `--no-share-torch`; `shared_torch_build` is that one-off install). Checks: each runs "
            "in a fresh process (torch + transformers import included)."
        ),
        "",
        "| python | transformers | setup | " + " | ".join(HEADERS[n] for n in CHECKS) + " | cell total |",
        "|---|---|---|" + "---|" * len(CHECKS) + "---|",
    ]
    for cell in report["cells"]:
        setup = ", ".join(f"{k} {v:.0f}" for k, v in (cell.get("setup_s") or {}).items()) or "—"
        checks = [f"{cell['checks'][n]['wall_s']:.0f}" if n in cell.get("checks", {}) else "—" for n in CHECKS]
        lines.append("| " + " | ".join(_md_escape(x) for x in [cell["python"], cell["transformers"], setup, *checks,
                                                                     f"{cell.get('wall_s', 0):.0f}"]) + " |")
    lines += ["", f"Total: {report['total_s']:.0f} s.", ""]
    return "\n".join(lines)


def error_summary(cell):
    if cell.get("status") == EXCLUDED:
        return cell.get("excluded_reason", "")
    if cell.get("setup_error"):
        return cell["setup_error"]
    parts = []
    for name in CHECKS:
        check = cell.get("checks", {}).get(name)
        if check and not check["ok"]:
            parts.append(f"{HEADERS[name]}: {check['error'][:400]}")
    return "; ".join(parts)


def write_reports(report, json_path, md_path):
    for cell in report["cells"]:
        cell["error_summary"] = error_summary(cell)
    atomic_write(json_path, json.dumps(report, indent=2) + "\n")
    atomic_write(md_path, render_markdown(report))
