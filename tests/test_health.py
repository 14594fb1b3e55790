"""The run's health: each fault found at its steps (synthetic series with known faults), healthy runs without `act`,
the `diagnose` CLI in every output format and on bad input, and the live `HealthCallback` in a real Trainer run."""

import json
import logging
import math

import numpy as np
import pytest
from tiny import tiny_trainer

from hf_lrschedule import GradNormRecorder
from hf_lrschedule.cli import main
from hf_lrschedule.health import (
    EXPLOSION_ACT,
    NONFINITE_RUN_ACT,
    diagnose,
    end_sign,
    grad_norm_sign,
    loss_sign,
)
from hf_lrschedule.health_advice import refinement_view
from hf_lrschedule.health_live import HealthMonitor
from hf_lrschedule.integrations.health import PREFIX, HealthCallback

STEPS = np.arange(1, 401)
# a healthy run: the loss falls fast, then slowly; a small deterministic wiggle stands in for batch noise
HEALTHY_LOSS = 2.0 + 3.0 * np.exp(-STEPS / 40.0) + 0.02 * np.sin(STEPS * 1.7)
HEALTHY_NORMS = 1.0 + 0.1 * np.sin(STEPS * 2.3)
HEALTHY_LR = np.where(STEPS <= 20, STEPS / 20, (400 - STEPS) / 380) * 1e-3


def test_healthy_run_gets_no_act_and_linear_decay():
    diagnosis = diagnose((STEPS, HEALTHY_NORMS), loss=(STEPS, HEALTHY_LOSS), learning_rate=(STEPS, HEALTHY_LR))
    assert {name: sign.verdict for name, sign in diagnosis.signs.items()} == {"loss": "ok", "grad_norm": "ok", "end": "ok"}
    assert diagnosis.refinement["inside_band"] is True
    assert diagnosis.refinement["schedule"].startswith("no warmup, linear decay")


def test_one_bad_batch_is_a_loss_spike_at_its_step():
    loss = HEALTHY_LOSS.copy()
    loss[149] += 3.0  # step 150
    sign = loss_sign((STEPS, loss))
    assert sign.verdict == "act" and sign.check("spikes").steps == [150]
    assert sign.check("relapse").verdict == "ok"  # back on trend at once
    assert sign.steps == [150]


def test_divergence_is_a_relapse_and_nan_loss_is_act():
    loss = HEALTHY_LOSS.copy()
    loss[250:] += np.linspace(0.0, 2.0, 150)  # climbs back from step 251 on
    relapse = loss_sign((STEPS, loss)).check("relapse")
    assert relapse.verdict == "act" and relapse.steps[0] > 250
    # the relapse is (smoothed loss - its running minimum) / (smoothed start - minimum): by hand near the end
    fall = HEALTHY_LOSS[0] - HEALTHY_LOSS[250]
    assert relapse.value == pytest.approx((loss[390] - loss[250]) / fall, rel=0.1)
    loss[300:] = np.nan
    sign = loss_sign((STEPS, loss))
    assert sign.check("non_finite").verdict == "act" and sign.check("non_finite").steps == list(range(301, 401))


def test_fp16_overflow_steps_are_non_finite_norms():
    norms = HEALTHY_NORMS.copy()
    norms[[59, 60, 229]] = np.inf  # steps 60, 61, 230
    sign = grad_norm_sign((STEPS, norms))
    assert sign.verdict == "watch" and sign.steps == [60, 61, 230]
    norms[100:100 + NONFINITE_RUN_ACT] = np.nan
    burst = grad_norm_sign((STEPS, norms)).check("non_finite")
    assert burst.verdict == "act" and burst.value == 3 + NONFINITE_RUN_ACT


def test_norm_explosion_at_its_step():
    norms = HEALTHY_NORMS.copy()
    norms[199] = 2 * EXPLOSION_ACT * norms[199]
    explosion = grad_norm_sign((STEPS, norms)).check("explosion")
    assert explosion.verdict == "act" and explosion.steps == [200]


