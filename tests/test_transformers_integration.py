import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TESTS, subprocess_env
from refine_reference import refine_schedule_reference
from tiny import tiny_trainer
from transformers import HfArgumentParser, TrainingArguments, get_scheduler
from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION
from transformers.trainer_utils import SchedulerType

import hf_lrschedule
from hf_lrschedule import GradNormRecorder, get_linear_refined_schedule

NORMS = [3.0, 2.5, 1.0, 0.9, 1.1, 1.0, 1.2, 1.4, 1.3, 1.5, 1.6, 1.8]  # an early spike, then rising norms


def expected_multipliers(norms, T, **kwargs):
    """Independent expectation: the reference implementation (loops, no scipy), + 0 at the end."""
    return refine_schedule_reference(list(norms), T, **kwargs) + [0.0]


def write_norms(path, norms):
    recorder = GradNormRecorder(path, meta={"optimizer": "AdamW", "optimizer_family": "adam"})
    for step, value in enumerate(norms, start=1):
        recorder.record(step, value)
    recorder.save()
    return str(path)


TRAINER_SETTINGS = dict(
    max_steps=12, per_device_train_batch_size=4, learning_rate=1e-2, logging_steps=1,
    lr_scheduler_type="linear_refined", data_seed=0,
)


def make_trainer(tmp_path, **overrides):
    return tiny_trainer(tmp_path / "out", **{**TRAINER_SETTINGS, **overrides})


def logged_lrs(trainer):
    """LR used by each optimizer update s = 1..T (the Trainer logs it before stepping the scheduler)."""
    return {e["step"]: e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e}


def test_registration_is_in_place_and_idempotent():
    member = SchedulerType("linear_refined")
    assert member is SchedulerType.LINEAR_REFINED and member.value == "linear_refined"
    assert TYPE_TO_SCHEDULER_FUNCTION[member] is get_linear_refined_schedule
    count = len(SchedulerType)
    hf_lrschedule.register()
    hf_lrschedule.register()
    assert len(SchedulerType) == count and list(SchedulerType)[-1] is member


def test_training_arguments_and_argparser_accept_it(tmp_path):
    args = TrainingArguments(
        output_dir=str(tmp_path), lr_scheduler_type="linear_refined", lr_scheduler_kwargs='{"smoothing": "0.05"}'
    )
    assert args.lr_scheduler_type is SchedulerType.LINEAR_REFINED
    assert args.lr_scheduler_kwargs == {"smoothing": 0.05}
    parser = HfArgumentParser(TrainingArguments)
    (parsed,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--lr_scheduler_type", "linear_refined", "--lr_scheduler_kwargs", '{"norm": "l1"}']
    )
    assert parsed.lr_scheduler_type is SchedulerType.LINEAR_REFINED and parsed.lr_scheduler_kwargs == {"norm": "l1"}
    assert pickle.loads(pickle.dumps(parsed)).lr_scheduler_type is SchedulerType.LINEAR_REFINED


def test_get_scheduler_param_groups_keep_their_base_lrs(tmp_path):
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.1}])
    sched = get_scheduler(
        "linear_refined", opt, num_warmup_steps=0, num_training_steps=12,
        scheduler_specific_kwargs={"grad_norms": NORMS, "smoothing": 0.0, "guard": "none"},
    )
    expected = expected_multipliers(NORMS, 12, smoothing=0.0, guard="none")
    seen = []
    for _ in range(14):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert [s[0] for s in seen[:13]] == pytest.approx(expected, rel=1e-12)
    assert [s[1] for s in seen[:13]] == pytest.approx([0.1 * m for m in expected], rel=1e-12)
    assert seen[13] == [0.0, 0.0]  # clamped past the end


def test_no_grad_norms_is_transformers_linear(caplog):
    p = torch.nn.Parameter(torch.zeros(1))
    ours = get_scheduler("linear_refined", torch.optim.SGD([p], lr=1.0), num_warmup_steps=2, num_training_steps=9)
    theirs = get_scheduler("linear", torch.optim.SGD([p], lr=1.0), num_warmup_steps=2, num_training_steps=9)
    assert [ours.lr_lambdas[0](t) for t in range(12)] == [theirs.lr_lambdas[0](t) for t in range(12)]


