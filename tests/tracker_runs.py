"""Local stores of the real trackers (wandb offline, MLflow on SQLite, trackio local) for the tracker tests."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest


def skip_without_trackers(*names: str) -> pytest.MarkDecorator:
    """Skip a module when a tracker is not installed (found without importing it: trackio must be imported after
    `trackio_store` has chosen its folder)."""
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    return pytest.mark.skipif(
        bool(missing), reason=f"needs {', '.join(missing)}: pip install '.[trackers]' (in .[test])"
    )


def trackio_store(base: Path) -> Path:
    """The folder trackio logs to in this process: `base`/trackio if trackio is imported first here.

    trackio reads ``TRACKIO_DIR`` once, when it is imported, so the folder is fixed for the whole test session; the
    tests use a project of their own in it.
    """
    if "trackio" not in sys.modules:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("TRACKIO_DIR", str(base / "trackio"))
            import trackio  # noqa: F401
    from trackio import utils

    return Path(utils.TRACKIO_DIR)


def use_local_trackers(patch: pytest.MonkeyPatch, folder: Path, experiment: str) -> None:
    """Point wandb (offline), MLflow (SQLite) and its artifacts (``./mlruns``) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    patch.chdir(folder)  # MLflow puts the artifacts of a SQLite store's runs in ./mlruns
    patch.delenv("WANDB_DISABLED", raising=False)  # conftest sets it for the other tests
    patch.setenv("WANDB_MODE", "offline")
    patch.setenv("WANDB_DIR", str(folder))
    patch.setenv("WANDB_SILENT", "true")
    patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    patch.setenv("MLFLOW_EXPERIMENT_NAME", experiment)


def wandb_records(run_dir: Path) -> list[dict]:
    """The records of an offline W&B run's ``.wandb`` transaction log, as wandb's own reader prints them.

    ``wandb leet inspect --json`` is wandb's command for browsing a local run's log (wandb has no Python reader of
    it since its core moved to Go); each line is one record: ``config``, ``history``, ``summary``, ``files``, ...
    """
    result = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def flat(item: dict, prefix: str = "") -> dict:
    """A nested record item with dotted keys, as wandb shows it (``hf_lrschedule/schedule.path``)."""
    out = {}
    for key, value in item.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file, checked with Pillow (which verifies the file's structure)."""
    from PIL import Image

    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size
