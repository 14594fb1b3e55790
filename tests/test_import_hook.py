"""The start-up hook never breaks `import transformers`: a failing registration degrades to one warning.

Each case runs a fresh interpreter whose `PYTHONPATH` puts a copy of the installed package with one module broken in
front of site-packages; the installed `.pth` hook (the code under test) then imports the broken copy.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

USE_TRANSFORMERS = """
import warnings
warnings.simplefilter("default")
import torch
from transformers import Trainer, TrainingArguments, get_scheduler
from transformers.trainer_utils import SchedulerType
assert "linear_refined" not in [m.value for m in SchedulerType], "registered although the glue is broken"
optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
scheduler = get_scheduler("linear", optimizer, num_warmup_steps=0, num_training_steps=4)
optimizer.step(); scheduler.step()
assert scheduler.get_last_lr() == [0.75]
try:
    TrainingArguments(output_dir="unused", lr_scheduler_type="linear_refined")
except ValueError as error:
    print("rejected:", str(error)[:60])
print("TRANSFORMERS OK")
"""

BREAKS = {
    # the glue module raises while it is imported (a bug, a missing dependency, a renamed transformers name)
    "glue_import": ("integrations/transformers.py", "\nraise RuntimeError('simulated broken glue module')\n"),
    # the package itself cannot import (a module that `hf_lrschedule/__init__` imports raises)
    "package_import": ("options.py", "\nraise RuntimeError('simulated broken package')\n"),
    # the enum extension raises (a Python whose enum internals changed)
    "enum_extension": (
        "_enums.py",
        "\ndef extend_str_enum(cls, name, value):\n    raise AttributeError('simulated enum internals change')\n",
    ),
}


def broken_copy(tmp_path: Path, case: str) -> Path:
    installed = Path(importlib.util.find_spec("hf_lrschedule").submodule_search_locations[0])
    site = tmp_path / "site"
    shutil.copytree(installed, site / "hf_lrschedule", ignore=shutil.ignore_patterns("__pycache__"))
    relative, code = BREAKS[case]
    with open(site / "hf_lrschedule" / relative, "a", encoding="utf-8") as handle:
        handle.write(code)
    return site


def run(code: str, site: Path, **env: str) -> subprocess.CompletedProcess:
    """`python -c code` outside the checkout (whose `hf_lrschedule/` would come first on sys.path)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HF_LRSCHEDULE_")}
    environ.update(PYTHONPATH=str(site), **env)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=environ, cwd=site.parent,
        check=False,
    )


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_broken_registration_leaves_transformers_working(tmp_path, case):
    result = run(USE_TRANSFORMERS, broken_copy(tmp_path, case))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TRANSFORMERS OK" in result.stdout
    assert "rejected: " in result.stdout  # the unregistered name is transformers' own clear error
    warnings = [line for line in result.stderr.splitlines() if "RegistrationWarning" in line]
    assert len(warnings) == 1, result.stderr[-3000:]
    message = warnings[0]
    assert "simulated" in message and f"Python {sys.version.split()[0]}" in message
    assert "HF_LRSCHEDULE_AUTOREGISTER=0" in message and "transformers 5." in message


@pytest.mark.parametrize(
    "phase,case,text",
    [
        ("pilot", "glue_import", "simulated broken glue module"),
        ("full", "glue_import", "simulated broken glue module"),
        ("pilot", "package_import", "simulated broken package"),
    ],
)
def test_broken_registration_fails_both_phases_of_a_pilot(tmp_path, phase, case, text):
    """Under a pilot the failure is an error: no full budget run as a pilot, no full run without its schedule; the
    phase is read even when the package cannot import (the hook loads the protocol file by its path)."""
    pilot_dir = tmp_path / "pilot"
    pilot_dir.mkdir()
    result = run(
        "import transformers.trainer_utils",
        broken_copy(tmp_path, case),
        HF_LRSCHEDULE_PHASE=phase,
        HF_LRSCHEDULE_PILOT_DIR=str(pilot_dir),
    )
    assert result.returncode != 0
    assert text in result.stderr
    message = json.loads((pilot_dir / "pilot_error.json").read_text())["message"]
    assert text in message and "HF_LRSCHEDULE_AUTOREGISTER=0" in message


def test_intact_install_registers_without_warning(tmp_path):
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "from transformers.trainer_utils import SchedulerType\n"
        "print(SchedulerType('linear_refined').name)"
    )
    result = run(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "LINEAR_REFINED"
