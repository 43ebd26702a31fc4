"""Scaling-law fits recover known laws from synthetic runs, and say "not identified" where the runs cannot tell.

Runs are generated on IsoFLOP grids (budgets × model sizes) from a known law, with log-normal noise of
NOISE on the loss (≈ 0.015 nats at these losses). References are independent of the code under test:
hand-written formulas, scipy's numerical minimisers and root finders, finite differences, linregress.
"""

import numpy as np
import pytest
from scipy import optimize

from raybio.analysis import fitting
from raybio.analysis.estimates import Estimate, derived, judge, t_interval
from raybio.analysis.fitting import huber_objective, stratified_resample
from raybio.analysis.isoflop import budget_minimum
from raybio.analysis.laws import GRANULAR_MOE, centred_logs, compute_optimum, log_predict
from raybio.analysis.scaling import (
    compute_optimal,
    efficiency_leverage,
    fit_approach3,
    fit_granular_moe,
    fit_isoflop,
    predict_loss,
)

TRUTH = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 410.0, "beta": 0.28}
MOE_TRUTH = {"E": 1.7, "A": 300.0, "alpha": 0.34, "g": 200.0, "gamma": 0.58, "B": 410.0, "beta": 0.28}
BUDGETS = np.geomspace(1e15, 1e17, 5)
NOISE = 0.003
N_BOOT = 40  # few draws keep the tests fast; the library's default is 200
TARGET = 1e18  # 10× the largest budget


def chinchilla(n, d, p=TRUTH):
    return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]


def true_optimum(compute, loss_of=chinchilla):
    """(N_opt, L*) by numerical minimisation over log N at C = 6·N·D: a reference independent of the closed form."""
    res = optimize.minimize_scalar(lambda x: loss_of(np.exp(x), compute / (6 * np.exp(x))), bounds=(5, 35),
                                   method="bounded", options={"xatol": 1e-10})  # fmt: skip
    return float(np.exp(res.x)), float(res.fun)


def isoflop_grid(budgets=BUDGETS, sizes=5, spread=6.0, seed=0):
    """(N, C, D): per budget, `sizes` model sizes log-spaced over ×/÷ spread around a jittered guess of the optimum."""
    rng = np.random.default_rng(seed)
    centre = np.array([true_optimum(c)[0] for c in budgets]) * rng.uniform(0.7, 1.4, len(budgets))
    n = (centre[:, None] * np.geomspace(1 / spread, spread, sizes)).ravel()
    c = np.repeat(budgets, sizes)
    return n, c, c / (6 * n)


def noisy(loss, seed):
    return loss * np.exp(NOISE * np.random.default_rng(seed).standard_normal(len(loss)))


@pytest.fixture(scope="module")
def dense():
    n, c, d = isoflop_grid()
    loss = noisy(chinchilla(n, d), 1)
    return n, c, d, loss, fit_approach3(n, d, loss, c, n_boot=N_BOOT)


@pytest.fixture(scope="module")
def one_size():
    """Every run at one N: α has no effect and A/N^α is a constant indistinguishable from E."""
    c = np.repeat(BUDGETS, 2)
    n = np.full(len(c), 1e7)
    d = c / (6 * n)
    return fit_approach3(n, d, noisy(chinchilla(n, d), 2), c, n_boot=N_BOOT)


# ------------------------------------------------------------------------------------------ the law itself


def test_log_sum_exp_prediction_equals_the_law_written_out():
    rng = np.random.default_rng(0)
    n, d, g = 10 ** rng.uniform(6, 9, 12), 10 ** rng.uniform(8, 11, 12), 2.0 ** rng.integers(0, 4, 12)
    x0 = {"N": 3e7, "D": 1e9, "G": 2.0}
    theta = np.r_[rng.uniform(-2, 1, 4), rng.uniform(0.1, 0.9, 3)]
    p = {k: v[0] for k, v in GRANULAR_MOE.public(theta, x0).items()}
    by_hand = p["E"] + (p["g"] / g ** p["gamma"] + p["A"]) / n ** p["alpha"] + p["B"] / d ** p["beta"]
    m = GRANULAR_MOE.design(centred_logs(GRANULAR_MOE, {"N": n, "D": d, "G": g}, x0))
    assert np.exp(log_predict(theta, m)[0]) == pytest.approx(by_hand, rel=1e-12)


def test_huber_objective_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    n, d, g = 10 ** rng.uniform(6, 9, 30), 10 ** rng.uniform(8, 11, 30), 2.0 ** rng.integers(0, 4, 30)
    loss = 1.7 + 300 / n**0.3 + 400 / d**0.3 + rng.uniform(-0.01, 0.01, 30)
    m = GRANULAR_MOE.design(centred_logs(GRANULAR_MOE, {"N": n, "D": d, "G": g}, {"N": 3e7, "D": 1e9, "G": 2.0}))
    theta = np.r_[rng.uniform(-2, 0, 4), rng.uniform(0.1, 0.9, 3)]
    analytic = huber_objective(theta, m, np.log(loss))[1]
    numeric = optimize.approx_fprime(theta, lambda t: huber_objective(t, m, np.log(loss))[0], 1e-8)
    assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-3)


