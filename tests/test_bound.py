"""The last-iterate bound (hf_lrschedule.bound) and LR transfer (hf_lrschedule.transfer)."""

import doctest
import json
import math

import numpy as np
import pytest
import torch
from transformers import get_scheduler

import hf_lrschedule.bound
import hf_lrschedule.transfer
from hf_lrschedule import GradNormRecorder
from hf_lrschedule.bound import bound_terms, last_iterate_bound, last_iterate_bound_and_gradient
from hf_lrschedule.cli import main
from hf_lrschedule.transfer import schedule_multipliers, transfer_learning_rate


def direct_bound(eta, norms, distance):
    """The formula as written in docs/refinement.md, term by term: O(T^2), no cumulative sums."""
    T = len(eta)

    def S(k):  # sum_{t=k..T} eta_t, 1-based
        return sum(eta[k - 1 :])

    def tail_noise(k):  # sum_{t=k..T} G_t^2 eta_t^2
        return sum(norms[t - 1] ** 2 * eta[t - 1] ** 2 for t in range(k, T + 1))

    value = distance**2 / (2 * S(1)) + tail_noise(1) / (2 * S(1))
    for k in range(1, T):
        value += 0.5 * (1 / S(k + 1) - 1 / S(k)) * tail_noise(k)
    return value


def harmonic(n):
    return sum(1.0 / i for i in range(1, n + 1))


@pytest.mark.parametrize("T", [1, 2, 3, 7, 30])
def test_matches_the_direct_formula(T):
    rng = np.random.default_rng(T)
    eta, norms = rng.uniform(0.05, 2.0, T), rng.uniform(0.2, 3.0, T)
    eta[rng.random(T) < 0.2] = 0.0  # zeros inside the run (a warmup from 0) are kept
    eta[-1] = 0.3
    for distance in (0.1, 1.0, 7.0):
        assert last_iterate_bound(eta, norms, distance=distance) == pytest.approx(
            direct_bound(list(eta), list(norms), distance), rel=1e-12
        )


def test_by_hand_one_and_two_steps():
    # T = 1: D^2 / (2 eta) + G^2 eta / 2 = 4/1 + 9 * 0.5 / 2
    assert last_iterate_bound([0.5], [3.0], distance=2.0) == pytest.approx(6.25, rel=1e-15)
    # T = 2, eta = (1, 2), G = (1, 2), D = 3: S_1 = 3, S_2 = 2, noise sum = 1 + 16 = 17
    # 9/6 + 17/6 + (1/2)(1/2 - 1/3) * 17
    assert last_iterate_bound([1.0, 2.0], [1.0, 2.0], distance=3.0) == pytest.approx(9 / 6 + 17 / 6 + 17 / 12)


@pytest.mark.parametrize("T", [1, 2, 10, 500])
def test_linear_decay_closed_form(T):
    # eta_t = c (T - t + 1) / T: S_1 = c (T + 1) / 2 and
    # B = D^2 / (c (T + 1)) + c (T - 1/2 + H_{T-1}) / T  (the sum of eta_t^2 / S_{t+1} telescopes into H_{T-1})
    c, D = 0.3, 2.0
    eta = c * (T - np.arange(T)) / T
    expected = D**2 / (c * (T + 1)) + c * (T - 0.5 + harmonic(T - 1)) / T
    assert last_iterate_bound(eta, distance=D) == pytest.approx(expected, rel=1e-12)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    eta, squared = rng.uniform(0.1, 1.0, 9), rng.uniform(0.5, 2.0, 9) ** 2
    _, gradient = last_iterate_bound_and_gradient(eta, squared, 0.8)
    step = 1e-7
    numeric = [
        (last_iterate_bound_and_gradient(eta + step * e, squared, 0.8)[0]
         - last_iterate_bound_and_gradient(eta - step * e, squared, 0.8)[0]) / (2 * step)
        for e in np.eye(9)
    ]
    assert gradient == pytest.approx(numeric, rel=1e-6, abs=1e-8)


