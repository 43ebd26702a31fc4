"""Scaling-law fits recover known laws from noisy synthetic data, and say how well they extrapolate."""

import numpy as np
import pytest

from raybio.analysis.scaling import chinchilla_optimal_n, fit_chinchilla, fit_compute_law, fit_routed


def _noisy(y, rel, seed):
    return y * (1 + rel * np.random.default_rng(seed).standard_normal(len(y)))


def test_compute_law_recovers_exponent_and_floor():
    c = np.logspace(12, 16, 20)
    truth = 1.7 + 4e3 * c**-0.3
    fit = fit_compute_law(c, _noisy(truth, 0.003, 0), n_boot=200)
    assert fit.params["alpha"] == pytest.approx(0.3, abs=0.03)
    assert fit.params["E"] == pytest.approx(1.7, abs=0.05)
    lo, hi = fit.ci["alpha"]
    assert lo <= 0.3 <= hi and lo < fit.params["alpha"] < hi


def test_compute_law_confidence_intervals_cover_the_truth_in_most_repeats():
    c = np.logspace(12, 16, 15)
    truth = 1.7 + 4e3 * c**-0.3
    covered = [fit_compute_law(c, _noisy(truth, 0.005, s), n_boot=60, seed=s).ci["alpha"] for s in range(10)]
    assert sum(lo <= 0.3 <= hi for lo, hi in covered) >= 8


def test_holdout_predicts_the_largest_trials_from_a_fit_that_never_saw_them():
    c = np.logspace(12, 16, 12)
    loss = 1.7 + 4e3 * c**-0.3
    loss[-1] += 0.2  # a largest trial the law cannot explain: only a fit that never saw it misses it by this much
    fit = fit_compute_law(c, loss, n_boot=0, holdout=1)
    assert fit.holdout.x == [pytest.approx(c[-1])]
    assert fit.holdout.actual == [pytest.approx(loss[-1])]
    clean = 1.7 + 4e3 * c[-1] ** -0.3
    assert fit.holdout.predicted[0] == pytest.approx(clean, rel=0.01)
    assert fit.holdout.max_rel_error == pytest.approx(0.2 / loss[-1], rel=0.05)
    # The full fit saw the outlier, so it lands closer to it than the held-out fit did.
    assert abs(fit.predict(c[-1:])[0] - loss[-1]) < abs(fit.holdout.predicted[0] - loss[-1])


def test_too_few_points_give_no_interval_rather_than_a_false_one():
    c = np.array([1e12, 1e13, 1e14])
    fit = fit_compute_law(c, 1.0 + 50 * c**-0.2)
    assert fit.ci["alpha"] is None and fit.band(c) is None


def test_chinchilla_recovers_both_exponents_and_the_optimal_size():
    rng = np.random.default_rng(1)
    n = np.repeat(np.logspace(6, 9, 6), 5)
    d = np.tile(np.logspace(8, 11, 5), 6) * rng.uniform(0.8, 1.25, len(n))
    truth = 1.69 + 406.4 / n**0.34 + 410.7 / d**0.28
    fit = fit_chinchilla(n, d, _noisy(truth, 0.002, 2), n_boot=100)
    assert fit.params["alpha"] == pytest.approx(0.34, abs=0.05)
    assert fit.params["beta"] == pytest.approx(0.28, abs=0.05)
    for name, true in (("alpha", 0.34), ("beta", 0.28)):
        lo, hi = fit.ci[name]
        assert lo <= true <= hi
    exact = {"A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}
    n_opt_true = chinchilla_optimal_n(type("F", (), {"params": exact})(), 1e21)
    assert chinchilla_optimal_n(fit, 1e21) == pytest.approx(n_opt_true, rel=0.5)
    assert fit.holdout.max_rel_error < 0.02


def test_routed_law_recovers_clark_coefficients():
    n = np.repeat([1e7, 3e7, 1e8, 3e8], 4)
    e = np.tile([1, 4, 16, 64], 4).astype(float)
    a, b, c, d = -0.08, -0.05, 0.002, 1.9
    log_l = a * np.log(n) + b * np.log(e) + c * np.log(n) * np.log(e) + d
    fit = fit_routed(n, e, _noisy(np.exp(log_l), 0.002, 3), n_boot=100)
    for name, true in (("a", a), ("b", b), ("c", c)):
        assert fit.params[name] == pytest.approx(true, abs=0.01)
        lo, hi = fit.ci[name]
        assert lo <= true <= hi
    assert fit.holdout.max_rel_error < 0.02


def test_routed_law_at_one_model_size_fits_the_expert_term_only():
    e = np.array([1.0, 2, 4, 8, 16])
    loss = np.exp(1.5 - 0.04 * np.log(e))
    fit = fit_routed(np.full(5, 1e7), e, loss, n_boot=50)
    assert fit.params["a"] is None and fit.params["c"] is None
    assert fit.params["b"] == pytest.approx(-0.04, abs=1e-6)
    assert fit.holdout.x == [[1e7, 16.0]]
