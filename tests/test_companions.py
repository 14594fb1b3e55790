"""What a `linear_refined` Trainer gets with no edit to the script: the recorder file, the schedule report and the
logged loss / LR beside the norms (`integrations.trainer_patch`); `HF_LRSCHEDULE_CALLBACKS=0` switches it off."""

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
from conftest import TESTS, subprocess_env
from test_reporting import read_events
from tiny import tiny_trainer

from hf_lrschedule import GradNormRecorderCallback, ScheduleReportCallback, load_grad_norms
from hf_lrschedule.integrations import trainer_callback

NORMS = [4.0, 3.0, 2.0, 1.5, 1.2, 1.1, 1.0, 1.0] * 2


def stock_run(tmp_path, *extra, env=None):
    norms = tmp_path / "norms.json"
    norms.write_text(json.dumps({"format": "hf_lrschedule.grad_norms", "format_version": 1, "meta": {},
                                 "steps": list(range(1, len(NORMS) + 1)), "l2": NORMS, "l1": None}))
    out = tmp_path / "out"
    cmd = [
        sys.executable, str(TESTS / "scripts" / "stock_train.py"), "--output_dir", str(out), "--max_steps", "8",
        "--per_device_train_batch_size", "4", "--learning_rate", "0.01", "--logging_steps", "2",
        "--disable_tqdm", "true", "--lr_scheduler_type", "linear_refined",
        "--lr_scheduler_kwargs", json.dumps({"grad_norms": str(norms)}), "--result_file", str(tmp_path / "r.json"),
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(**(env or {})), timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_a_stock_script_reports_the_schedule_to_tensorboard_and_records_its_norms(tmp_path):
    out = stock_run(tmp_path, "--report_to", "tensorboard")
    texts, scalars, images = read_events(out)
    summary = texts["hf_lrschedule/summary/text_summary"]
    assert "steps: 8" in summary and "table_sha256: " in summary
    assert f"recorder_file: {out / 'grad_norms.json'}" in summary
    (image,) = images["hf_lrschedule/schedule"]
    assert image.width > 100 and image.height > 100
    assert scalars["hf_lrschedule/steps"] == [8.0]

    # every step's norm, although the script logs every 2nd; the logged loss and LR beside them
    recorded = load_grad_norms(out / "grad_norms.json")
    assert recorded.steps.tolist() == list(range(1, 9)) and np.all(np.isfinite(recorded.l2))
    logged = json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())["log_history"]
    for name in ("loss", "learning_rate"):
        expected = {e["step"]: e[name] for e in logged if name in e}
        series = recorded.metrics[name]
        assert dict(zip(series.steps.tolist(), series.values.tolist())) == pytest.approx(expected)
        assert sorted(expected) == [2, 4, 6, 8]
    # the same series from the other sources of this run
    for source in (out / "checkpoint-8" / "trainer_state.json", out / "runs"):
        log = load_grad_norms(source)
        assert log.metrics["learning_rate"].values.tolist() == pytest.approx(recorded.metrics["learning_rate"].values)
        assert log.metrics["loss"].steps.tolist() == [2, 4, 6, 8]


def test_the_switch_turns_it_all_off(tmp_path):
    out = stock_run(tmp_path, "--report_to", "tensorboard", env={"HF_LRSCHEDULE_CALLBACKS": "0"})
    texts, scalars, images = read_events(out)
    assert not texts and "hf_lrschedule/schedule" not in images and "train/loss" in scalars
    assert not (out / "grad_norms.json").exists()


def recorders(trainer):
    return [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, GradNormRecorderCallback)]


def test_only_linear_refined_runs_get_companions(tmp_path):
    assert recorders(tiny_trainer(tmp_path / "a", max_steps=2, lr_scheduler_type="linear")) == []
    trainer = tiny_trainer(tmp_path / "b", max_steps=2, lr_scheduler_type="linear_refined")
    (recorder,) = recorders(trainer)
    assert recorder.automatic
    assert sum(isinstance(cb, ScheduleReportCallback) for cb in trainer.callback_handler.callbacks) == 1


def test_a_recorder_the_script_attaches_replaces_the_automatic_one(tmp_path):
    trainer = tiny_trainer(tmp_path, max_steps=3, logging_steps=1, lr_scheduler_type="linear_refined")
    (automatic,) = recorders(trainer)
    mine = GradNormRecorderCallback(path=tmp_path / "mine.json").attach(trainer)
    assert recorders(trainer) == [mine]
    trainer.train()
    assert load_grad_norms(tmp_path / "mine.json").steps.tolist() == [1, 2, 3]
    assert not (tmp_path / "grad_norms.json").exists() and len(automatic.recorder) == 0
    # the default path: the script's own recorder takes the automatic one's place too
    trainer = tiny_trainer(tmp_path / "c", max_steps=2, lr_scheduler_type="linear_refined")
    mine = GradNormRecorderCallback().attach(trainer)
    assert recorders(trainer) == [mine]


def test_a_failure_to_attach_is_one_warning_and_training_goes_on(tmp_path, monkeypatch, caplog):
    def broken(self, trainer):
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(trainer_callback.GradNormRecorderCallback, "attach", broken)
    with caplog.at_level(logging.WARNING, logger="hf_lrschedule"):
        trainer = tiny_trainer(tmp_path, max_steps=2, lr_scheduler_type="linear_refined")
    assert "could not add its callbacks" in caplog.text and "broken on purpose" in caplog.text
    assert trainer.train().global_step == 2


def test_recorder_metrics_survive_save_load_and_truncate(tmp_path):
    from hf_lrschedule import GradNormRecorder

    recorder = GradNormRecorder(tmp_path / "n.json")
    for step in range(1, 5):
        recorder.record(step, 1.0 + step)
        recorder.record_metric("loss", step, 10.0 - step)
    recorder.record_metric("eval_loss", 4, float("nan"))
    recorder.truncate(3)
    recorder.save()
    log = load_grad_norms(tmp_path / "n.json")
    assert log.metrics["loss"].steps.tolist() == [1, 2, 3]
    assert log.metrics["loss"].values.tolist() == [9.0, 8.0, 7.0]
    assert "eval_loss" not in log.metrics  # its only value was after step 3
