"""TensorBoard event files and run directories as gradient-norm sources, from real Trainer runs."""

import json
import math
import shutil
import sys

import pytest
import torch

pytest.importorskip("tensorboard", reason="the TensorBoard source needs tensorboard (in .[test] and .[tensorboard])")

from torch.utils.tensorboard import SummaryWriter

from hf_lrschedule import (
    GradNormRecorderCallback,
    GradNormSourceError,
    RefinementWarning,
    get_linear_refined_schedule,
    load_grad_norms,
    refine_schedule,
)
from hf_lrschedule.cli import main
from hf_lrschedule.readers.tensorboard import load_tensorboard


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two real Trainer runs reporting to TensorBoard: every step (+ recorder, trainer_state.json), every 2nd step."""
    from tiny import tiny_trainer

    base = tmp_path_factory.mktemp("tensorboard")
    every_step = tiny_trainer(
        base / "every_step", max_steps=8, logging_steps=1, report_to="tensorboard", lr_scheduler_type="linear"
    )
    GradNormRecorderCallback().attach(every_step)
    every_step.train()
    every_step.save_state()
    every_2nd = tiny_trainer(
        base / "every_2nd", max_steps=8, logging_steps=2, report_to="tensorboard", lr_scheduler_type="linear"
    )
    every_2nd.train()
    return base


def grad_norm_entries(log_history):
    return [(e["step"], e["grad_norm"]) for e in log_history if "grad_norm" in e]


def events_only(runs, name, tmp_path):
    """A copy of a run's output_dir with its event files only (no recorder file, no trainer_state.json)."""
    copy = tmp_path / name
    shutil.copytree(runs / name, copy, ignore=shutil.ignore_patterns("grad_norms.json", "trainer_state.json"))
    return copy


def test_trainer_run_dir_with_events_only_gives_the_trainer_state_norms(runs, tmp_path):
    state = json.loads((runs / "every_step" / "trainer_state.json").read_text())
    expected = grad_norm_entries(state["log_history"])
    log = load_grad_norms(events_only(runs, "every_step", tmp_path))
    assert log.kind == "TensorBoard" and log.source.rsplit("/", 1)[-1].startswith("events.out.tfevents.")
    assert log.meta["tag"] == "train/grad_norm"
    assert log.meta["num_training_steps"] == 8 and log.meta["logging_steps"] == 1
    # TensorBoard stores float32, and the Trainer's norms are float32 values: equal, not just close
    assert list(zip(log.steps.tolist(), log.l2.tolist())) == expected and len(expected) == 8
    assert log.l1 is None and log.positions() is None
    recorded = load_grad_norms(runs / "every_step" / "grad_norms.json")
    assert log.l2.tolist() == pytest.approx(recorded.l2.tolist(), rel=1e-6)


def test_logging_every_2nd_step_gives_steps_and_positions(runs, tmp_path):
    log = load_grad_norms(runs / "every_2nd")
    assert log.kind == "TensorBoard" and log.steps.tolist() == [2, 4, 6, 8]
    assert log.positions().tolist() == [0.0, 0.25, 0.5, 0.75]
    assert "4 gradient norms, steps 2-8 every 2, from a run of 8 steps" in log.describe()
    # the event file on its own reads the same
    (event_file,) = (runs / "every_2nd").rglob("events.out.tfevents.*")
    assert load_grad_norms(event_file).l2.tolist() == log.l2.tolist()


def test_directory_order_recorder_then_trainer_state_then_events(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs / "every_step", run)
    assert load_grad_norms(run).source == str(run / "grad_norms.json")
    (run / "grad_norms.json").unlink()
    assert load_grad_norms(run).source == str(run / "trainer_state.json")
    for step in (8, 10):  # the newest checkpoint by number, not by name
        (run / f"checkpoint-{step}").mkdir()
        shutil.copy(run / "trainer_state.json", run / f"checkpoint-{step}")
    (run / "trainer_state.json").unlink()
    assert load_grad_norms(run).source == str(run / "checkpoint-10" / "trainer_state.json")
    shutil.rmtree(run / "checkpoint-8"), shutil.rmtree(run / "checkpoint-10")
    assert load_grad_norms(run).kind == "TensorBoard"