def test_trailing_zero_learning_rates_are_no_updates():
    assert last_iterate_bound([1.0, 0.5, 0.0, 0.0], [1.0, 2.0, 5.0, 5.0]) == last_iterate_bound([1.0, 0.5], [1.0, 2.0])
    # a positive last rate going to 0 makes the bound grow without limit (the reason for the convention)
    assert last_iterate_bound([1.0, 1e-9]) > 1e8


@pytest.mark.parametrize(
    "rates, norms, match",
    [
        ([0.0, 0.0], None, "every learning rate is 0"),
        ([1.0, -0.1], None, ">= 0"),
        ([], None, "non-empty"),
        ([1.0, float("nan")], None, "finite"),
        ([1.0, 1.0], [1.0], "one norm per update"),
        ([1.0, 1.0], [1.0, 0.0], "> 0"),
    ],
)
def test_bad_input_is_a_clear_error(rates, norms, match):
    with pytest.raises(ValueError, match=match):
        last_iterate_bound(rates, norms)


def test_terms_give_the_bound_at_every_scale_and_its_optimum():
    rng = np.random.default_rng(2)
    multipliers, norms = rng.uniform(0.1, 1.0, 20), rng.uniform(0.5, 2.0, 20)
    terms = bound_terms(multipliers, norms)
    for c in (0.01, 0.3, 4.0):
        for D in (0.5, 3.0):
            assert terms.value(c, D) == pytest.approx(direct_bound(list(c * multipliers), list(norms), D), rel=1e-12)
    best = terms.optimal_base_lr(distance=3.0)
    assert best == pytest.approx(3.0 * math.sqrt(terms.distance_term / terms.noise_term))
    assert terms.value(best, 3.0) == pytest.approx(2 * 3.0 * math.sqrt(terms.distance_term * terms.noise_term))
    assert terms.value(best, 3.0) < min(terms.value(best * 1.01, 3.0), terms.value(best * 0.99, 3.0))


def test_doctests():
    for module in (hf_lrschedule.bound, hf_lrschedule.transfer):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0


# --- schedules by name: what the Trainer applies ----------------------------------------------------------------------


