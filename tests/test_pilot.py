import json
import logging
import shutil
import sys

import numpy as np
import pytest
import torch
from conftest import TESTS, subprocess_env
from tiny import tiny_trainer

from hf_lrschedule import OptionConflictError, PilotOptions, RefineOptions, run_pilot
from hf_lrschedule.cli import main
from hf_lrschedule.pilot.runner import pilot_profile
from hf_lrschedule.readers import load_grad_norms
from hf_lrschedule.refine import refinement_details

BASE_LR = 0.01


@pytest.fixture(autouse=True)
def child_pythonpath(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", subprocess_env()["PYTHONPATH"])


def stock_command(tmp_path, *extra, steps=40, scheduler="linear_refined"):
    return [
        sys.executable, str(TESTS / "scripts" / "stock_train.py"),
        "--output_dir", str(tmp_path / "out"), "--max_steps", str(steps), "--per_device_train_batch_size", "4",
        "--learning_rate", str(BASE_LR), "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true",
        "--save_strategy", "no", "--lr_scheduler_type", scheduler, "--result_file", str(tmp_path / "result.json"), *extra,
    ]


def schedule_of(pilot_dir):
    return json.loads((pilot_dir / "schedule.json").read_text())["multipliers"]


def test_pilot_then_full_run_uses_the_schedule_file_at_every_step(tmp_path, capfd):
    # capfd: the children write to the same file descriptor, a pipe here, not a TTY
    pilot_dir = tmp_path / "pilot"
    assert main(["pilot", "--fraction", "0.25", "--out", str(pilot_dir), "--", *stock_command(tmp_path)]) == 0
    multipliers = schedule_of(pilot_dir)
    assert len(multipliers) == 41
    lrs = json.loads((tmp_path / "result.json").read_text())["lrs"]
    assert [lrs[str(s)] for s in range(1, 41)] == pytest.approx([BASE_LR * m for m in multipliers[:40]], rel=1e-12)
    manifest = json.loads((pilot_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["pilot_steps"] == 10 and manifest["num_training_steps"] == 40
    assert manifest["command"][-1].endswith("result.json") and "torch" in manifest["versions"]
    norms = json.loads((pilot_dir / "grad_norms.json").read_text())
    assert norms["steps"] == list(range(1, 11)) and norms["meta"]["pilot"] is True
    printed = capfd.readouterr().out
    assert "pilot: 10 of 40 steps" in printed and "refined peak at" in printed and "schedule.png" in printed
    assert "[hf-lrschedule] pilot: step 5/10, " in printed and "[hf-lrschedule] pilot: step 10/10, " in printed
    assert "s elapsed, ETA " in printed
    assert "  against linear: " in printed and "mean LR multiplier" in printed and "vs 0.50 for linear" in printed
    # the summary ends with the pilot's diagnosis; 10 steps are too few to judge the loss, and nothing needs action
    health = printed[printed.index("health of the pilot's steps"):]
    assert "loss: n/a (10 logged losses in the pilot's 10 steps (need 20): too short a pilot" in health
    assert "end: n/a (not judged: the pilot stopped after 10 of 40 steps" in health
    assert "needs action" not in printed

    # the same command again: the pilot is reused; --force redoes it
    created = manifest["created"]
    assert main(["pilot", "--fraction", "0.25", "--out", str(pilot_dir), "--pilot-only", "--", *stock_command(tmp_path)]) == 0
    assert "reusing the pilot" in capfd.readouterr().out
    assert json.loads((pilot_dir / "manifest.json").read_text())["created"] == created
    (pilot_dir / "schedule.json").write_text("{}")  # a tampered file is not trusted
    assert main(["pilot", "--fraction", "0.25", "--out", str(pilot_dir), "--pilot-only", "--", *stock_command(tmp_path)]) == 0
    assert "reusing" not in capfd.readouterr().out and len(schedule_of(pilot_dir)) == 41


def test_pilot_writes_nothing_into_the_users_output_dir(tmp_path):
    pilot_dir = tmp_path / "pilot"
    assert main(["pilot", "--fraction", "0.25", "--out", str(pilot_dir), "--pilot-only", "--", *stock_command(tmp_path)]) == 0
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "result.json").exists()  # the script's post-training steps did not run


def test_fraction_too_small_names_the_smallest_workable_one(tmp_path, capsys):
    pilot_dir = tmp_path / "pilot"
    assert main(["pilot", "--fraction", "0.05", "--out", str(pilot_dir), "--", *stock_command(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "gives a pilot of 2 optimizer steps for a run of 40" in err and "use --fraction 0.25 or more" in err
    assert not (pilot_dir / "manifest.json").exists() and not (pilot_dir / "schedule.json").exists()


def test_command_without_linear_refined_is_a_clear_error(tmp_path, capsys):
    pilot_dir = tmp_path / "pilot"
    assert main(["pilot", "--fraction", "0.25", "--out", str(pilot_dir), "--", *stock_command(tmp_path, scheduler="linear")]) == 1
    assert "did not build a linear_refined scheduler" in capsys.readouterr().err
    assert not (pilot_dir / "manifest.json").exists()


def test_crashed_pilot_leaves_nothing_trusted_and_the_full_phase_does_not_start(tmp_path, capsys):
    pilot_dir = tmp_path / "pilot"
    command = stock_command(tmp_path, "--crash_at_step", "5")
    assert main(["pilot", "--fraction", "0.25", "--out", str(pilot_dir), "--", *command]) == 1
    assert "pilot phase (0.25 of the run) failed" in capsys.readouterr().err
    for name in ("manifest.json", "schedule.json", "grad_norms.json"):
        assert not (pilot_dir / name).exists()
    assert not (tmp_path / "result.json").exists()


def test_lora_pilot(tmp_path):
    pilot_dir = tmp_path / "pilot"
    assert main(["pilot", "--fraction", "0.25", "--out", str(pilot_dir), "--", *stock_command(tmp_path, "--lora", "true")]) == 0
    lrs = json.loads((tmp_path / "result.json").read_text())["lrs"]
    assert [lrs[str(s)] for s in range(1, 41)] == pytest.approx([BASE_LR * m for m in schedule_of(pilot_dir)[:40]], rel=1e-12)
    norms = json.loads((pilot_dir / "grad_norms.json").read_text())
    assert max(norms["l2"]) < 0.5 and norms["meta"]["optimizer_family"] == "adam"  # adapter weights only


@pytest.mark.parametrize("processes", [1, 2])
def test_accelerate_loop_pilot(tmp_path, processes):
    script = [str(TESTS / "scripts" / "refined_run_loop.py"), str(tmp_path / "loop"), "--steps", "40"]
    if processes == 1:
        command = [sys.executable, *script]
    else:
        launcher = shutil.which("accelerate") or pytest.skip("accelerate launcher not on PATH")
        command = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no", *script]
    pilot_dir = tmp_path / "pilot"
    assert main(["pilot", "--fraction", "0.25", "--out", str(pilot_dir), "--", *command]) == 0
    multipliers = schedule_of(pilot_dir)
    norms = json.loads((pilot_dir / "grad_norms.json").read_text())
    assert norms["steps"] == list(range(1, 11)) and norms["meta"]["world_size"] == processes
    for rank in range(processes):
        result = json.loads((tmp_path / f"loop.rank{rank}.json").read_text())
        assert result["lrs"] == pytest.approx([BASE_LR * m for m in multipliers[:40]], rel=1e-12)
    assert [p.name for p in pilot_dir.iterdir() if p.name.startswith("grad_norms")] == ["grad_norms.json"]


def test_in_process_pilot_restores_model_and_data_order(tmp_path):
    def make(out):
        return tiny_trainer(
            out, max_steps=40, per_device_train_batch_size=4, learning_rate=BASE_LR, logging_steps=1,
            lr_scheduler_type="linear",
        )

    plain = make(tmp_path / "plain")
    plain.train()
    trainer = make(tmp_path / "refined")
    args = trainer.args
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    schedule = run_pilot(trainer, fraction=0.25, out=tmp_path / "pilot")
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert trainer.args.output_dir == str(tmp_path / "refined")
    assert trainer.args is args and args.lr_scheduler_kwargs == {"schedule": str(schedule)}  # the caller's object
    trainer.train()
    first = lambda t: next(e["loss"] for e in t.state.log_history if e.get("step") == 1)
    assert first(trainer) == first(plain)  # same weights and same first batch as without the pilot
    multipliers = json.loads(schedule.read_text())["multipliers"]
    lrs = {e["step"]: e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e}
    assert [lrs[s] for s in range(1, 41)] == pytest.approx([BASE_LR * m for m in multipliers[:40]], rel=1e-12)


def test_the_profile_holds_the_pilots_late_level():
    values = np.array([5.0, 3.0, 2.0, 1.0, 1.0, 1.2, 0.8, 1.0])
    profile, positions = pilot_profile(values, np.arange(1, 9), 80)
    assert positions[:8].tolist() == [s / 80 for s in range(8)] and positions[-2:].tolist() == [0.1, 1.0]
    assert profile[-1] == profile[-2] == 0.9  # median of the last quarter (0.8, 1.0)
    assert profile[:8].tolist() == values.tolist()


def test_pilot_steps_rule():
    assert PilotOptions(fraction=0.1).pilot_steps(1000) == 100
    with pytest.raises(RuntimeError, match="use --fraction 0.1 or more"):
        PilotOptions(fraction=0.01).pilot_steps(100)
    with pytest.raises(RuntimeError, match=r"--fraction must be a number in \(0, 1\], got 1.5"):
        PilotOptions(fraction=1.5)


def test_a_pilot_inside_the_warmup_warns(tmp_path, caplog):
    trainer = tiny_trainer(tmp_path / "run", max_steps=40, per_device_train_batch_size=2, learning_rate=BASE_LR,
                           warmup_steps=12, lr_scheduler_type="linear")
    with caplog.at_level(logging.WARNING, logger="hf_lrschedule"):
        run_pilot(trainer, fraction=0.25, out=tmp_path / "pilot")  # 10 pilot steps, 12 warmup steps
    assert any("ends inside the warmup (12 steps)" in r.getMessage() for r in caplog.records)
    caplog.clear()
    trainer = tiny_trainer(tmp_path / "run2", max_steps=40, per_device_train_batch_size=2, learning_rate=BASE_LR,
                           warmup_steps=4, lr_scheduler_type="linear")
    with caplog.at_level(logging.WARNING, logger="hf_lrschedule"):
        run_pilot(trainer, fraction=0.25, out=tmp_path / "pilot2")
    assert not any("inside the warmup" in r.getMessage() for r in caplog.records)


# Every refinement option at a value other than its default, and a floor: the user's lr_scheduler_kwargs.
USER_KWARGS = {"norm": "l1", "smoothing": 0.05, "guard": "clip", "max_norm_ratio": 3.0, "tolerance": 1.0,
               "min_lr_ratio": 0.5}
REFINE_KWARGS = {k: v for k, v in USER_KWARGS.items() if k != "min_lr_ratio"}


def expected_lrs(pilot_dir, steps):
    """The full run's LRs from the pilot's own norms, refined with the user's options, floored at min_lr_ratio."""
    log = load_grad_norms(pilot_dir / "grad_norms.json")
    profile, positions = pilot_profile(log.series("l1"), log.steps, steps)
    table = refinement_details(profile, steps, RefineOptions(**REFINE_KWARGS), positions=positions).multipliers
    floor = USER_KWARGS["min_lr_ratio"]
    return [BASE_LR * (floor + (1 - floor) * m) for m in table[:steps]]


def test_cli_pilot_honours_every_kwarg_of_the_command(tmp_path):
    pilot_dir = tmp_path / "pilot"
    command = stock_command(tmp_path, "--lr_scheduler_kwargs", json.dumps(USER_KWARGS))
    assert main(["pilot", "--fraction", "0.25", "--out", str(pilot_dir), "--", *command]) == 0
    schedule = json.loads((pilot_dir / "schedule.json").read_text())
    assert schedule["settings"] == REFINE_KWARGS
    assert json.loads((pilot_dir / "manifest.json").read_text())["refine"] == REFINE_KWARGS
    lrs = json.loads((tmp_path / "result.json").read_text())["lrs"]
    assert [lrs[str(s)] for s in range(1, 41)] == pytest.approx(expected_lrs(pilot_dir, 40), rel=1e-12)
    assert min(lrs.values()) >= BASE_LR * 0.5  # the floor holds in the full run


def test_cli_flag_and_command_kwarg_merge_and_conflict(tmp_path, capsys):
    pilot_dir = tmp_path / "pilot"
    command = stock_command(tmp_path, "--lr_scheduler_kwargs", json.dumps({"tolerance": 1.0}))
    # a flag for another option adds to the kwargs; the same value twice is no conflict
    argv = ["pilot", "--fraction", "0.25", "--out", str(pilot_dir), "--pilot-only", "--smoothing", "0.05",
            "--tolerance", "1", "--", *command]
    assert main(argv) == 0
    settings = json.loads((pilot_dir / "schedule.json").read_text())["settings"]
    assert settings == {**RefineOptions().to_dict(), "smoothing": 0.05, "tolerance": 1.0}
    capsys.readouterr()
    argv = ["pilot", "--fraction", "0.25", "--out", str(pilot_dir), "--pilot-only", "--tolerance", "1.5", "--", *command]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "'tolerance' is given twice with different values: 1.5 (hf-lrschedule pilot's flags) and 1.0 (the run's " \
        "lr_scheduler_kwargs)" in err
    assert not (pilot_dir / "manifest.json").exists() and not (pilot_dir / "grad_norms.json").exists()


def kwargs_trainer(out, **kwargs):
    return tiny_trainer(
        out, max_steps=40, per_device_train_batch_size=4, learning_rate=BASE_LR, logging_steps=1,
        lr_scheduler_type="linear_refined", lr_scheduler_kwargs=dict(kwargs),
    )


def test_run_pilot_honours_every_kwarg_of_the_trainer(tmp_path):
    trainer = kwargs_trainer(tmp_path / "run", **USER_KWARGS)
    schedule = run_pilot(trainer, fraction=0.25, out=tmp_path / "pilot")
    assert trainer.args.lr_scheduler_kwargs == {**USER_KWARGS, "schedule": str(schedule)}
    assert json.loads(schedule.read_text())["settings"] == REFINE_KWARGS
    trainer.train()
    lrs = {e["step"]: e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e}
    assert [lrs[s] for s in range(1, 41)] == pytest.approx(expected_lrs(tmp_path / "pilot", 40), rel=1e-12)


def test_run_pilot_keyword_and_trainer_kwarg_merge_and_conflict(tmp_path):
    trainer = kwargs_trainer(tmp_path / "run", tolerance=1.0)
    schedule = run_pilot(trainer, fraction=0.25, out=tmp_path / "pilot", smoothing=0.05, tolerance=1.0)
    assert json.loads(schedule.read_text())["settings"]["smoothing"] == 0.05
    trainer = kwargs_trainer(tmp_path / "run2", tolerance=1.0)
    with pytest.raises(OptionConflictError, match=r"given twice with different values: 1.5 \(run_pilot's options\) "
                       r"and 1.0 \(the run's lr_scheduler_kwargs\)"):
        run_pilot(trainer, fraction=0.25, out=tmp_path / "pilot2", tolerance=1.5)
    assert trainer.args.lr_scheduler_kwargs == {"tolerance": 1.0}  # the caller's arguments are left as they were


def test_phase_kwargs_keep_every_key_but_the_source(tmp_path, caplog):
    from hf_lrschedule.formats import RECORDER_FILE
    from hf_lrschedule.pilot.phase import phase_kwargs
    from hf_lrschedule.pilot.protocol import NORMS_FILE, Phase

    assert NORMS_FILE == RECORDER_FILE
    user = {"grad_norms": "old.json", "min_lr_ratio": 0.1, "tolerance": 1.5}
    assert phase_kwargs(Phase(), user) == user
    assert phase_kwargs(Phase("pilot", tmp_path), user) == {"min_lr_ratio": 0.1, "tolerance": 1.5}
    with caplog.at_level(logging.WARNING, logger="hf_lrschedule"):
        full = phase_kwargs(Phase("full", tmp_path), user)
    assert full == {"min_lr_ratio": 0.1, "tolerance": 1.5, "schedule": str(tmp_path / "schedule.json")}
    assert any("the pilot's schedule replaces the grad_norms given" in r.getMessage() for r in caplog.records)
    assert user["grad_norms"] == "old.json"  # the caller's dict is not changed
    # a reused pilot whose schedule was refined with other options than the run now asks for: an error, not a mix
    (tmp_path / "schedule.json").write_text(json.dumps({"settings": RefineOptions().to_dict()}))
    with pytest.raises(OptionConflictError, match=r"'tolerance' is given twice with different values: 2.0 \(the "
                       r"pilot's schedule \(rerun the pilot with --force\)\) and 1.5"):
        phase_kwargs(Phase("full", tmp_path), user)
    assert "rerun the pilot with --force" in json.loads((tmp_path / "pilot_error.json").read_text())["message"]
    with pytest.raises(ValueError, match="HF_LRSCHEDULE_PHASE=pilot needs HF_LRSCHEDULE_PILOT_DIR"):
        Phase.from_env({"HF_LRSCHEDULE_PHASE": "pilot"})
    with pytest.raises(ValueError, match="must be 'pilot' or 'full'"):
        Phase.from_env({"HF_LRSCHEDULE_PHASE": "both", "HF_LRSCHEDULE_PILOT_DIR": "x"})


def test_run_pilot_rejects_bad_settings_before_touching_the_trainer(tmp_path):
    trainer = kwargs_trainer(tmp_path / "run", tolerance=1.0)
    args = trainer.args
    with pytest.raises(RuntimeError, match="--fraction must be a number in"):
        run_pilot(trainer, fraction=0.0, out=tmp_path / "pilot")
    with pytest.raises(ValueError, match="tolerance must be a finite number >= 1"):
        run_pilot(trainer, tolerance=0.5, out=tmp_path / "pilot")
    assert trainer.args is args and args.lr_scheduler_kwargs == {"tolerance": 1.0}
    assert args.lr_scheduler_type == "linear_refined"


def test_cli_pilot_rejects_a_bad_flag_before_running_the_command(tmp_path, capsys):
    pilot_dir = tmp_path / "pilot"
    assert main(["pilot", "--out", str(pilot_dir), "--tolerance", "0.5", "--", *stock_command(tmp_path)]) == 1
    assert "tolerance must be a finite number >= 1, got 0.5" in capsys.readouterr().err
    assert not pilot_dir.exists()


def test_l1_from_the_kwargs_records_l1_norms_with_sgd(tmp_path):
    trainer = tiny_trainer(
        tmp_path / "run", max_steps=40, per_device_train_batch_size=4, learning_rate=BASE_LR, logging_steps=1,
        lr_scheduler_type="linear_refined", lr_scheduler_kwargs={"norm": "l1"}, optim="sgd",
    )
    schedule = run_pilot(trainer, fraction=0.25, out=tmp_path / "pilot")
    norms = json.loads((tmp_path / "pilot" / "grad_norms.json").read_text())
    assert norms["meta"]["optimizer_family"] == "sgd" and len(norms["l1"]) == 10 and None not in norms["l1"]
    assert json.loads(schedule.read_text())["settings"]["norm"] == "l1"


# --------------------------------------------------------------------------------------------------------------- #
# The pilot's health diagnosis (hf_lrschedule.health.diagnose_pilot)
# --------------------------------------------------------------------------------------------------------------- #


def test_an_act_sign_of_the_pilot_shows_before_the_full_run(tmp_path, capfd):
    from hf_lrschedule.refine import describe_schedule

    pilot_dir = tmp_path / "pilot"
    # 30 pilot steps of 100; the logits x 300 at update 25: a loss spike and a norm explosion at step 25
    command = stock_command(tmp_path, "--fault_at_step", "25", steps=100)
    assert main(["pilot", "--fraction", "0.3", "--out", str(pilot_dir), "--", *command]) == 0
    printed = capfd.readouterr().out
    action = printed.index("[hf-lrschedule] the pilot's health needs action before the full run starts")
    assert action < printed.index("[hf-lrschedule] full phase (refined schedule)")
    warned = printed[action:printed.index("[hf-lrschedule] full phase")]
    assert "loss: act (spikes " in warned and "step 25" in warned and "grad_norm: act (explosion " in warned
    health = printed[printed.index("health of the pilot's steps"):]  # the summary, after the full run, ends with it
    assert "verdict: act" in health and "Loss spikes at step 25" in health
    # what the full run's schedule will be, and why: the schedule file it ran with is linear decay, and the diagnosis
    # says so with the norms' ratio to the band
    assert describe_schedule(schedule_of(pilot_dir)).startswith("no warmup, linear decay;")
    assert "Refinement of these norms gives linear decay: the smoothed norms stay within" in health
    assert "(from the pilot's 30 steps, 30 % of the run;" in health
    assert json.loads((tmp_path / "result.json").read_text())["lrs"]  # the full run went ahead


def test_run_pilot_warns_of_an_act_sign_before_the_full_run(tmp_path, caplog):
    from test_health import LogitFault

    trainer = tiny_trainer(tmp_path / "run", max_steps=100, per_device_train_batch_size=4, learning_rate=BASE_LR,
                           logging_steps=1, lr_scheduler_type="linear_refined")
    LogitFault(trainer, {25: 300.0})
    with caplog.at_level(logging.INFO, logger="hf_lrschedule"):
        run_pilot(trainer, fraction=0.3, out=tmp_path / "pilot")
    (record,) = [r for r in caplog.records if r.getMessage().startswith("pilot health (before the full run)")]
    assert record.levelno == logging.WARNING
    assert "loss: act (spikes " in record.getMessage() and "step 25" in record.getMessage()


def test_a_failed_diagnosis_is_a_warning_not_a_failed_pilot(tmp_path):
    from hf_lrschedule.pilot.runner import pilot_health, summary_text

    (tmp_path / "grad_norms.json").write_text("{}")
    with pytest.warns(RuntimeWarning, match="the pilot's health diagnosis failed .* the pilot and its schedule are "
                      "unaffected"):
        assert pilot_health(tmp_path, RefineOptions()) is None
    result = {"pilot_steps": 10, "num_training_steps": 40, "fraction": 0.25, "pilot_seconds": 1.0,
              "peak_fraction": 0.0, "schedule": "s.json", "health": None}
    assert "health" not in summary_text(result)