def test_early_spike_gives_a_warmup_and_late_rise_a_faster_anneal():
    early = np.where(STEPS <= 30, 6.0, 1.0)  # 7.5 % of the run at 6 x the median
    sign = grad_norm_sign((STEPS, early))
    assert sign.check("early_spike").verdict == "watch" and sign.check("early_spike").value == pytest.approx(6.0)
    view = refinement_view((STEPS, early))
    assert view["inside_band"] is False and view["warmup_fraction"] > 0 and "warmup" in view["summary"]
    late = np.where(STEPS > 300, 5.0, 1.0)
    assert grad_norm_sign((STEPS, late)).check("late_rise").verdict == "watch"
    view = refinement_view((STEPS, late))
    assert "a faster anneal late in training (the smoothed norms reach 5.00 x" in view["summary"]


def test_flat_norms_stay_in_the_band_with_known_headroom():
    view = refinement_view((STEPS, np.full(400, 3.0)), 1000)
    # constant norms: smoothed max / median = 1, so they would have to rise by the whole tolerance (2) to matter
    assert view["inside_band"] is True and view["max_ratio"] == 1.0 and view["headroom"] == 2.0
    assert view["num_training_steps"] == 1000


def test_end_of_run_checks():
    even = 5.0 - 0.01 * STEPS  # falls at an even pace to the end: not settled
    falling = end_sign((STEPS, even)).check("still_falling")
    assert falling.verdict == "act" and falling.value == pytest.approx(1.0) and falling.steps == [321, 400]  # the last 80 of 400 steps
    lr = np.linspace(1.0, 0.5, 400)  # stopped halfway down its decay
    floor = end_sign(None, (STEPS, lr)).check("lr_floor")
    assert floor.verdict == "watch" and floor.value == pytest.approx(0.5) and floor.steps == [400]
    evals = (np.array([100, 200, 300, 400]), np.array([3.0, 2.5, 2.4, 2.52]))  # last 5 % above the best
    last = end_sign(None, None, evals).check("last_eval")
    assert last.verdict == "watch" and last.value == pytest.approx(0.05) and last.steps == [400]
    assert end_sign((STEPS, HEALTHY_LOSS)).verdict == "ok"


def test_a_loss_that_barely_moves_is_watch():
    flat = 3.0 - 1e-4 * STEPS + 0.1 * (-1.0) ** STEPS  # falls 0.038 over the run, under batch noise of +-0.1
    progress = end_sign((STEPS, flat)).check("progress")
    # by hand: fall of the trend between the first and last 5 % bins (380 steps apart) over the noise of the first
    # differences (|diff| ~ 0.2: MAD x 1.4826 / sqrt 2)
    assert progress.verdict == "watch" and progress.value == pytest.approx(0.038 / (1.4826 * 0.2 / math.sqrt(2)), rel=0.05)
    assert progress.steps == [1, 400]
    assert end_sign((STEPS, HEALTHY_LOSS)).check("progress").verdict == "ok"
    advice = diagnose(loss=(STEPS, flat)).recommendations
    assert any(text.startswith("The loss barely moved over the run") for text in advice)


def test_missing_series_are_not_measured():
    diagnosis = diagnose((STEPS, HEALTHY_NORMS))
    assert diagnosis.signs["loss"].verdict == "n/a" and diagnosis.signs["end"].verdict == "n/a"
    assert diagnosis.signs["grad_norm"].verdict == "ok"
    assert diagnose(loss=(STEPS[:5], HEALTHY_LOSS[:5])).signs["loss"].verdict == "n/a"  # too few points


def test_json_contract():
    loss = HEALTHY_LOSS.copy()
    loss[149] += 3.0
    data = diagnose((STEPS, HEALTHY_NORMS), loss=(STEPS, loss)).to_dict()
    assert set(data) >= {"signs", "refinement", "recommendations"}
    assert set(data["signs"]) == {"loss", "grad_norm", "end"}
    for sign in data["signs"].values():
        assert set(sign) >= {"verdict", "value", "threshold", "steps"}
    assert data["signs"]["loss"]["verdict"] == "act" and data["signs"]["loss"]["steps"] == [150]
    assert any("step 150" in text for text in data["recommendations"])
    json.dumps(data, allow_nan=False)


@pytest.mark.parametrize("bad, error", [((STEPS, HEALTHY_NORMS[:10]), ValueError), ("norms", TypeError),
                                        ((STEPS[::-1], HEALTHY_NORMS), ValueError), ((STEPS, -HEALTHY_NORMS), ValueError)])
