import json

import pytest
from tiny import tiny_llama, tiny_trainer

from hf_lrschedule import GradNormRecorder, GradNormRecorderCallback, RefinementWarning, load_grad_norms


def make_trainer(tmp_path, model=None, callbacks=(), **overrides):
    settings = dict(
        max_steps=6, per_device_train_batch_size=2, gradient_accumulation_steps=2, max_grad_norm=0.5,
        learning_rate=5e-3, logging_steps=3,
    )
    return tiny_trainer(tmp_path / "out", model=model, callbacks=callbacks, **{**settings, **overrides})


def spy_on_clipping(trainer):
    """Wrap the Trainer's real clip call: record what it returns (the pre-clip l2) and the l1 before clipping."""
    original = trainer.accelerator.clip_grad_norm_
    seen = []

    def clip_and_watch(parameters, max_norm, *args, **kwargs):
        parameters = list(parameters)
        l1 = float(sum(p.grad.double().abs().sum() for p in parameters if p.grad is not None))
        result = original(parameters, max_norm, *args, **kwargs)
        seen.append((float(result), l1))
        return result

    trainer.accelerator.clip_grad_norm_ = clip_and_watch
    return seen


def recording_trainer(tmp_path, mode, **kwargs):
    """mode "attach": the recorder wraps the clip call; "callback": it forces a log every step."""
    callback = GradNormRecorderCallback()
    trainer = make_trainer(tmp_path, callbacks=[callback] if mode == "callback" else [], **kwargs)
    if mode == "attach":
        callback.attach(trainer)
    return trainer


@pytest.mark.parametrize("mode", ["attach", "callback"])
def test_recorder_equals_the_trainers_pre_clip_norms_with_accumulation_and_clipping(tmp_path, mode):
    trainer = recording_trainer(tmp_path, mode)
    seen = spy_on_clipping(trainer)
    trainer.train()
    assert len(seen) == 6
    assert any(l2 > 0.5 for l2, _ in seen), "clipping must be active for this test to mean something"
    data = json.loads((tmp_path / "out" / "grad_norms.json").read_text())
    assert data["steps"] == [1, 2, 3, 4, 5, 6]
    assert data["l2"] == pytest.approx([l2 for l2, _ in seen], rel=1e-6)
    assert data["l1"] == pytest.approx([l1 for _, l1 in seen], rel=1e-4)  # un-clipped from the clipped grads
    meta = data["meta"]
    logged = [e["step"] for e in trainer.state.log_history if "grad_norm" in e]
    assert logged == ([3, 6] if mode == "attach" else [1, 2, 3, 4, 5, 6])  # attach leaves the user's logging alone
    assert meta["optimizer_family"] == "adam" and meta["gradient_accumulation_steps"] == 2
    assert meta["max_grad_norm"] == 0.5 and meta["num_training_steps"] == 6 and meta["world_size"] == 1
    assert meta["num_warmup_steps"] == 0


def test_recorded_warmup_reaches_the_next_runs_scheduler(tmp_path):
    """The warmup a run had (a ratio here) is in the recorder's meta; a refined run that drops it is warned."""
    trainer = recording_trainer(tmp_path, "attach", warmup_steps=0.5)  # ceil(0.5 * 6) = 3 steps
    trainer.train()
    path = tmp_path / "out" / "grad_norms.json"
    assert json.loads(path.read_text())["meta"]["num_warmup_steps"] == 3
    next_run = make_trainer(tmp_path / "next", lr_scheduler_type="linear_refined", warmup_steps=0,
                            lr_scheduler_kwargs={"grad_norms": str(path)})
    with pytest.warns(RefinementWarning, match=r"recorded under a warmup of 50.0 % of its run; this run's warmup is 0.0 %"):
        next_run.create_optimizer_and_scheduler(num_training_steps=6)


def test_sgd_records_l2_only(tmp_path):
    trainer = recording_trainer(tmp_path, "attach", optim="sgd", max_grad_norm=0.0)
    seen = spy_on_clipping(trainer)
    trainer.train()
    log = load_grad_norms(tmp_path / "out" / "grad_norms.json")
    assert log.l1 is None and log.meta["optimizer_family"] == "sgd"
    assert log.l2.tolist() == pytest.approx([l2 for l2, _ in seen], rel=1e-6)


def test_trainer_state_json_is_a_source(tmp_path):
    callback = GradNormRecorderCallback()
    trainer = make_trainer(tmp_path, callbacks=[callback], save_strategy="steps", save_steps=6)
    trainer.train()
    from_state = load_grad_norms(tmp_path / "out" / "checkpoint-6" / "trainer_state.json")
    recorded = load_grad_norms(tmp_path / "out" / "grad_norms.json")
    assert from_state.steps.tolist() == [1, 2, 3, 4, 5, 6]
    assert from_state.l2.tolist() == pytest.approx(recorded.l2.tolist(), rel=1e-12)


def test_lora_norms_cover_the_adapter_only(tmp_path):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    trainer = recording_trainer(tmp_path, "attach", model=model, learning_rate=1e-2)
    seen = spy_on_clipping(trainer)
    trainer.train()
    data = json.loads((tmp_path / "out" / "grad_norms.json").read_text())
    assert data["l2"] == pytest.approx([l2 for l2, _ in seen], rel=1e-6)
    full = make_trainer(tmp_path / "full", callbacks=[GradNormRecorderCallback()])
    full.train()
    full_norms = json.loads((tmp_path / "full" / "out" / "grad_norms.json").read_text())["l2"]
    assert max(data["l2"]) < min(full_norms)  # adapter weights only (B starts at 0)


def test_recorder_resume_truncates_and_continues(tmp_path):
    recorder = GradNormRecorder(tmp_path / "n.json")
    for step in range(1, 6):
        recorder.record(step, float(step))
    recorder.record(4, 40.0)  # a resumed run replays step 4
    assert recorder.steps == [1, 2, 3, 4] and recorder.l2[-1] == 40.0
    recorder.record(5, float("inf"))
    path = recorder.save()
    data = json.loads(path.read_text())
    assert data["l2"][-1] is None and data["nonfinite_steps"] == [5]
    assert [p.name for p in tmp_path.iterdir()] == ["n.json"]  # no temporary file left behind


@pytest.mark.parametrize("mode", ["attach", "callbacks"])
def test_norms_are_on_disk_before_the_checkpoint_sigkill_right_after_it(tmp_path, mode):
    """A run SIGKILLed right after writing checkpoint-4 (before any other on_save) has the norms of steps 1..4."""
    import signal
    import subprocess
    import sys

    from conftest import TESTS, subprocess_env

    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(TESTS / "scripts" / "kill_after_checkpoint.py"), str(out), mode],
        capture_output=True, text=True, timeout=300, env=subprocess_env(), cwd=tmp_path, check=False,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert (out / "checkpoint-4").is_dir() and not (out / "checkpoint-8").exists()
    recorded = json.loads((out / "grad_norms.json").read_text())
    assert recorded["steps"] == [1, 2, 3, 4]
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    logged = [entry["grad_norm"] for entry in state["log_history"] if "grad_norm" in entry]
    assert recorded["l2"] == pytest.approx(logged, rel=1e-6)  # the same norms the Trainer computed
