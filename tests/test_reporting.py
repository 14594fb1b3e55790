import logging

import numpy as np
import pytest
from tiny import tiny_trainer

from hf_lrschedule import GradNormRecorderCallback, ScheduleReportCallback
from hf_lrschedule.refine import describe_schedule

NORMS = [5.0, 3.0, 2.0, 1.5, 1.2, 1.1, 1.0, 1.0, 1.1, 1.3] * 3
REFINED = dict(lr_scheduler_type="linear_refined", lr_scheduler_kwargs={"grad_norms": NORMS, "smoothing": 0.05})


def read_events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    texts, scalars, images = {}, {}, {}
    for path in sorted(log_dir.rglob("events.out.tfevents.*")):
        events = EventAccumulator(str(path.parent), size_guidance={"tensors": 0, "images": 0, "scalars": 0})
        events.Reload()
        tags = events.Tags()
        for tag in tags.get("tensors", []):
            if tag.startswith("hf_lrschedule/summary"):
                texts[tag] = events.Tensors(tag)[0].tensor_proto.string_val[0].decode()
        for tag in tags.get("scalars", []):
            scalars[tag] = [e.value for e in events.Scalars(tag)]
        for tag in tags.get("images", []):
            images[tag] = events.Images(tag)
    return texts, scalars, images


@pytest.mark.parametrize("how", ["attach", "callbacks"])
def test_tensorboard_gets_the_summary_and_the_picture_once(tmp_path, how):
    callbacks = [ScheduleReportCallback()] if how == "callbacks" else []
    trainer = tiny_trainer(tmp_path, max_steps=6, logging_steps=1, report_to="tensorboard", callbacks=callbacks, **REFINED)
    if how == "attach":
        GradNormRecorderCallback().attach(trainer)
    trainer.train()
    texts, scalars, images = read_events(tmp_path)
    summary = texts["hf_lrschedule/summary/text_summary"]
    assert f"source: {len(NORMS)} gradient norms given in lr_scheduler_kwargs" in summary
    assert "steps: 6" in summary and "guard: floor" in summary and "smoothing: 0.05" in summary
    assert "table_sha256: " in summary and "mean LR multiplier" in summary
    assert scalars["hf_lrschedule/steps"] == [6.0] and len(scalars["hf_lrschedule/peak_fraction"]) == 1
    assert "train/loss" in scalars  # the integration's own logging goes on
    (image,) = images["hf_lrschedule/schedule"]
    assert image.width == 600 and image.height == 350


def test_no_reporting_integration_logs_nothing(tmp_path, caplog):
    trainer = tiny_trainer(tmp_path, max_steps=3, callbacks=[ScheduleReportCallback()], **REFINED)
    GradNormRecorderCallback().attach(trainer)
    with caplog.at_level(logging.WARNING, logger="hf_lrschedule"):
        trainer.train()
    assert not list(tmp_path.rglob("events.out.tfevents.*"))
    assert "could not" not in caplog.text


def test_plain_linear_scheduler_logs_nothing(tmp_path):
    trainer = tiny_trainer(tmp_path, max_steps=3, report_to="tensorboard", lr_scheduler_type="linear")
    ScheduleReportCallback().attach(trainer)
    trainer.train()
    texts, scalars, images = read_events(tmp_path)
    assert not texts and not images and "train/train_loss" in scalars
    assert not [tag for tag in scalars if tag.startswith("hf_lrschedule")]


def test_a_broken_writer_is_one_warning_and_training_goes_on(tmp_path, caplog):
    trainer = tiny_trainer(tmp_path, max_steps=4, report_to="tensorboard", **REFINED)
    ScheduleReportCallback().attach(trainer)
    tensorboard = next(cb for cb in trainer.callback_handler.callbacks if type(cb).__name__ == "TensorBoardCallback")
    original = tensorboard.on_train_begin

    def break_writer(*args, **kwargs):
        original(*args, **kwargs)
        tensorboard.tb_writer.add_image = lambda *a, **k: (_ for _ in ()).throw(OSError("disk full"))

    tensorboard.on_train_begin = break_writer
    with caplog.at_level(logging.WARNING, logger="hf_lrschedule"):
        trainer.train()
    assert trainer.state.global_step == 4
    warnings = [r for r in caplog.records if "could not log the schedule" in r.getMessage()]
    assert len(warnings) == 1 and "TensorBoard (OSError: disk full)" in warnings[0].getMessage()


@pytest.mark.parametrize(
    "table,expected",
    [
        ([1.0, 0.75, 0.5, 0.25, 0.0], "no warmup, linear decay; mean LR multiplier 0.50 vs 0.50 for linear"),
        (
            np.minimum(np.arange(101) / 6, 1) * (1 - np.arange(101) / 100),
            "warmup over the first 6.0 % of training, then linear decay; mean LR multiplier 0.47 vs 0.50 for linear",
        ),
        (
            [1.0, 0.95, 0.9, 0.8, 0.0],
            ("no warmup, a decay above linear (by 0.55 at 75 % of training), then a faster final anneal; "
            "mean LR multiplier 0.73 vs 0.50 for linear"),
        ),
        (
            [1.0, 0.3, 0.2, 0.1, 0.0],
            ("no warmup, a decay below linear (by 0.45 at 25 % of training), then a slower tail; "
            "mean LR multiplier 0.32 vs 0.50 for linear"),
        ),
        ([1.0, 0.8, 0.6, 0.4, 0.2], "no warmup, linear decay; mean LR multiplier 0.60 vs 0.60 for linear"),
    ],
)
def test_describe_schedule(table, expected):
    assert describe_schedule(table) == expected


def test_describe_schedule_rejects_a_bad_table():
    with pytest.raises(ValueError, match="at least 2 finite numbers"):
        describe_schedule([0.0, 0.0])


def test_a_schedule_file_reports_its_path_and_the_settings_it_was_refined_with(tmp_path):
    from hf_lrschedule.cli import main

    norms = tmp_path / "norms.csv"
    norms.write_text("Step,grad_norm\n" + "".join(f"{s},{v}\n" for s, v in enumerate(NORMS, start=1)))
    schedule = tmp_path / "schedule.json"
    assert main(["refine", str(norms), "--steps", "5", "-o", str(schedule), "--guard", "clip"]) == 0
    trainer = tiny_trainer(
        tmp_path / "run", max_steps=5, report_to="tensorboard", lr_scheduler_type="linear_refined",
        lr_scheduler_kwargs={"schedule": str(schedule)},
    )
    GradNormRecorderCallback().attach(trainer)
    trainer.train()
    summary = read_events(tmp_path / "run")[0]["hf_lrschedule/summary/text_summary"]
    assert f"source: schedule file {schedule}" in summary and "guard: clip" in summary and "steps: 5" in summary