def test_bad_series_raise(bad, error):
    with pytest.raises(error):
        diagnose(bad)


def test_authors_logs_get_no_act(shared_logs):
    from hf_lrschedule.health import diagnose_log
    from hf_lrschedule.readers import load_grad_norms

    for path in sorted(shared_logs.glob("*.csv")):
        diagnosis = diagnose_log(load_grad_norms(path))
        assert diagnosis.verdict != "act", (path.name, diagnosis.to_dict()["signs"]["grad_norm"])


def test_monitor_warns_once_per_kind():
    monitor = HealthMonitor()
    kinds = []
    for step in range(1, 101):
        loss = 9.0 if step in (40, 70) else 2.0 + 0.01 * (step % 3)
        norm = math.inf if step in (50, 80) else (100.0 if step == 60 else 1.0 + 0.01 * (step % 2))
        scalars, new = monitor.update(step, loss=loss, grad_norm=norm)
        kinds += [(step, kind) for kind in new]
    assert kinds == [(40, "loss_spike"), (50, "non_finite_norm"), (60, "norm_explosion")]
    assert scalars["loss_spikes"] == 2 and scalars["non_finite_norms"] == 2 and scalars["norm_explosions"] == 1


# --------------------------------------------------------------------------------------------------------------- #
# CLI
# --------------------------------------------------------------------------------------------------------------- #


@pytest.fixture
def run_file(tmp_path):
    """A recorder file with the loss, LR and eval loss beside the norms, and a bad batch at step 150."""
    recorder = GradNormRecorder(tmp_path / "grad_norms.json", meta={"num_training_steps": 400})
    loss = HEALTHY_LOSS.copy()
    loss[149] += 3.0
    for step, norm, value, lr in zip(STEPS.tolist(), HEALTHY_NORMS, loss, HEALTHY_LR):
        recorder.record(step, float(norm))
        recorder.record_metric("loss", step, float(value))
        recorder.record_metric("learning_rate", step, float(lr))
        if step % 100 == 0:
            recorder.record_metric("eval_loss", step, float(HEALTHY_LOSS[step - 1]))
    return recorder.save()