def test_closed_form_optimum_matches_a_numerical_minimum():
    n_opt, d_opt, loss = compute_optimum(*(TRUTH[k] for k in ("E", "A", "alpha", "B", "beta")), TARGET)
    ref_n, ref_loss = true_optimum(TARGET)
    assert n_opt == pytest.approx(ref_n, rel=1e-5) and loss == pytest.approx(ref_loss, rel=1e-9)
    assert 6 * n_opt * d_opt == pytest.approx(TARGET)


# ------------------------------------------------------------------------------------ approach 3 (dense)


def test_approach3_recovers_exponents_and_floor_with_intervals_covering_them(dense):
    fit = dense[-1]
    assert fit.converged and fit.boot_converged == 1.0
    est = fit.estimates
    assert est["alpha"].value == pytest.approx(TRUTH["alpha"], abs=0.03)
    assert est["beta"].value == pytest.approx(TRUTH["beta"], abs=0.03)
    assert est["E"].value == pytest.approx(TRUTH["E"], abs=0.15)
    for name, true in TRUTH.items():
        assert est[name].identified, est[name].why
        assert est[name].low <= true <= est[name].high, name


def test_approach3_predicts_beyond_its_runs_with_an_interval_covering_the_truth(dense):
    fit = dense[-1]
    loss = predict_loss(fit, N=3e8, D=3e10)  # 10× past the largest runs in both
    assert loss.identified and loss.low <= chinchilla(3e8, 3e10) <= loss.high
    opt = compute_optimal(fit, TARGET)
    ref_n, ref_loss = true_optimum(TARGET)
    assert opt.n_params.value == pytest.approx(ref_n, rel=0.3)
    assert opt.n_params.low <= ref_n <= opt.n_params.high
    assert opt.loss.value == pytest.approx(ref_loss, rel=0.01) and opt.loss.low <= ref_loss <= opt.loss.high


def test_bootstrap_resamples_runs_within_each_budget():
    budget = np.repeat([1e15, 1e16, 1e17], [3, 5, 4])
    rng = np.random.default_rng(0)
    draws = [stratified_resample(budget, rng) for _ in range(200)]
    for idx in draws:
        assert sorted(budget[idx]) == sorted(budget)  # every budget, with its own number of runs
    assert any(len(set(idx)) < len(budget) for idx in draws)  # with replacement


def test_every_bootstrap_refit_starts_from_the_grid_again(dense, monkeypatch):
    n, c, d, loss, _ = dense
    calls = []
    real = fitting.grid_starts
    monkeypatch.setattr(fitting, "grid_starts", lambda *a: calls.append(1) or real(*a))
    fit_approach3(n, d, loss, c, n_boot=3)
    assert len(calls) == 1 + 3  # the point fit and each refit: none starts at the point estimate


def test_runs_at_a_single_size_leave_alpha_and_the_floor_not_identified_and_no_answer(one_size):
    est = one_size.estimates
    assert not est["alpha"].identified and "changes no predicted loss" in est["alpha"].why
    assert not est["E"].identified and not est["A"].identified
    assert est["beta"].identified  # the token count did vary
    opt = compute_optimal(one_size, TARGET)
    for answer in (opt.n_params, opt.tokens, opt.loss, predict_loss(one_size, N=1e7, D=1e10)):
        assert not answer.identified and answer.value is None and answer.answer is None
        assert str(answer).startswith("not identified") and "alpha" in answer.why


def test_a_flat_curve_is_not_identified():
    n, c, d = isoflop_grid()
    fit = fit_approach3(n, d, noisy(np.full(len(n), 3.8), 3), c, n_boot=N_BOOT)
    assert not any(e.identified for e in fit.estimates.values())
    assert compute_optimal(fit, TARGET).loss.value is None


def test_fit_names_bad_losses():
    with pytest.raises(ValueError, match="finite and positive"):
        fit_approach3([1e6, 1e7], [1e9, 1e9], [3.0, np.nan], [1e15, 1e15])


# ---------------------------------------------------------------------------------- identification rule


@pytest.mark.parametrize(
    ("low", "high", "log_scale", "verdict", "why"),
    [
        (0.30, 0.38, False, True, ""),
        (0.10, 0.65, False, False, "wide"),  # an exponent wider than 0.5
        (0.00, 0.20, False, False, "lower bound"),
        (0.00, np.log(20), True, False, "20×"),  # a scale parameter spanning 20×
        (0.00, np.log(5), True, True, ""),
    ],
)
def test_identification_rule(low, high, log_scale, verdict, why):
    ok, reason = judge("p", (low + high) / 2, low, high, (0.0, 3.0) if not log_scale else (-10.0, 10.0),
                       log_scale=log_scale)  # fmt: skip
    assert ok is verdict and why in reason


def test_a_derived_quantity_of_an_unidentified_parameter_has_no_number():
    deps = {"alpha": Estimate(0.3, 0.2, 0.4, True), "E": Estimate(1e-12, 0.0, 3.7, False, "E: lower bound")}
    out = derived(2.5, np.array([2.4, 2.6]), deps, "the loss")
    assert (out.value, out.low, out.high, out.identified) == (None, None, None, False) and "E" in out.why


