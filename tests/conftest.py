import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
SCRIPTS = TESTS.parent / "scripts"
SHARED_LOGS = TESTS.parent.parent / "shared" / "data" / "gradnorm-logs"

# tiny.py and refine_reference.py (tests/), recipe_data.py (scripts/; not in the wheel), for the tests and the
# scripts they launch
sys.path[:0] = [str(TESTS), str(SCRIPTS)]
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def shared_logs():
    if not SHARED_LOGS.is_dir():
        pytest.skip(f"shared gradient-norm logs not found at {SHARED_LOGS}")
    return SHARED_LOGS


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), str(SCRIPTS), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env