def test_unknown_kwarg_lists_valid_keys():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match=r"unknown lr_scheduler_kwargs for linear_refined: 'smothing'; valid keys: .*smoothing"):
        get_scheduler("linear_refined", opt, num_warmup_steps=0, num_training_steps=5, scheduler_specific_kwargs={"smothing": 0.1})


def test_scheduler_state_travels_in_scheduler_pt_without_the_norms_file(tmp_path):
    norms_file = write_norms(tmp_path / "norms.json", NORMS)
    kwargs = {"grad_norms": norms_file, "smoothing": 0.0, "guard": "none"}
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_linear_refined_schedule(opt, 0, 12, **kwargs)
    for _ in range(5):
        opt.step()
        sched.step()
    torch.save(sched.state_dict(), tmp_path / "scheduler.pt")
    torch.save(opt.state_dict(), tmp_path / "optimizer.pt")
    Path(norms_file).unlink()
    opt2 = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    resumed = get_linear_refined_schedule(opt2, 0, 12, **kwargs)  # the file is gone: resolved lazily
    opt2.load_state_dict(torch.load(tmp_path / "optimizer.pt", weights_only=True))
    resumed.load_state_dict(torch.load(tmp_path / "scheduler.pt", weights_only=True))  # plain data only
    expected = expected_multipliers(NORMS, 12, smoothing=0.0, guard="none")
    got = []
    for _ in range(7):
        got.append(opt2.param_groups[0]["lr"])
        opt2.step()
        resumed.step()
    assert got == pytest.approx(expected[5:12], rel=1e-12)


def test_missing_norms_file_fails_at_the_first_step_without_resume(tmp_path):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_linear_refined_schedule(opt, 0, 10, grad_norms=str(tmp_path / "nope.json"))
    assert opt.param_groups[0]["lr"] == 0.0
    opt.step()
    with pytest.raises(FileNotFoundError, match="nope.json.*does not exist"):
        sched.step()


def test_lambda_pickles():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    fn = get_linear_refined_schedule(opt, 1, 12, grad_norms=NORMS).lr_lambdas[0]
    again = pickle.loads(pickle.dumps(fn))
    assert [again(t) for t in range(14)] == [fn(t) for t in range(14)]


def test_trainer_lr_at_every_step_equals_schedule_times_base_lr(tmp_path):
    norms_file = write_norms(tmp_path / "norms.json", NORMS)
    trainer = make_trainer(tmp_path, lr_scheduler_kwargs={"grad_norms": norms_file, "smoothing": 0.0, "guard": "none"})
    trainer.train()
    expected = expected_multipliers(NORMS, 12, smoothing=0.0, guard="none")
    lrs = logged_lrs(trainer)
    assert sorted(lrs) == list(range(1, 13))
    assert [lrs[s] for s in range(1, 13)] == pytest.approx([1e-2 * m for m in expected[:12]], rel=1e-12)


def test_trainer_resume_gives_the_same_lr_sequence(tmp_path):
    norms_file = write_norms(tmp_path / "norms.json", NORMS)
    kwargs = {"grad_norms": norms_file, "smoothing": 0.2}
    straight = make_trainer(tmp_path / "a", lr_scheduler_kwargs=kwargs)
    straight.train()

    checkpointed = dict(lr_scheduler_kwargs=kwargs, save_strategy="steps", save_steps=5)
    make_trainer(tmp_path / "b", **checkpointed).train()
    Path(norms_file).unlink()  # a resume must not need the source any more
    resumed = make_trainer(tmp_path / "b", **checkpointed)
    resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "out" / "checkpoint-5"))
    a, b = logged_lrs(straight), logged_lrs(resumed)
    assert [b[s] for s in range(6, 13)] == [a[s] for s in range(6, 13)]  # bit-identical


