import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
SHARED_LOGS = TESTS.parent.parent / "shared" / "data" / "gradnorm-logs"

sys.path.insert(0, str(TESTS))  # tiny.py, for tests and the scripts they launch
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
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env