def test_cli_refines_a_run_dir_in_one_command(runs, tmp_path, capsys):
    run = events_only(runs, "every_step", tmp_path)
    out = tmp_path / "schedule.json"
    assert main(["refine", str(run), "-o", str(out)]) == 0  # --steps: the run's own 8
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"source: {run}/runs/") and printed[0].endswith(
        "(TensorBoard): 8 gradient norms, steps 1-8, from a run of 8 steps"
    )
    assert printed[1] == "steps: 8"
    data = json.loads(out.read_text())
    assert data["num_training_steps"] == 8 and "events.out.tfevents." in data["source"]

    assert main(["refine", str(runs / "every_step"), "--steps", "16", "-o", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == (
        f"source: {runs / 'every_step' / 'grad_norms.json'} (recorder file): 8 gradient norms, steps 1-8, "
        "from a run of 8 steps"
    )
    assert printed[1] == "steps: 16"


def test_linear_refined_takes_a_run_dir(runs, tmp_path):
    run = events_only(runs, "every_2nd", tmp_path)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = get_linear_refined_schedule(optimizer, 0, 8, grad_norms=str(run), smoothing=0.0).lr_lambdas[0]
    log = load_grad_norms(run)
    expected = refine_schedule(log.l2, 8, positions=log.positions(), smoothing=0.0)  # placed by step
    assert [schedule(t) for t in range(8)] == pytest.approx(expected.tolist(), rel=1e-12)


# ---- synthetic event files, written by the writer the Trainer uses ----


def write_run(directory, values, *, start=1, tag="train/grad_norm"):
    with SummaryWriter(log_dir=str(directory)) as writer:
        for step, value in enumerate(values, start=start):
            writer.add_scalar(tag, value, step)
            writer.add_scalar("train/loss", 1.0, step)


def test_empty_directory(tmp_path):
    with pytest.raises(GradNormSourceError, match="holds no gradient norms: looked for grad_norms.json"):
        load_grad_norms(tmp_path)
    with pytest.raises(GradNormSourceError, match="holds no TensorBoard event files"):
        load_tensorboard(tmp_path)


def test_events_without_grad_norm_list_the_tags(tmp_path):
    write_run(tmp_path / "runs" / "a", [1.0, 2.0], tag="train/learning_rate")
    with pytest.raises(
        GradNormSourceError, match=r"scalar tags found: train/learning_rate, train/loss\. .*logging_steps=1"
    ):
        load_grad_norms(tmp_path)


def test_nan_inf_and_zero_pass_through_to_refinement(tmp_path):
    write_run(tmp_path, [2.0, float("nan"), 0.0, 1.0, 1.0])
    log = load_grad_norms(tmp_path)
    assert log.steps.tolist() == [1, 2, 3, 4, 5] and math.isnan(log.l2[1]) and log.l2[2] == 0.0
    with pytest.warns(RefinementWarning, match="dropped 2 of 5"):
        refine_schedule(log.l2, 10, smoothing=0.0)


def test_several_runs_use_the_newest_and_say_so(tmp_path):
    write_run(tmp_path / "runs" / "older", [5.0] * 10)
    write_run(tmp_path / "runs" / "newer", [1.0, 2.0, 3.0])
    with pytest.warns(RefinementWarning, match=r"2 TensorBoard runs .*using the newest, .*newer \(steps 1-3\)"):
        log = load_grad_norms(tmp_path)
    assert log.l2.tolist() == [1.0, 2.0, 3.0] and log.meta["runs"] == [str(tmp_path / "runs" / "newer")]
    assert log.source.startswith(str(tmp_path / "runs" / "newer" / "events.out.tfevents."))


def test_a_resumed_run_continues_the_one_it_resumed(tmp_path):
    write_run(tmp_path / "runs" / "first", [4.0, 3.0, 2.0, 1.0, 9.0, 9.0])  # logged past the checkpoint at step 4
    write_run(tmp_path / "runs" / "resumed", [1.5, 1.5, 1.5], start=5)
    with pytest.warns(RefinementWarning, match=r"resumed \(steps 5-7\), resumed from .*first \(steps 1-4\)"):
        log = load_grad_norms(tmp_path)
    assert log.steps.tolist() == list(range(1, 8)) and log.l2.tolist() == [4.0, 3.0, 2.0, 1.0, 1.5, 1.5, 1.5]
    assert log.source == str(tmp_path) and len(log.meta["runs"]) == 2


def test_without_tensorboard_installed(tmp_path, monkeypatch):
    write_run(tmp_path, [1.0, 2.0])
    for name in [n for n in sys.modules if n == "tensorboard" or n.startswith("tensorboard.")]:
        monkeypatch.setitem(sys.modules, name, None)  # None: `import` raises ImportError
    message = r'needs the tensorboard package.*pip install "hf_lrschedule\[tensorboard\]"'
    with pytest.raises(GradNormSourceError, match=message):
        load_grad_norms(tmp_path)
