"""The method study's pieces (benchmarks/method_study.py): the candidates' tables, the noise band, the verdicts and
the decision rule, computed by hand. The study end to end runs in the slow benchmark test."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from method_study import decide, hold_peak, judge, noise_tolerance


def test_hold_peak_drops_the_refined_warmup_and_keeps_the_decay():
    np.testing.assert_array_equal(hold_peak(np.array([0.2, 0.6, 1.0, 0.7, 0.0])), [1.0, 1.0, 1.0, 0.7, 0.0])
    np.testing.assert_array_equal(hold_peak(np.array([1.0, 0.5, 0.0])), [1.0, 0.5, 0.0])  # no warmup: unchanged


def test_noise_tolerance_is_one_without_noise_and_tracks_the_noise():
    assert noise_tolerance(np.full(1000, 0.7), 1000, 0.1) == 1.0
    rng = np.random.default_rng(0)
    sigma, steps = 0.3, 10_000
    norms = np.exp(np.linspace(0.0, 0.5, steps) + sigma * rng.standard_normal(steps))
    width = 1000  # 10 % of 10,000 steps
    expected = math.exp(3 * sigma / math.sqrt(width))
    assert noise_tolerance(norms, steps, 0.1) == pytest.approx(expected, rel=0.01)


def test_judge_by_hand():
    verdicts = judge({"linear": [2.0, 2.2], "a": [1.7, 1.9], "b": [2.1, 2.2], "c": [None, 2.0]})
    noise = float(np.std([2.0, 2.2], ddof=1))  # 0.1414; a's spread is the same
    assert verdicts["a"]["delta_pct"] == pytest.approx(100 * (1.8 - 2.1) / 2.1)
    assert verdicts["a"]["noise"] == pytest.approx(noise) and verdicts["a"]["verdict"] == "better"
    assert verdicts["b"]["verdict"] == "inside the noise"  # +0.05 within 0.1414
    assert verdicts["c"]["verdict"] == "diverged"


def test_decide_needs_no_dev_loss_and_one_gain():
    better = {"verdict": "better", "delta_pct": -2.0}
    level = {"verdict": "inside the noise", "delta_pct": -0.5}
    worse = {"verdict": "worse", "delta_pct": 3.0}
    rest = {"default": level, "noise_band": level, "re_refined": level}
    assert decide({"t1": {**rest, "band_off": better, "decay_only": better},
                   "t2": {**rest, "band_off": worse, "decay_only": level}}) == "decay_only"
    assert decide({"t1": {**rest, "band_off": level, "decay_only": level}}) is None


def test_norm_profile_is_the_median_per_tenth():
    from method_study import norm_profile

    norms = np.concatenate([np.full(10, k + 1.0) for k in range(10)])
    assert norm_profile(norms) == [float(k + 1) for k in range(10)]
