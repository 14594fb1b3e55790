"""The enum extension behind `linear_refined` on every installed interpreter that `requires-python` admits.

The check script is stdlib only, so it runs under bare interpreters (pyenv's 3.10-3.13 here) in well under a second
each; the full stack (transformers, Trainer, resume) per interpreter is `scripts/check_compat.py`.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / "tests" / "scripts" / "enum_extension_check.py"
MODULE = ROOT / "hf_lrschedule" / "_enums.py"


def _admitted_interpreters() -> list[str]:
    """This interpreter plus each pyenv one (if any) whose minor version `requires-python` admits."""
    minimum = re.search(r'requires-python\s*=\s*">=3\.(\d+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = {f"{sys.version_info.major}.{sys.version_info.minor}": sys.executable}
    for python in sorted(glob.glob(os.path.join(root, "versions", "3.*", "bin", "python3"))):
        minor = int(Path(python).parent.parent.name.split(".")[1])
        if minor >= int(minimum):
            found.setdefault(f"3.{minor}", python)
    return sorted(found.values())


@pytest.mark.parametrize("python", _admitted_interpreters())
def test_extend_str_enum(python):
    result = subprocess.run([python, str(CHECK), str(MODULE)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok")