def transformers_multipliers(name, T, warmup, **kwargs):
    """The multiplier of each update from transformers' own scheduler (lr = 1)."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=T, scheduler_specific_kwargs=kwargs)
    values = []
    for _ in range(T):
        values.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return values


@pytest.mark.parametrize(
    "name, hf_name, kwargs, hf_kwargs",
    [
        ("linear", "linear", {}, {}),
        ("cosine", "cosine", {}, {}),
        ("constant", "constant_with_warmup", {}, {}),
        ("warmup_stable_decay", "warmup_stable_decay", {"decay_fraction": 0.25}, {"num_decay_steps": 5}),
        ("warmup_stable_decay", "warmup_stable_decay", {"decay_fraction": 0.25, "decay_type": "linear"},
         {"num_decay_steps": 5, "decay_type": "linear"}),
    ],
)
def test_named_schedules_are_transformers_schedules(name, hf_name, kwargs, hf_kwargs):
    got = schedule_multipliers(name, 20, warmup_fraction=0.1, **kwargs)
    assert got.tolist() == pytest.approx(transformers_multipliers(hf_name, 20, 2, **hf_kwargs), abs=1e-12)


def write_norms(path, norms):
    recorder = GradNormRecorder(path)
    for step, value in enumerate(norms, start=1):
        recorder.record(step, value)
    recorder.save()
    return str(path)


def test_linear_refined_and_a_schedule_file(tmp_path):
    flat = write_norms(tmp_path / "flat.json", [2.0] * 40)
    # constant norms refine to linear decay
    assert schedule_multipliers("linear_refined", 10, grad_norms=flat).tolist() == pytest.approx(
        [(10 - t) / 10 for t in range(10)], abs=1e-12
    )
    assert main(["refine", flat, "--steps", "10", "-o", str(tmp_path / "s.json")]) == 0
    assert schedule_multipliers(str(tmp_path / "s.json"), 10).tolist() == pytest.approx(
        [(10 - t) / 10 for t in range(10)], abs=1e-12
    )
    with pytest.raises(ValueError, match="linear_refined needs gradient norms"):
        schedule_multipliers("linear_refined", 10)
    with pytest.raises(ValueError, match="unknown schedule 'cosin'"):
        schedule_multipliers("cosin", 10)


# --- transfer ---------------------------------------------------------------------------------------------------------


def linear_optimal_lr(T):
    """Bound-optimal base LR of linear decay over T steps, constant norms, D = 1, from the closed form:
    a = 1 / (T + 1), b = (T - 1/2 + H_{T-1}) / T, c* = sqrt(a / b)."""
    return math.sqrt((1 / (T + 1)) / ((T - 0.5 + harmonic(T - 1)) / T))


@pytest.mark.parametrize("T, T2", [(100, 200), (100, 400), (1000, 250)])
def test_transfer_across_horizons_matches_the_closed_form(T, T2):
    result = transfer_learning_rate(3e-4, schedule="linear", num_training_steps=T, to_num_training_steps=T2)
    assert result.ratio == pytest.approx(linear_optimal_lr(T2) / linear_optimal_lr(T), rel=1e-10)
    assert result.learning_rate == pytest.approx(3e-4 * result.ratio, rel=1e-15)
    # about 1/sqrt(T2/T), the classic rule, up to the log term
    assert result.ratio == pytest.approx(math.sqrt(T / T2), rel=0.1)


def test_transfer_to_itself_is_one_and_norm_scale_cancels(tmp_path):
    same = transfer_learning_rate(1e-3, schedule="cosine", num_training_steps=300, warmup_fraction=0.05)
    assert same.ratio == pytest.approx(1.0, rel=1e-12)
    rising = [1.0 + t / 50 for t in range(100)]
    small = write_norms(tmp_path / "a.json", rising)
    large = write_norms(tmp_path / "b.json", [10 * v for v in rising])
    kwargs = dict(schedule="linear", num_training_steps=100, to_schedule="warmup_stable_decay", to_num_training_steps=300)
    assert transfer_learning_rate(1e-3, grad_norms=small, **kwargs).ratio == pytest.approx(
        transfer_learning_rate(1e-3, grad_norms=large, **kwargs).ratio, rel=1e-10
    )


def test_transfer_with_norms_uses_the_resampled_profile(tmp_path):
    rising = [1.0 + t / 50 for t in range(100)]
    source = write_norms(tmp_path / "n.json", rising)
    result = transfer_learning_rate(1e-3, schedule="linear", num_training_steps=50, to_schedule="linear_refined",
                                    to_num_training_steps=200, grad_norms=source)
    # independent: the bound terms from the profile computed here (linear interpolation by training fraction, the
    # median filter does not change a monotone series away from its ends) and the schedules from their definitions
    from hf_lrschedule import refinement_details

    def terms(multipliers, T):
        profile = np.interp(np.arange(T) / T, np.arange(100) / 100, rising)
        return bound_terms(multipliers, profile)

    linear = terms((50 - np.arange(50)) / 50, 50)
    refined = terms(refinement_details(rising, 200).multipliers[:200], 200)
    assert result.ratio == pytest.approx(refined.optimal_base_lr() / linear.optimal_base_lr(), rel=1e-3)


def test_transfer_cli(tmp_path, capsys):
    argv = ["transfer", "--lr", "3e-4", "--schedule", "linear", "--steps", "100", "--to-steps", "400"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    ratio = linear_optimal_lr(400) / linear_optimal_lr(100)
    assert f"ratio: {ratio:.4f}" in out and f"learning rate: {3e-4 * ratio:.6g}" in out
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ratio"] == pytest.approx(ratio) and data["to"]["steps"] == 400 and data["from"]["schedule"] == "linear"
    assert main(["transfer", "--lr", "3e-4", "--schedule", "linear_refined", "--steps", "10"]) == 2
    assert "hf-lrschedule transfer: error: linear_refined needs gradient norms" in capsys.readouterr().err
