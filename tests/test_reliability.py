"""Guarantees of the README's table: resume, crash safety of the pilot."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import TESTS, subprocess_env
from tiny import ByteLMDataset, tiny_llama
from transformers import Trainer, TrainerCallback, TrainingArguments

NORMS = [3.0, 2.5, 1.0, 0.9, 1.1, 1.0, 1.2, 1.4, 1.3, 1.5, 1.6, 1.8]


class StopInsideWindow(TrainerCallback):
    """Kills the run in the middle of an accumulation window of update `update`."""

    def __init__(self, update):
        self.update = update

    def on_substep_end(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.update:
            raise KeyboardInterrupt(f"stopped inside the accumulation window of update {self.update}")


def make(tmp_path, callbacks=()):
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=12, per_device_train_batch_size=2, gradient_accumulation_steps=2,
        learning_rate=1e-2, logging_steps=1, report_to="none", save_strategy="steps", save_steps=1, disable_tqdm=True,
        seed=0, lr_scheduler_type="linear_refined", lr_scheduler_kwargs={"grad_norms": NORMS},
    )
    return Trainer(model=tiny_llama(), args=args, train_dataset=ByteLMDataset(), callbacks=list(callbacks))


def lrs(trainer):
    return {e["step"]: e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    trainer = make(tmp_path_factory.mktemp("straight"))
    trainer.train()
    return lrs(trainer)


@pytest.mark.parametrize("checkpoint", [3, 10])
def test_resume_from_checkpoints_is_bit_identical(tmp_path, straight, checkpoint):
    make(tmp_path).train()
    resumed = make(tmp_path)
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / f"checkpoint-{checkpoint}"))
    got = lrs(resumed)
    assert [got[s] for s in range(checkpoint + 1, 13)] == [straight[s] for s in range(checkpoint + 1, 13)]


def test_resume_after_a_stop_inside_an_accumulation_window(tmp_path, straight):
    with pytest.raises(KeyboardInterrupt):
        make(tmp_path, [StopInsideWindow(7)]).train()
    assert sorted(os.listdir(tmp_path / "out"))[-1] == "checkpoint-6"
    resumed = make(tmp_path)
    resumed.train(resume_from_checkpoint=True)  # the latest checkpoint: 6
    got = lrs(resumed)
    assert [got[s] for s in range(7, 13)] == [straight[s] for s in range(7, 13)]


def test_accelerate_save_state_and_load_state(tmp_path):
    script = [sys.executable, str(TESTS / "scripts" / "accelerate_resume.py")]
    env = subprocess_env()
    subprocess.run([*script, str(tmp_path / "straight.json")], check=True, env=env, timeout=300, capture_output=True)
    subprocess.run([*script, str(tmp_path / "first.json"), "--stop_after", "4", "--state", str(tmp_path / "state")],
                   check=True, env=env, timeout=300, capture_output=True)
    subprocess.run([*script, str(tmp_path / "second.json"), "--resume", str(tmp_path / "state")],
                   check=True, env=env, timeout=300, capture_output=True)
    straight = json.loads((tmp_path / "straight.json").read_text())["lrs"]
    first = json.loads((tmp_path / "first.json").read_text())["lrs"]
    second = json.loads((tmp_path / "second.json").read_text())["lrs"]
    assert len(straight) == 10 and {**first, **second} == straight


def test_trainer_two_processes_same_lrs_as_one(tmp_path):
    launcher = shutil.which("accelerate") or pytest.skip("accelerate launcher not on PATH")
    norms = tmp_path / "norms.json"
    norms.write_text(json.dumps({"format": "hf_lrschedule.grad_norms", "format_version": 1, "meta": {},
                                 "steps": list(range(1, 13)), "l2": NORMS, "l1": None}))
    script = [str(TESTS / "scripts" / "stock_train.py"), "--max_steps", "8", "--per_device_train_batch_size", "2",
              "--gradient_accumulation_steps", "2", "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true",
              "--save_strategy", "no", "--use_cpu", "true", "--lr_scheduler_type", "linear_refined",
              "--lr_scheduler_kwargs", json.dumps({"grad_norms": str(norms)})]
    env = subprocess_env()
    for name, prefix in (("one", [sys.executable]), ("two", [launcher, "launch", "--multi_gpu", "--num_processes", "2",
                         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"])):
        proc = subprocess.run([*prefix, *script, "--output_dir", str(tmp_path / name),
                               "--result_file", str(tmp_path / f"{name}.{{rank}}.json")],
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    one = json.loads((tmp_path / "one.0.json").read_text())
    ranks = [json.loads((tmp_path / f"two.{r}.json").read_text()) for r in (0, 1)]
    assert one["world_size"] == 1 and len(one["lrs"]) == 8
    for rank in ranks:
        assert rank["world_size"] == 2
        assert rank["lrs"] == one["lrs"] and rank["schedule_sha256"] == one["schedule_sha256"]


def test_sigkill_of_the_pilot_leaves_nothing_a_rerun_trusts(tmp_path):
    pilot = tmp_path / "pilot"
    command = [
        sys.executable, "-m", "hf_lrschedule.cli", "pilot", "--fraction", "0.5", "--out", str(pilot), "--",
        sys.executable, str(TESTS / "scripts" / "stock_train.py"), "--output_dir", str(tmp_path / "out"),
        "--max_steps", "400", "--per_device_train_batch_size", "4", "--logging_steps", "1", "--report_to", "none",
        "--disable_tqdm", "true", "--save_strategy", "no", "--lr_scheduler_type", "linear_refined",
        "--result_file", str(tmp_path / "result.json"),
    ]
    process = subprocess.Popen(command, env=subprocess_env(), start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    for line in process.stdout:  # kill it once the pilot is training
        if "pilot: step" in line or time.time() > deadline:
            break
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert not (pilot / "manifest.json").exists() and not (pilot / "schedule.json").exists()
    leftovers = [p.name for p in pilot.iterdir() if p.name.startswith(".")]
    assert all(name.endswith(".tmp") for name in leftovers)  # at most an unfinished temporary file
    rerun = subprocess.run([*command[:command.index("--")], "--pilot-only", *command[command.index("--"):]],
                           env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "reusing" not in rerun.stdout and json.loads((pilot / "manifest.json").read_text())["status"] == "complete"