def test_cli_text_report(run_file, capsys):
    assert main(["diagnose", str(run_file)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"source: {run_file} (recorder file): 400 gradient norms")
    assert "verdict: act\n" in out and "loss: act (spikes" in out and "step 150" in out
    assert "refinement: linear decay" in out and "recommendations:" in out


def test_cli_json_and_plot(run_file, tmp_path, capsys):
    png = tmp_path / "health.png"
    assert main(["diagnose", str(run_file), "--json", "--plot", str(png), "--steps", "800"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)  # stdout is pure JSON; the "wrote" line goes to stderr
    assert data["signs"]["loss"]["steps"] == [150] and data["refinement"]["num_training_steps"] == 800
    assert f"wrote {png}" in captured.err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_reads_a_run_directory(run_file, capsys):
    assert main(["diagnose", str(run_file.parent)]) == 0
    assert "loss: act" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.json"], "does not exist"),
        (["{run}", "--steps", "0"], "--steps must be a positive number"),
        (["{run}", "--plot", "x.jpg"], "give a path ending in .png"),
        (["{empty}"], "is empty"),
    ],
)
def test_cli_bad_input_exits_2(run_file, tmp_path, capsys, args, message):
    empty = tmp_path / "empty.json"
    empty.write_text("")
    args = [a.format(run=run_file, empty=empty) for a in args]
    assert main(["diagnose", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hf-lrschedule diagnose: error: ") and message in err


# --------------------------------------------------------------------------------------------------------------- #
# Live, in a real Trainer run
# --------------------------------------------------------------------------------------------------------------- #


class LogitFault:
    """Breaks the model's output at chosen optimizer steps (a forward hook on lm_head), to make real faults."""

    def __init__(self, trainer, scale_at: dict[int, float]):
        self.trainer, self.scale_at = trainer, scale_at
        trainer.model.lm_head.register_forward_hook(self.hook)

    def hook(self, module, inputs, output):
        scale = self.scale_at.get(self.trainer.state.global_step + 1) if self.trainer.model.training else None
        return None if scale is None else output * scale


def health_trainer(tmp_path, **overrides):
    kwargs = dict(max_steps=40, logging_steps=1, learning_rate=3e-3, report_to="tensorboard", warmup_steps=0)
    kwargs.update(overrides)
    return tiny_trainer(tmp_path, **kwargs)


def test_callback_warns_once_per_kind_and_logs_scalars(tmp_path, caplog):
    from test_reporting import read_events

    trainer = health_trainer(tmp_path)
    callback = HealthCallback().attach(trainer)
    assert trainer.callback_handler.callbacks[0] is callback
    # steps 25 and 28: logits x 300 (a loss spike and a norm explosion); step 35 onwards: inf logits (non-finite)
    LogitFault(trainer, {25: 300.0, 28: 300.0, **{s: math.inf for s in range(35, 41)}})
    with caplog.at_level(logging.WARNING, logger="hf_lrschedule"):
        trainer.train()
    messages = [r.getMessage() for r in caplog.records if r.name == "hf_lrschedule" and "health" in r.getMessage()]
    assert sum("loss spike at step 25" in m for m in messages) == 1
    assert sum("gradient norm" in m and "step 25" in m for m in messages) == 1
    assert sum("non-finite gradient norm" in m and "step 35" in m for m in messages) == 1
    assert len(messages) == 3, messages  # once per kind, though steps 28 and 35-40 repeat them
    logged = [e for e in trainer.state.log_history if "loss" in e and "step" in e]
    assert logged[-1][PREFIX + "loss_spikes"] >= 2 and logged[-1][PREFIX + "non_finite_norms"] == 6
    assert logged[24][PREFIX + "loss_z"] > 10  # step 25
    _, scalars, _ = read_events(tmp_path)
    assert scalars["train/" + PREFIX + "non_finite_norms"][-1] == 6
    assert max(scalars["train/" + PREFIX + "loss_z"]) > 10


def test_callback_never_raises(tmp_path, caplog):
    trainer = health_trainer(tmp_path, max_steps=5, report_to="none")
    callback = HealthCallback().attach(trainer)

    def broken(*args, **kwargs):
        raise RuntimeError("monitor exploded")

    callback.monitor.update = broken
    callback.on_train_begin = lambda *args, **kwargs: None  # keep the broken monitor
    with caplog.at_level(logging.WARNING, logger="hf_lrschedule"):
        trainer.train()
    failures = [r for r in caplog.records if "live health check failed" in r.getMessage()]
    assert len(failures) == 1 and "monitor exploded" in failures[0].getMessage()
    assert trainer.state.global_step == 5
    assert not any(key.startswith(PREFIX) for entry in trainer.state.log_history for key in entry)


def test_a_stock_script_gets_the_live_checks_without_edits(tmp_path):
    """`tests/scripts/stock_train.py` never imports hf_lrschedule: the flag alone brings the scalars and warnings."""
    import subprocess
    import sys

    from conftest import TESTS, subprocess_env
    from test_reporting import read_events

    out = tmp_path / "out"
    command = [
        sys.executable, str(TESTS / "scripts" / "stock_train.py"), "--output_dir", str(out), "--max_steps", "40",
        "--per_device_train_batch_size", "4", "--learning_rate", "0.003", "--logging_steps", "1",
        "--disable_tqdm", "true", "--save_strategy", "no", "--lr_scheduler_type", "linear_refined",
        "--report_to", "tensorboard", "--fault_at_step", "25", "--result_file", str(tmp_path / "result.json"),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("hf_lrschedule health: ")]
    assert len(warnings) == 2, warnings  # once per kind: the loss spike and the norm explosion, both at step 25
    assert "loss spike at step 25" in warnings[0] and "gradient norm" in warnings[1] and "step 25" in warnings[1]
    _, scalars, _ = read_events(out)
    loss_z = scalars["train/" + PREFIX + "loss_z"]
    assert len(loss_z) == 40 - 10  # a value from the 11th log on: 10 earlier logs to compare with
    assert loss_z[25 - 11] == max(loss_z) > 10  # step 25
    assert scalars["train/" + PREFIX + "loss_spikes"][-1] >= 1 and scalars["train/" + PREFIX + "norm_explosions"][-1] == 1