def _run_stock_script(tmp_path, *extra, env=None, resume=""):
    result = tmp_path / "result.json"
    cmd = [
        sys.executable, str(TESTS / "scripts" / "stock_train.py"),
        "--output_dir", str(tmp_path / "out"), "--max_steps", "8", "--per_device_train_batch_size", "4",
        "--learning_rate", "0.01", "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true",
        "--lr_scheduler_type", "linear_refined", "--result_file", str(result), "--resume", resume, *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(**(env or {})), timeout=300, check=False)
    return proc, (json.loads(result.read_text()) if result.exists() else None)


def test_stock_script_accepts_the_flag_without_importing_the_package(tmp_path):
    norms_file = write_norms(tmp_path / "norms.json", NORMS)
    proc, result = _run_stock_script(
        tmp_path, "--lr_scheduler_kwargs", json.dumps({"grad_norms": norms_file, "smoothing": 0.0, "guard": "none"}),
        "--save_strategy", "steps", "--save_steps", "4",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = expected_multipliers(NORMS, 8, smoothing=0.0, guard="none")
    assert [result["lrs"][str(s)] for s in range(1, 9)] == pytest.approx([1e-2 * m for m in expected[:8]], rel=1e-12)
    # training_args.bin (a pickle naming SchedulerType.LINEAR_REFINED) loads in a fresh process
    check = subprocess.run(
        [sys.executable, "-c", "import sys, torch; a = torch.load(sys.argv[1], weights_only=False); print(a.lr_scheduler_type.value)",
         str(tmp_path / "out" / "checkpoint-4" / "training_args.bin")],
        capture_output=True, text=True, env=subprocess_env(), timeout=120, check=False,
    )
    assert check.returncode == 0, check.stderr[-2000:]
    assert check.stdout.strip() == "linear_refined"


def test_stock_script_rejects_the_flag_when_the_hook_is_switched_off(tmp_path):
    proc, result = _run_stock_script(tmp_path, env={"HF_LRSCHEDULE_AUTOREGISTER": "0"})
    assert proc.returncode == 2 and result is None
    assert "invalid choice: 'linear_refined'" in proc.stderr


def test_trl_sft_config_and_yaml(tmp_path):
    from trl import SFTConfig, TrlParser

    config = SFTConfig(
        output_dir=str(tmp_path), bf16=False, lr_scheduler_type="linear_refined", lr_scheduler_kwargs={"norm": "l1"}
    )
    assert config.lr_scheduler_type is SchedulerType.LINEAR_REFINED
    yaml_file = tmp_path / "config.yaml"
    yaml_file.write_text(f"output_dir: {tmp_path}\nbf16: false\nlr_scheduler_type: linear_refined\nlr_scheduler_kwargs:\n  smoothing: 0.05\n")
    (parsed,) = TrlParser((SFTConfig,)).parse_args_and_config(["--config", str(yaml_file)])
    assert parsed.lr_scheduler_type is SchedulerType.LINEAR_REFINED and parsed.lr_scheduler_kwargs == {"smoothing": 0.05}


def test_refine_schedule_defaults_are_exactly_what_linear_refined_uses_by_default():
    # One code path: a spike of 3x, then norms wandering within the default tolerance band; the public
    # refine_schedule with no options and the scheduler with no options give the same multipliers, bit for bit.
    T = 60
    norms = [3.0] * 6 + [1.0 + 0.3 * ((k * 7) % 5 - 2) / 2 for k in range(54)]
    p = torch.nn.Parameter(torch.zeros(1))
    sched = get_scheduler(
        "linear_refined", torch.optim.SGD([p], lr=1.0), num_warmup_steps=0, num_training_steps=T,
        scheduler_specific_kwargs={"grad_norms": norms},
    )
    got = [sched.lr_lambdas[0](t) for t in range(T)]
    assert got == hf_lrschedule.refine_schedule(norms, T).tolist()
    assert got == pytest.approx(refine_schedule_reference(norms, T), rel=1e-12)  # the reference's defaults: 2.0 band
    assert got[0] < got[max(range(T), key=got.__getitem__)]  # the spike still gives a warmup
