"""Continuation (hf_lrschedule.continuation, `hf-lrschedule extend`) and a resumed Trainer following it."""

import doctest
import json

import numpy as np
import pytest
from scipy.optimize import minimize
from test_bound import direct_bound
from tiny import tiny_trainer

import hf_lrschedule.continuation
from hf_lrschedule import GradNormRecorder, load_schedule
from hf_lrschedule.cli import main
from hf_lrschedule.continuation import continue_schedule, run_history
from hf_lrschedule.errors import GradNormSourceError, RefinementWarning


def test_is_the_minimum_of_the_direct_bound_with_the_past_fixed():
    past, norms = [0.2, 1.0, 0.8, 0.6], [3.0, 1.5, 1.0, 1.2, 1.1, 1.3, 1.0, 0.9]
    result = continue_schedule(past, 8, grad_norms=norms)
    # independent: the calibration from its definition (c = 1 is optimal for the past: D^2 = 2 S_1 b, b = B(D=0))
    squared_distance = 2 * sum(past) * direct_bound(past, norms[:4], 0.0)
    assert result.squared_distance == pytest.approx(squared_distance, rel=1e-12)

    def bound(future):
        return direct_bound(past + list(future), norms, squared_distance**0.5)

    brute = minimize(bound, [0.5] * 4, method="SLSQP", bounds=[(0, 1)] * 3 + [(1e-9, 1)], options={"ftol": 1e-14})
    assert result.bound == pytest.approx(brute.fun, rel=1e-7)
    assert result.multipliers[4:8] == pytest.approx(brute.x, abs=2e-3)
    assert result.multipliers[:4].tolist() == past and result.multipliers[-1] == 0.0


def test_finished_linear_run_rewarms_then_decays():
    T1 = 200
    linear = (T1 - np.arange(T1)) / T1  # a finished run: its last update had 1/T1
    result = continue_schedule(linear, 2 * T1)
    future = result.multipliers[T1:-1]
    # what the bound says (docs/how-to/continue.md): rewarm to about 0.37 of the peak, then a linear-like decay
    assert 0.3 < result.rewarm < 0.45
    assert np.all(np.diff(future[:-1]) <= 1e-6)  # decreasing (the last update only weighs the last gradient)
    assert future[-2] < 0.03 * result.rewarm  # down to about 2 / (T2 - T1) of the rewarm
    assert result.bound < result.planned_bound  # training longer lowers the bound
    # fast: an O(T) bound with its gradient (docs/how-to/continue.md gives timings)
    long = continue_schedule(linear, 4000)
    assert long.seconds < 20 and long.multipliers.size == 4001


def test_bad_input():
    with pytest.raises(ValueError, match="longer than its past: got 4 steps for a past of 4"):
        continue_schedule([1.0, 0.8, 0.6, 0.4], 4)
    with pytest.raises(ValueError, match="base learning rate is below the run's peak"):
        continue_schedule([1.0, 1.5], 4)
    with pytest.raises(ValueError, match="every learning rate is 0"):
        continue_schedule([0.0, 0.0], 4)


