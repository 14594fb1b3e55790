"""MLflow and trackio runs as gradient-norm sources: read through the trackers' own APIs from real local stores."""

import json
import os
import sys

import pytest
import torch
from tiny import tiny_trainer
from tracker_runs import skip_without_trackers, trackio_store, use_local_trackers

from hf_lrschedule import (
    GradNormRecorderCallback,
    GradNormSourceError,
    RefinementWarning,
    get_linear_refined_schedule,
    load_grad_norms,
)
from hf_lrschedule.cli import main

pytestmark = skip_without_trackers("mlflow", "trackio")

PROJECT = "hf-lrschedule-sources"
STEPS = 8


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One Trainer run logging every step to MLflow (SQLite store) and trackio, with the recorder attached."""
    folder = tmp_path_factory.mktemp("sources")
    trackio_store(tmp_path_factory.getbasetemp())
    with pytest.MonkeyPatch.context() as patch:
        use_local_trackers(patch, folder, experiment="sources")
        trainer = tiny_trainer(
            folder / "out", max_steps=STEPS, logging_steps=1, report_to=["mlflow", "trackio"], project=PROJECT,
            run_name="norms", lr_scheduler_type="linear",
        )
        GradNormRecorderCallback().attach(trainer)
        trainer.train()
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("sources").experiment_id])
    return {"trainer": trainer, "folder": folder, "uri": uri, "run_id": mlflow_run.info.run_id}


def logged(trainer, key):
    return [(e["step"], e[key]) for e in trainer.state.log_history if key in e and "train_runtime" not in e]


def refine(source, out, *extra):
    assert main(["refine", source, "-o", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_refine_from_an_mlflow_run_and_a_trackio_run_gives_the_recorder_files_schedule(run, tmp_path, monkeypatch,
                                                                                       capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", run["uri"])
    recorder = refine(str(run["folder"] / "out"), tmp_path / "recorder.json", "--steps", "20")
    from_mlflow = refine(f"mlflow:{run['run_id']}", tmp_path / "mlflow.json", "--steps", "20")
    from_trackio = refine(f"trackio:{PROJECT}/norms", tmp_path / "trackio.json", "--steps", "20")
    assert len(recorder["multipliers"]) == 21
    assert from_mlflow["multipliers"] == recorder["multipliers"] == from_trackio["multipliers"]
    assert from_mlflow["source"] == f"mlflow:{run['run_id']}" and from_trackio["source"] == f"trackio:{PROJECT}/norms"
    printed = capsys.readouterr().out
    assert f"source: mlflow:{run['run_id']} (MLflow run): {STEPS} gradient norms, steps 1-{STEPS}" in printed
    assert f"source: trackio:{PROJECT}/norms (trackio run): {STEPS} gradient norms, steps 1-{STEPS}" in printed
    # without --steps, the run's own length (its max_steps parameter)
    assert len(refine(f"mlflow://{run['run_id']}", tmp_path / "own.json")["multipliers"]) == STEPS + 1


@pytest.mark.parametrize("tracker", ["mlflow", "trackio"])
def test_the_norms_loss_and_learning_rates_are_the_trainers(run, tracker):
    source = f"mlflow:{run['run_id']}@{run['uri']}" if tracker == "mlflow" else f"trackio:{PROJECT}/norms"
    log = load_grad_norms(source)
    trainer = run["trainer"]
    assert list(zip(log.steps.tolist(), log.l2.tolist())) == logged(trainer, "grad_norm")
    assert log.positions() is None and log.meta["num_training_steps"] == STEPS and log.meta["logging_steps"] == 1
    for name in ("loss", "learning_rate"):
        series = log.metrics[name]
        assert list(zip(series.steps.tolist(), series.values.tolist())) == logged(trainer, name)
    assert "eval_loss" not in log.metrics  # the run did not evaluate


def test_lr_scheduler_kwargs_take_tracker_runs(run):
    def multipliers(grad_norms):
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)  # the recorded run's family
        scheduler = get_linear_refined_schedule(optimizer, 2, 12, grad_norms=grad_norms)
        return [scheduler.lr_lambdas[0](step) for step in range(13)]

    expected = multipliers(str(run["folder"] / "out" / "grad_norms.json"))
    assert multipliers(f"mlflow:{run['run_id']}@{run['uri']}") == expected
    assert multipliers(f"trackio:{PROJECT}/norms") == expected
    assert expected[0] == 0.0 and expected[2] == pytest.approx(max(expected))  # the warmup, then the refined part


def mlflow_file_store_run(root, values, every, monkeypatch):
    """A run written with MlflowClient into a file store (``mlruns/``), logging grad_norm every `every` steps."""
    from mlflow.tracking import MlflowClient

    with monkeypatch.context() as patch:
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 writes a file store only when told to
        client = MlflowClient(tracking_uri=root.as_uri())
        run = client.create_run(client.create_experiment("hand"))
        for index, value in enumerate(values, start=1):
            client.log_metric(run.info.run_id, "grad_norm", value, step=every * index)
            client.log_metric(run.info.run_id, "loss", 2.0 / index, step=every * index)
        client.log_param(run.info.run_id, "max_steps", str(every * len(values)))
        client.set_terminated(run.info.run_id)
    return root / run.info.experiment_id / run.info.run_id


def test_an_mlflow_run_folder_logged_every_2nd_step_is_resampled_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    folder = mlflow_file_store_run(tmp_path / "mlruns", [4.0, 3.0, 2.0, 1.0], every=2, monkeypatch=monkeypatch)
    for source in (folder, folder / "meta.yaml"):
        with pytest.warns(RefinementWarning, match=r"logs grad_norm every 2 steps \(4 values, steps 2-8\)"):
            log = load_grad_norms(source)
        assert log.kind == "MLflow run" and log.source == str(folder)
        assert log.l2.tolist() == [4.0, 3.0, 2.0, 1.0] and log.steps.tolist() == [2, 4, 6, 8]
        assert log.positions().tolist() == [0.0, 0.25, 0.5, 0.75]  # by training fraction, as for trainer_state.json
        assert log.metrics["loss"].values.tolist() == [2.0, 1.0, 2.0 / 3, 0.5]
        assert log.meta["num_training_steps"] == 8
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # the reader's opt-in lasts for its read only


def trackio_run(project, name, entries):
    import trackio

    trackio.init(project=project, name=name)
    for entry in entries:
        trackio.log(entry)
    trackio.finish()


def test_a_trackio_run_logged_every_3rd_step_is_resampled_with_a_warning(run):
    steps = [3, 6, 9, 12]
    entries = [{"train/grad_norm": 1.0 / s, "train/loss": float(s), "train/global_step": s} for s in steps]
    trackio_run("hf-lrschedule-every-3rd", "sparse", [{"note": 1.0}, *entries])
    with pytest.warns(RefinementWarning, match=r"logs train/grad_norm every 3 steps \(4 values, steps 3-12\)"):
        log = load_grad_norms("trackio:hf-lrschedule-every-3rd/sparse")
    assert log.steps.tolist() == steps and log.l2.tolist() == [1.0 / s for s in steps]
    assert log.positions().tolist() == [0.0, 0.25, 0.5, 0.75]
    assert log.metrics["loss"].values.tolist() == [3.0, 6.0, 9.0, 12.0]


def test_trackio_project_alone_means_its_newest_run_with_a_warning(run):
    trackio_run("hf-lrschedule-two-runs", "first", [{"train/grad_norm": 1.0, "train/global_step": 1}])
    trackio_run("hf-lrschedule-two-runs", "second", [{"train/grad_norm": 2.0, "train/global_step": 1}])
    with pytest.warns(RefinementWarning, match="has 2 runs; using the newest, 'second'"):
        log = load_grad_norms("trackio:hf-lrschedule-two-runs")
    assert log.source == "trackio:hf-lrschedule-two-runs/second" and log.l2.tolist() == [2.0]


def test_unknown_runs_and_stores_are_clear_errors(run, tmp_path):
    uri = run["uri"]
    with pytest.raises(GradNormSourceError, match=r"no MLflow run 'f00d' at tracking URI 'sqlite:///.*mlflow.db'"):
        load_grad_norms(f"mlflow:f00d@{uri}")
    missing = tmp_path / "nowhere.db"
    with pytest.raises(GradNormSourceError, match=r"no MLflow store at .*nowhere.db"):
        load_grad_norms(f"mlflow:{run['run_id']}@sqlite:///{missing}")
    assert not missing.exists()  # reading never creates a store
    with pytest.raises(GradNormSourceError, match="names no run; expected mlflow:<run_id>"):
        load_grad_norms("mlflow:")
    with pytest.raises(GradNormSourceError, match=rf"no trackio project 'no-such-project' in .*projects there: .*{PROJECT}"):
        load_grad_norms("trackio:no-such-project/norms")
    with pytest.raises(GradNormSourceError, match=r"no run 'other' in project 'hf-lrschedule-sources' \(runs: norms\)"):
        load_grad_norms(f"trackio:{PROJECT}/other")
    assert main(["refine", f"mlflow:f00d@{uri}", "--steps", "5", "-o", str(tmp_path / "s.json")]) == 2


def test_a_run_without_gradient_norms_lists_what_it_logged(run, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=run["uri"])
    mlflow_run = client.create_run(client.get_experiment_by_name("sources").experiment_id)
    client.log_metric(mlflow_run.info.run_id, "loss", 1.0, step=1)
    with pytest.raises(GradNormSourceError, match=r"no gradient-norm metric \(grad_norm or train/grad_norm\); "
                       r"metrics logged: loss\. The Trainer logs grad_norm every logging_steps"):
        load_grad_norms(f"mlflow:{mlflow_run.info.run_id}@{run['uri']}")
    trackio_run("hf-lrschedule-no-norms", "loss-only", [{"train/loss": 1.0, "train/global_step": 1}])
    with pytest.raises(GradNormSourceError, match=r"no gradient-norm metric .*metrics logged: train/loss\."):
        load_grad_norms("trackio:hf-lrschedule-no-norms/loss-only")


@pytest.mark.parametrize("package,source", [("mlflow", "mlflow:abc"), ("trackio", "trackio:p/r")])
def test_without_the_tracker_installed(package, source, monkeypatch):
    for name in [n for n in sys.modules if n == package or n.startswith(f"{package}.")]:
        monkeypatch.setitem(sys.modules, name, None)  # None: `import` raises ImportError
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(GradNormSourceError, match=rf'needs the {package} package.*pip install "hf_lrschedule\[trackers\]"'):
        load_grad_norms(source)