# ---------------------------------------------------------------------------------------- approach 2


def test_isoflop_recovers_the_n_opt_exponent(dense):
    n, c, _, loss, _ = dense
    iso = fit_isoflop(n, c, loss, n_boot=200)
    a_true = TRUTH["beta"] / (TRUTH["alpha"] + TRUTH["beta"])
    assert all(m.n_opt is not None for m in iso.minima)
    assert iso.n_exponent.identified and iso.n_exponent.value == pytest.approx(a_true, abs=0.03)
    assert iso.n_exponent.low <= a_true <= iso.n_exponent.high
    assert iso.d_exponent.value == pytest.approx(1 - a_true, abs=0.03)
    assert iso.n_opt(TARGET).value == pytest.approx(true_optimum(TARGET)[0], rel=0.3)


def test_isoflop_reports_budgets_without_an_interior_minimum_and_then_no_exponent():
    log_n = np.log(np.geomspace(1e5, 1e6, 5))  # far below the optimum: loss still falling at the largest
    assert "lies outside the sampled" in budget_minimum(log_n, chinchilla(np.exp(log_n), 1e9), log_n, 1e16).why
    concave = 4.0 - 0.01 * (log_n - log_n.mean()) ** 2
    assert "not convex" in budget_minimum(log_n, concave, log_n, 1e16).why
    n, c, d = isoflop_grid(budgets=BUDGETS[:2])  # two budgets: a line with no residual to check
    iso = fit_isoflop(n, c, chinchilla(n, d), n_boot=20)
    assert not iso.n_exponent.identified and iso.n_opt(TARGET).value is None


# ------------------------------------------------------------------------------------------- MoE law


def moe_runs(granularities, seed):
    n, c, d = isoflop_grid(budgets=BUDGETS[::2], sizes=4, spread=5.0)
    n, c, d = (np.repeat(v, len(granularities)) for v in (n, c, d))
    g = np.tile(np.asarray(granularities, float), len(n) // len(granularities))
    p = MOE_TRUTH
    loss = p["E"] + (p["g"] / g ** p["gamma"] + p["A"]) / n ** p["alpha"] + p["B"] / d ** p["beta"]
    return n, d, g, noisy(loss, seed), c


def test_moe_law_recovers_the_granularity_exponent():
    fit = fit_granular_moe(*moe_runs([1, 2, 4, 8], 4), n_boot=20)
    gamma = fit.estimates["gamma"]
    assert gamma.identified and gamma.value == pytest.approx(MOE_TRUTH["gamma"], abs=0.12)
    assert gamma.low <= MOE_TRUTH["gamma"] <= gamma.high
    assert fit.estimates["alpha"].value == pytest.approx(MOE_TRUTH["alpha"], abs=0.03)


def test_two_granularities_cannot_identify_the_granularity_exponent():
    fit = fit_granular_moe(*moe_runs([1, 4], 5), n_boot=5)
    assert not fit.estimates["gamma"].identified and "cannot separate" in fit.estimates["gamma"].why
    assert compute_optimal(fit, TARGET, G=4).n_params.value is None


def test_leverage_of_a_moe_worth_a_known_parameter_multiplier(dense):
    """A MoE whose N active parameters act like m·N dense ones needs 1/m of the dense compute for the same
    optimal loss: the dense compute to match it, found numerically, is m times its own."""
    m = 4.0
    moe_loss = lambda n, d: chinchilla(m * n, d)  # noqa: E731
    ref_loss = true_optimum(TARGET, moe_loss)[1]
    ref = optimize.brentq(lambda lc: true_optimum(np.exp(lc))[1] - ref_loss, np.log(TARGET), np.log(TARGET) + 5)
    assert np.exp(ref) / TARGET == pytest.approx(m, rel=1e-4)  # the reference itself

    n, c, d = isoflop_grid(seed=6)
    moe = fit_approach3(n, d, noisy(moe_loss(n, d), 7), c, n_boot=N_BOOT)
    lev = efficiency_leverage(dense[-1], moe, TARGET)
    assert lev.identified and lev.value == pytest.approx(m, rel=0.3) and lev.low <= m <= lev.high


def test_leverage_against_an_unidentified_dense_fit_has_no_number(dense, one_size):
    lev = efficiency_leverage(one_size, dense[-1], TARGET)
    assert lev.value is None and "dense alpha" in lev.why


def test_t_interval_is_statsmodels_interval_of_the_mean_and_needs_two_values():
    from statsmodels.stats.weightstats import DescrStatsW

    x = np.array([4.01, 4.03, 3.99, 4.05, 4.02])
    assert t_interval(x) == pytest.approx(DescrStatsW(x).tconfint_mean(alpha=0.05))
    assert t_interval(x, level=0.9) == pytest.approx(DescrStatsW(x).tconfint_mean(alpha=0.1))
    assert all(np.isnan(t_interval([4.0])))