def test_doctests():
    result = doctest.testmod(hf_lrschedule.continuation, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def write_state(path, steps, lrs, max_steps):
    path.parent.mkdir(parents=True, exist_ok=True)
    log = [{"step": s, "learning_rate": lr, "grad_norm": 1.0, "loss": 2.0} for s, lr in zip(steps, lrs)]
    path.write_text(json.dumps({"log_history": log, "max_steps": max_steps, "logging_steps": 1}))
    return path


def test_sources_and_their_errors(tmp_path):
    recorder = GradNormRecorder(tmp_path / "norms.json")
    for step in range(1, 6):
        recorder.record(step, 1.0)
    recorder.save()
    with pytest.raises(GradNormSourceError, match="holds no learning rates"):
        run_history(tmp_path / "norms.json")
    state = write_state(tmp_path / "trainer_state.json", range(1, 7), [0.1 * (6 - s + 1) / 6 for s in range(1, 7)], 6)
    with pytest.raises(ValueError, match="learning rates up to step 6; --from-checkpoint 9 is beyond the log"):
        run_history(state, from_step=9)
    history = run_history(state, from_step=4)
    assert history.past.tolist() == pytest.approx([1.0, 5 / 6, 4 / 6, 3 / 6]) and history.base_learning_rate == pytest.approx(0.1)
    assert history.planned.size == 6
    # logged every 2nd step: interpolated, with a warning
    sparse = write_state(tmp_path / "sparse" / "trainer_state.json", [2, 4, 6], [0.1, 0.06, 0.02], 6)
    with pytest.warns(RefinementWarning, match="interpolated linearly"):
        history = run_history(sparse, base_learning_rate=0.1)
    assert history.past.tolist() == pytest.approx([1.0, 1.0, 0.8, 0.6, 0.4, 0.2])
    # a run directory: its checkpoint must exist
    (tmp_path / "run" / "checkpoint-3").mkdir(parents=True)
    write_state(tmp_path / "run" / "checkpoint-3" / "trainer_state.json", [1, 2, 3], [0.1, 0.08, 0.06], 5)
    with pytest.raises(ValueError, match=r"no checkpoint-2 to resume from \(checkpoints: \[3\]\)"):
        run_history(tmp_path / "run", from_step=2, constant_norms=True)
    with pytest.warns(RefinementWarning, match="linear decay to 0"):
        history = run_history(tmp_path / "run", constant_norms=True)
    assert history.past.size == 3 and history.planned.tolist() == pytest.approx([1.0, 0.8, 0.6, 0.3, 0.0])


def test_extend_cli_errors(tmp_path, capsys):
    state = write_state(tmp_path / "trainer_state.json", range(1, 7), [0.1] * 6, 6)
    assert main(["extend", str(state), "--to", "6", "-o", str(tmp_path / "x.json")]) == 2
    assert "hf-lrschedule extend: error: the continued run must be longer" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


# --- a real Trainer resumed with the continuation -------------------------------------------------------------------

BASE_LR = 1e-2
ORIGINAL = {
    "linear": {"lr_scheduler_type": "linear"},
    "linear_refined": {  # its table travels in scheduler.pt: the resume must not bring it back
        "lr_scheduler_type": "linear_refined",
        "lr_scheduler_kwargs": {"grad_norms": [3.0, 2.0, 1.0, 1.0, 1.2, 1.5], "smoothing": 0.0, "guard": "none"},
    },
}


def logged_lrs(trainer):
    return {e["step"]: e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e}


@pytest.mark.parametrize("original, k", [("linear", 6), ("linear", 4), ("linear_refined", 4)])
def test_resumed_trainer_follows_the_continuation_exactly(tmp_path, original, k, capsys):
    settings = dict(per_device_train_batch_size=4, learning_rate=BASE_LR, logging_steps=1, data_seed=0,
                    save_strategy="steps", save_steps=2)
    first = tiny_trainer(tmp_path / "out", max_steps=6, **settings, **ORIGINAL[original])
    first.train()
    before = logged_lrs(first)
    schedule, plot = tmp_path / "continued.json", tmp_path / "continued.png"
    argv = ["extend", str(tmp_path / "out"), "--to", "12", "--from-checkpoint", str(k), "-o", str(schedule),
            "--plot", str(plot), "--base-lr", str(BASE_LR)]
    assert main(argv) == 0
    assert "resume: Trainer(..., max_steps=12, warmup_steps=0" in capsys.readouterr().out
    data = load_schedule(schedule)
    multipliers = data["multipliers"]
    assert len(multipliers) == 13 and multipliers[-1] == 0.0 and data["continuation"]["past_steps"] == k
    assert [BASE_LR * m for m in multipliers[:k]] == pytest.approx([before[s] for s in range(1, k + 1)], rel=1e-12)
    assert min(multipliers[k:12]) > 0 and plot.stat().st_size > 0

    resumed = tiny_trainer(tmp_path / "out", max_steps=12, **{**settings, "lr_scheduler_type": "linear_refined",
                                                              "lr_scheduler_kwargs": {"schedule": str(schedule)}})
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / f"checkpoint-{k}"))
    after = logged_lrs(resumed)
    assert sorted(after) == list(range(1, 13))  # the checkpoint's log_history, then the resumed steps
    # update s uses multiplier s - 1, from the first update after the resume on (the optimizer state held the old one)
    assert [after[s] for s in range(k + 1, 13)] == pytest.approx([BASE_LR * m for m in multipliers[k:12]], rel=1e-12)


def test_same_kwargs_longer_run_without_source_keeps_the_saved_table_and_warns(tmp_path):
    norms = tmp_path / "norms.json"
    recorder = GradNormRecorder(norms)
    for step, value in enumerate([3.0, 2.0, 1.0, 1.0, 1.2, 1.5], start=1):
        recorder.record(step, value)
    recorder.save()
    settings = dict(per_device_train_batch_size=4, learning_rate=BASE_LR, logging_steps=1, data_seed=0,
                    save_strategy="steps", save_steps=3, lr_scheduler_type="linear_refined",
                    lr_scheduler_kwargs={"grad_norms": str(norms)})
    first = tiny_trainer(tmp_path / "out", max_steps=6, **settings)
    first.train()
    norms.unlink()
    resumed = tiny_trainer(tmp_path / "out", max_steps=8, **settings)
    with pytest.warns(RefinementWarning, match="saved schedule was built for 6 steps"):
        resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-3"))
    before, after = logged_lrs(first), logged_lrs(resumed)
    assert [after[s] for s in range(4, 7)] == [before[s] for s in range(4, 7)]  # the saved table, bit-identical
    assert after[7] == after[8] == 0.0  # held at its end
