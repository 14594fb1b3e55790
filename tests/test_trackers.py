"""The schedule report in the real trackers: one tiny Trainer run logs to W&B (offline), MLflow (a local SQLite store)
and trackio (its local store) at once; each test reads back what its tracker stored through the tracker's own API."""

import hashlib
import json
from pathlib import Path

import pytest
from tiny import tiny_trainer
from tracker_runs import flat, png_size, skip_without_trackers, trackio_store, use_local_trackers, wandb_records

from hf_lrschedule import GradNormRecorderCallback, refinement_details

pytestmark = skip_without_trackers("wandb", "mlflow", "trackio")

NORMS = [5.0, 3.0, 2.0, 1.5, 1.2, 1.1, 1.0, 1.0, 1.1, 1.3] * 3
STEPS = 6
LR = 5e-5
PROJECT = "hf-lrschedule-report"
HEALTH = "hf_lrschedule/health/"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The finished Trainer and the folder its trackers wrote to."""
    folder = tmp_path_factory.mktemp("trackers")
    store = trackio_store(tmp_path_factory.getbasetemp())
    with pytest.MonkeyPatch.context() as patch:
        use_local_trackers(patch, folder, experiment="report")
        trainer = tiny_trainer(
            folder / "out", max_steps=STEPS, logging_steps=1, learning_rate=LR,
            report_to=["wandb", "mlflow", "trackio"], project=PROJECT, run_name="refined",
            lr_scheduler_type="linear_refined", lr_scheduler_kwargs={"grad_norms": NORMS, "smoothing": 0.05},
        )
        GradNormRecorderCallback().attach(trainer)
        trainer.train()
        import wandb

        wandb.finish()  # WandbCallback leaves the run open; finishing it completes the offline log
    return trainer, folder, store


def trainer_series(trainer, key):
    return {e["step"]: e[key] for e in trainer.state.log_history if key in e}


def health_series(trainer):
    """The health scalars of each training log, as the Trainer's own log_history has them: {name: {step: value}}."""
    names = {k for e in trainer.state.log_history for k in e if k.startswith(HEALTH)}
    counts = [f"{HEALTH}{name}" for name in ("loss_spikes", "non_finite_norms", "norm_explosions")]
    assert set(counts) <= names
    # a healthy run: every norm finite, no spike, no explosion
    assert all(value == 0 for name in counts for value in trainer_series(trainer, name).values())
    return {name: trainer_series(trainer, name) for name in names}


def check_summary(report, trainer, as_text=False):
    """The `hf_lrschedule/...` summary against what the run itself shows (its LRs) and a direct refinement."""
    table = refinement_details(NORMS, STEPS, smoothing=0.05).multipliers.tolist()  # steps 0..T
    multipliers = [trainer_series(trainer, "learning_rate")[s] / LR for s in range(1, STEPS + 1)]  # steps 0..5
    assert multipliers == pytest.approx(table[:STEPS], rel=1e-6)
    peak = max(range(STEPS), key=multipliers.__getitem__)
    expected = {
        "hf_lrschedule/source": f"{len(NORMS)} gradient norms given in lr_scheduler_kwargs",
        "hf_lrschedule/steps": STEPS,
        "hf_lrschedule/warmup_steps": 0,
        "hf_lrschedule/peak_step": peak,
        "hf_lrschedule/peak_fraction": round(peak / STEPS, 6),
        "hf_lrschedule/table_sha256": hashlib.sha256(json.dumps(table).encode()).hexdigest(),
        "hf_lrschedule/smoothing": 0.05,
        "hf_lrschedule/guard": "floor",
        "hf_lrschedule/norm": "l2",
    }
    if as_text:  # MLflow keeps parameters as strings
        expected = {key: str(value) for key, value in expected.items()}
    assert {key: report.get(key) for key in expected} == expected
    assert "mean LR multiplier" in report["hf_lrschedule/description"]


def test_wandb_offline_run_holds_the_summary_the_picture_and_the_norms(run):
    trainer, folder, _ = run
    (run_dir,) = (folder / "wandb").glob("offline-run-*")
    records = wandb_records(run_dir)
    config = {}
    for record in records:
        if record["type"] == "config":
            config.update(record["config"]["update"])
    check_summary(config, trainer)
    history = [flat(record["history"]["item"]) for record in records if record["type"] == "history"]
    (image,) = [item for item in history if "hf_lrschedule/schedule._type" in item]
    assert image["hf_lrschedule/schedule._type"] == "image-file"
    assert image["hf_lrschedule/schedule.caption"] == config["hf_lrschedule/description"]
    assert png_size(run_dir / "files" / image["hf_lrschedule/schedule.path"]) == (600, 350)
    logged = {item["train/global_step"]: item["train/grad_norm"] for item in history if "train/grad_norm" in item}
    assert logged == trainer_series(trainer, "grad_norm") and len(logged) == STEPS
    health = {
        name: {item["train/global_step"]: item[f"train/{name}"] for item in history if f"train/{name}" in item}
        for name in health_series(trainer)
    }
    assert health == health_series(trainer)


def test_mlflow_local_run_holds_the_summary_the_picture_and_the_norms(run, tmp_path):
    from mlflow.tracking import MlflowClient

    trainer, folder, _ = run
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("report").experiment_id])
    check_summary(mlflow_run.data.params, trainer, as_text=True)
    run_id = mlflow_run.info.run_id
    assert [a.path for a in client.list_artifacts(run_id, "hf_lrschedule")] == ["hf_lrschedule/schedule.png"]
    picture = client.download_artifacts(run_id, "hf_lrschedule/schedule.png", str(tmp_path))
    assert png_size(Path(picture)) == (600, 350)
    logged = {m.step: m.value for m in client.get_metric_history(run_id, "grad_norm")}
    assert logged == trainer_series(trainer, "grad_norm") and len(logged) == STEPS
    health = {name: {m.step: m.value for m in client.get_metric_history(run_id, name)} for name in health_series(trainer)}
    assert health == health_series(trainer)


def test_trackio_local_run_holds_the_summary_the_picture_and_the_norms(run):
    import trackio
    from trackio.sqlite_storage import SQLiteStorage

    trainer, _, store = run
    (trackio_run,) = trackio.Api().runs(PROJECT)
    assert trackio_run.name == "refined"
    config = trackio_run.config
    check_summary(config, trainer)
    logs = SQLiteStorage.get_logs(PROJECT, "refined")
    (image,) = [entry["hf_lrschedule/schedule"] for entry in logs if "hf_lrschedule/schedule" in entry]
    assert image["_type"] == "trackio.image" and image["caption"] == config["hf_lrschedule/description"]
    assert png_size(store / "media" / image["file_path"]) == (600, 350)
    logged = {entry["train/global_step"]: entry["train/grad_norm"] for entry in logs if "train/grad_norm" in entry}
    assert logged == trainer_series(trainer, "grad_norm") and len(logged) == STEPS
    health = {
        name: {entry["train/global_step"]: entry[f"train/{name}"] for entry in logs if f"train/{name}" in entry}
        for name in health_series(trainer)
    }
    assert health == health_series(trainer)
