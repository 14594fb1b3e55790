"""Every bad input gets a clear message that says what was expected (no bare traceback from numpy/scipy/torch)."""

import json
from pathlib import Path

import pytest
import torch

from hf_lrschedule import (
    GradNormRecorder,
    GradNormSourceError,
    RefinementWarning,
    get_linear_refined_schedule,
    load_grad_norms,
)
from hf_lrschedule.formats import atomic_write_json


def build(grad_norms=None, T=10, **kwargs):
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    if grad_norms is not None:
        kwargs["grad_norms"] = grad_norms
    return get_linear_refined_schedule(opt, 0, T, **kwargs)


def recorder_file(tmp_path, values, **meta):
    recorder = GradNormRecorder(tmp_path / "norms.json", meta=meta)
    for step, value in enumerate(values, start=1):
        recorder.record(step, value)
    return str(recorder.save())


def test_wandb_csv_with_steps_every_10(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text('"Step","run - gradient_norm","run - gradient_norm__MIN","run - gradient_norm__MAX"\n'
                    + "".join(f'"{10 * i}","{v}","{v}","{v}"\n' for i, v in enumerate([3.0, 2.0, 1.0, 1.0], start=1)))
    log = load_grad_norms(path)
    assert log.l2.tolist() == [3.0, 2.0, 1.0, 1.0] and log.steps.tolist() == [10, 20, 30, 40]
    assert log.positions().tolist() == [0.0, 0.25, 0.5, 0.75]


def test_list_source():
    assert load_grad_norms([1.0, 2.0]).l2.tolist() == [1.0, 2.0]


# ---- bad inputs (numbered as in docs/guarantees.md) ----


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; expected a recorder JSON"):
        load_grad_norms(tmp_path / "missing.json")


def test_empty_file(tmp_path):
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(GradNormSourceError, match="is empty"):
        load_grad_norms(tmp_path / "empty.json")


def trainer_state(path, steps, value=1.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"max_steps": 10, "log_history": [{"grad_norm": value, "step": s} for s in steps]}))


def test_run_directory_recorder_then_trainer_state_then_newest_checkpoint(tmp_path):
    trainer_state(tmp_path / "checkpoint-9" / "trainer_state.json", [1, 2], value=9.0)
    trainer_state(tmp_path / "checkpoint-10" / "trainer_state.json", [1, 2, 3], value=10.0)  # newest by number
    log = load_grad_norms(tmp_path)
    assert log.source == str(tmp_path / "checkpoint-10" / "trainer_state.json") and log.l2.tolist() == [10.0] * 3
    trainer_state(tmp_path / "trainer_state.json", [2, 4])
    log = load_grad_norms(tmp_path)
    assert log.source == str(tmp_path / "trainer_state.json") and log.kind == "trainer_state.json"
    assert log.describe().endswith("(trainer_state.json): 2 gradient norms, steps 2-4 every 2, from a run of 10 steps")
    GradNormRecorder(tmp_path / "grad_norms.json").save()
    assert load_grad_norms(tmp_path).source == str(tmp_path / "grad_norms.json")


def test_run_directory_uses_the_first_source_found_even_if_it_is_bad(tmp_path):
    (tmp_path / "trainer_state.json").write_text("{}")
    trainer_state(tmp_path / "checkpoint-5" / "trainer_state.json", [1])
    with pytest.raises(GradNormSourceError, match="trainer_state.json' is JSON but neither a recorder file"):
        load_grad_norms(tmp_path)


def test_empty_run_directory(tmp_path):
    (tmp_path / "checkpoint-x").mkdir()
    with pytest.raises(GradNormSourceError, match="holds no gradient norms: looked for grad_norms.json"):
        load_grad_norms(tmp_path)


def test_unknown_format(tmp_path):
    (tmp_path / "norms.parquet").write_bytes(b"PAR1")
    with pytest.raises(GradNormSourceError, match="unknown gradient-norm file type '.parquet'"):
        load_grad_norms(tmp_path / "norms.parquet")


def test_json_of_unknown_shape(tmp_path):
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(GradNormSourceError, match="neither a recorder file"):
        load_grad_norms(tmp_path / "x.json")


def test_truncated_json(tmp_path):
    path = recorder_file(tmp_path, [1.0, 2.0, 3.0])
    text = Path(path).read_text()
    Path(path).write_text(text[: len(text) // 2])
    with pytest.raises(GradNormSourceError, match="not valid JSON .* truncated"):
        load_grad_norms(path)


def test_binary_file(tmp_path):
    (tmp_path / "norms.json").write_bytes(b"\x80\x04\x95pickle")
    with pytest.raises(GradNormSourceError, match="not a text file"):
        load_grad_norms(tmp_path / "norms.json")


def test_csv_with_text_in_value_column(tmp_path):
    (tmp_path / "n.csv").write_text("Step,grad_norm\n1,0.5\n2,oops\n")
    with pytest.raises(GradNormSourceError, match="line 3: column 'grad_norm' must hold a number, got 'oops'"):
        load_grad_norms(tmp_path / "n.csv")


def test_csv_header_only(tmp_path):
    (tmp_path / "n.csv").write_text("Step,grad_norm\n")
    with pytest.raises(GradNormSourceError, match="no data rows"):
        load_grad_norms(tmp_path / "n.csv")


def test_recorder_file_with_wrong_version(tmp_path):
    path = recorder_file(tmp_path, [1.0])
    data = json.loads(Path(path).read_text())
    data["format_version"] = 99
    Path(path).write_text(json.dumps(data))
    with pytest.raises(GradNormSourceError, match="format_version 99"):
        load_grad_norms(path)


def test_trainer_state_without_grad_norm(tmp_path):
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": [{"loss": 1.0, "step": 1}]}))
    with pytest.raises(GradNormSourceError, match="no 'grad_norm' entries.*logging_steps=1"):
        load_grad_norms(tmp_path / "trainer_state.json")


def test_all_nan_file_through_the_scheduler(tmp_path):
    path = recorder_file(tmp_path, [float("nan")] * 4)
    with pytest.raises(GradNormSourceError, match="cannot refine from .*none of the 4 gradient norms"):
        build(path)


def test_all_zero(tmp_path):
    with pytest.raises(GradNormSourceError, match="NaN, inf or 0"):
        build(recorder_file(tmp_path, [0.0, 0.0]))


def test_negative_norms(tmp_path):
    with pytest.raises(GradNormSourceError, match="negative"):
        build([1.0, -1.0, 2.0])


def test_single_value_warns_and_is_linear():
    with pytest.warns(RefinementWarning, match="only one usable"):
        sched = build([2.0], T=4)
    assert [sched.lr_lambdas[0](t) for t in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_fewer_values_than_filter_needs_warns():
    with pytest.warns(RefinementWarning, match="spans less than one logged value"):
        build([3.0, 2.0, 1.0], T=100)


def test_negative_smoothing():
    with pytest.raises(ValueError, match="smoothing must be a number in"):
        build([1.0, 2.0], smoothing=-0.1)


def test_smoothing_as_unparsable_string():
    with pytest.raises(ValueError, match=r"lr_scheduler_kwargs\['smoothing'\]: smoothing must be a number"):
        build([1.0, 2.0], smoothing="a lot")


def test_smoothing_as_scientific_string_is_accepted():
    build([1.0, 2.0], smoothing="1e-2")  # transformers leaves "1e-2" from a command line as a string


def test_unknown_kwarg():
    with pytest.raises(ValueError, match="unknown lr_scheduler_kwargs .*'foo'.*valid keys: grad_norms, guard"):
        build([1.0], foo=1)


def test_grad_norms_and_schedule_together():
    with pytest.raises(ValueError, match="either `grad_norms` or `schedule`"):
        build([1.0], schedule="s.json")


def test_l1_requested_from_l2_only_source(tmp_path):
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": [{"grad_norm": 1.0, "step": 1}]}))
    with pytest.raises(GradNormSourceError, match="holds no l1 gradient norms"):
        build(str(tmp_path / "trainer_state.json"), norm="l1")


def test_other_optimizer_family_warns(tmp_path):
    path = recorder_file(tmp_path, [2.0, 1.0, 1.0], optimizer="SGD", optimizer_family="sgd")
    with pytest.warns(RefinementWarning, match="recorded with a sgd-family optimizer"):
        build(path)


def test_run_length_far_from_logged_length_warns(tmp_path):
    path = recorder_file(tmp_path, [2.0, 1.0, 1.0, 1.0] * 5, num_training_steps=20)
    with pytest.warns(RefinementWarning, match="run of 20 steps, this schedule has 1000"):
        build(path, T=1000)


def warmup_warnings(path, warmup, T=10):
    """The warmup warnings of a `linear_refined` scheduler with `warmup` steps of `T`, built from `path`."""
    import warnings

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        get_linear_refined_schedule(opt, warmup, T, grad_norms=path)
    return [str(w.message) for w in caught if "recorded under a warmup" in str(w.message)]


def test_dropping_the_warmup_the_norms_were_recorded_under_warns(tmp_path):
    path = recorder_file(tmp_path, [3.0, 2.0, 1.0, 1.0] * 5, num_training_steps=20, num_warmup_steps=4)
    (message,) = warmup_warnings(path, 0)
    assert "warmup of 20.0 % of its run; this run's warmup is 0.0 %" in message and "--warmup_steps 0.20" in message
    assert warmup_warnings(path, 2) == []  # kept (same share of the run)
    assert warmup_warnings(path, 1) == []  # half of it: the edge of the rule, still quiet
    assert len(warmup_warnings(path, 3, T=40)) == 1  # 7.5 % of the run: under half of 20 %


def test_no_warmup_warning_without_a_recorded_warmup(tmp_path):
    assert warmup_warnings(recorder_file(tmp_path, [3.0, 2.0, 1.0], num_training_steps=3), 0) == []
    assert warmup_warnings(recorder_file(tmp_path, [3.0, 2.0, 1.0], num_warmup_steps=0, num_training_steps=3), 0) == []


def test_zero_steps():
    with pytest.raises(ValueError, match="num_training_steps must be a positive integer"):
        build([1.0], T=0)


def test_schedule_file_passed_as_grad_norms(tmp_path):
    path = tmp_path / "s.json"
    atomic_write_json(path, {"format": "hf_lrschedule.schedule", "format_version": 1, "multipliers": [1.0, 0.0]})
    with pytest.raises(GradNormSourceError, match="is a schedule file, not gradient norms"):
        build(str(path))


def test_bad_schedule_file(tmp_path):
    path = tmp_path / "s.json"
    atomic_write_json(path, {"format": "hf_lrschedule.schedule", "format_version": 1, "multipliers": [2.0, "x"]})
    with pytest.raises(GradNormSourceError, match="'multipliers' must be a list of at least 2 numbers in"):
        build(schedule=str(path))


def test_nonfinite_steps_in_a_recorder_file_are_dropped(tmp_path):
    path = recorder_file(tmp_path, [2.0, float("inf"), 1.0, 1.0, 1.0, 1.0])
    with pytest.warns(RefinementWarning, match="dropped 1 of 6"):
        sched = build(path, T=5, smoothing=0.0, guard="none")
    # the skipped update is gone and the others close up: the series of the 5 updates actually taken
    clean = build([2.0, 1.0, 1.0, 1.0, 1.0], T=5, smoothing=0.0, guard="none")
    assert [sched.lr_lambdas[0](t) for t in range(6)] == [clean.lr_lambdas[0](t) for t in range(6)]


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"old": True})
    with pytest.raises(ValueError):
        atomic_write_json(target, {"bad": float("nan")})  # fails while serialising
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_written_files_get_the_mode_open_would_give(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        written = atomic_write_json(tmp_path / "a.json", {"x": 1})
        with open(tmp_path / "b.json", "w") as handle:
            handle.write("{}")
    finally:
        os.umask(mask)
    assert written.stat().st_mode & 0o777 == (tmp_path / "b.json").stat().st_mode & 0o777 == 0o644
