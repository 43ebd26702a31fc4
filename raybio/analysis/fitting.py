"""Fit a `Law` to separately trained runs: Huber loss on log loss, L-BFGS-B from a grid, bootstrap over runs.

- **Objective** (Hoffmann et al. 2022, approach 3): Σ Huber_δ(log L̂ − log L) with δ = 1e-3, log L̂ by
  log-sum-exp, analytic gradient. It is divided by δ², so residuals of order δ give an objective of order
  one per run: Besiroglu et al. (2024) traced the original fit's non-convergence to a loss so small that
  the optimiser's relative tolerances stopped it at once.
- **Grid of initialisations**: Hoffmann et al. grid all five parameters (4,500 starts). Here the grid is
  over the exponents only, EXPONENT_GRID per exponent (7² = 49 for Chinchilla, 7³ for Krajewski); for
  fixed exponents the law is linear in its coefficients, so each grid point gets its coefficients by
  non-negative least squares on relative error (variable projection, as in Czech et al. 2026). L-BFGS-B
  then starts from the N_STARTS best grid points and the lowest objective wins. Convergence is checked
  on the projected gradient, not only on `res.success` (the line search often reports "abnormal
  termination" at an optimum where the Huber curvature changes).
- **Bounds**: exponents in [0, 3]; log-coefficients at the reference point within
  [log min L − 10, log max L + 1] (a term below e^−10 of the loss is nil; one above the largest loss
  cannot be at the runs' centre). Estimates that reach these bounds are not identified (estimates.py).
- **Bootstrap over runs**: runs are resampled with replacement within each stratum (compute budget), so
  every budget stays represented, and every refit runs the whole grid again (a start at the point
  estimate would understate the spread). 95 % percentile intervals.
- **One BLAS thread**: the problems are tiny (5-7 parameters); on a loaded machine OpenBLAS's threads
  made each L-BFGS-B step ~100× slower (measured 1.2 s against 0.012 s for one start).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize, nnls
from scipy.special import huber
from threadpoolctl import threadpool_limits

from raybio.analysis.estimates import Estimate, judge, percentile_interval
from raybio.analysis.laws import Law, centred_logs, log_predict

HUBER_DELTA = 1e-3
EXPONENT_BOUNDS = (0.0, 3.0)
LOG_COEF_BELOW, LOG_COEF_ABOVE = 10.0, 1.0
EXPONENT_GRID = (0.05, 0.15, 0.3, 0.5, 0.8, 1.2, 2.0)
N_STARTS = 4
GRAD_TOL = 1e-3  # projected-gradient ∞-norm (objective in units of δ²) that counts as converged
MIN_CONVERGED = 0.9  # of the bootstrap refits, below which no parameter is identified
RANK_TOL = 1e-6  # singular value / largest, of the column-normalised Jacobian, that counts as a null direction
# Tight tolerances: the objective is O(n) and flat near the optimum. Identified fits take < 200 iterations;
# a fit on a ridge (a parameter the runs do not determine) wanders until maxiter and is judged unconverged.
LBFGS_OPTIONS = {"maxiter": 1000, "ftol": 1e-14, "gtol": 1e-9}


def huber_objective(theta_P: np.ndarray, m_KNP: np.ndarray, log_loss_N: np.ndarray) -> tuple[float, np.ndarray]:
    """(Σ Huber_δ(r) / δ², its gradient) with r = log L̂ − log L."""
    pred_N, w_KN = log_predict(theta_P, m_KNP)
    r_N = pred_N - log_loss_N
    dr_N = np.clip(r_N, -HUBER_DELTA, HUBER_DELTA) / HUBER_DELTA**2
    return float(huber(HUBER_DELTA, r_N).sum() / HUBER_DELTA**2), np.einsum("n,kn,knp->p", dr_N, w_KN, m_KNP)


def bounds_for(law: Law, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) per parameter, the coefficients' relative to the runs' losses."""
    k, e = len(law.coefs), len(law.exponents)
    lo = np.r_[np.full(k, np.log(loss.min()) - LOG_COEF_BELOW), np.full(e, EXPONENT_BOUNDS[0])]
    hi = np.r_[np.full(k, np.log(loss.max()) + LOG_COEF_ABOVE), np.full(e, EXPONENT_BOUNDS[1])]
    return lo, hi


def grid_starts(law: Law, m_KNP: np.ndarray, loss: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[np.ndarray]:
    """The N_STARTS best points of the exponent grid, each with its NNLS coefficients."""
    k = len(law.coefs)
    scored = []
    for exps in itertools.product(EXPONENT_GRID, repeat=len(law.exponents)):
        theta = np.r_[np.zeros(k), exps]
        unit_KN = np.exp(m_KNP @ theta)  # each term with coefficient 1
        coef, _ = nnls(unit_KN.T / loss[:, None], np.ones(len(loss)))
        theta[:k] = np.clip(np.log(np.maximum(coef, 1e-300)), lo[:k], hi[:k])
        scored.append((huber_objective(theta, m_KNP, np.log(loss))[0], theta))
    scored.sort(key=lambda s: s[0])
    return [theta for _, theta in scored[:N_STARTS]]


def projected_gradient(theta: np.ndarray, grad: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """∞-norm of the gradient with the components that push against an active bound removed."""
    g = grad.copy()
    g[(theta <= lo) & (g > 0)] = 0.0
    g[(theta >= hi) & (g < 0)] = 0.0
    return float(np.abs(g).max())


def fit_from_grid(law: Law, m_KNP: np.ndarray, loss: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """(θ, converged, objective): L-BFGS-B from the grid's best starts, keeping the lowest objective."""
    log_loss = np.log(loss)
    best = None
    for x0 in grid_starts(law, m_KNP, loss, lo, hi):
        res = minimize(huber_objective, x0, args=(m_KNP, log_loss), jac=True, method="L-BFGS-B",
                       bounds=list(zip(lo, hi, strict=True)), options=LBFGS_OPTIONS)  # fmt: skip
        if best is None or res.fun < best.fun:
            best = res
    f, grad = huber_objective(best.x, m_KNP, log_loss)
    return best.x, projected_gradient(best.x, grad, lo, hi) <= GRAD_TOL * max(1.0, f), f


def structural_problems(law: Law, theta: np.ndarray, m_KNP: np.ndarray) -> dict[str, str]:
    """Parameters these runs cannot determine whatever the noise: name -> why.

    The Jacobian of log L̂ at θ has a zero column (the parameter changes no prediction, e.g. α when all
    runs share one N) or a null direction (parameters that trade off exactly, e.g. E and A then, or A, g
    and γ with two granularities). Bootstrap intervals can miss this: the refits start from the same grid."""
    _, w_KN = log_predict(theta, m_KNP)
    j_NP = np.einsum("kn,knp->np", w_KN, m_KNP)
    norms = np.linalg.norm(j_NP, axis=0)
    dead = norms <= RANK_TOL * norms.max()
    out = {law.names[i]: "it changes no predicted loss at these runs" for i in np.flatnonzero(dead)}
    live = np.flatnonzero(~dead)
    _, sv, vt = np.linalg.svd(j_NP[:, live] / norms[live], full_matrices=False)
    for row in vt[sv <= RANK_TOL * sv[0]]:
        tied = [law.names[live[i]] for i in np.flatnonzero(np.abs(row) > 0.1)]
        for name in tied:
            out.setdefault(name, f"these runs cannot separate {', '.join(tied)}")
    return out


def stratified_resample(strata: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row indices drawn with replacement within each stratum, as many as the stratum has."""
    strata = np.asarray(strata)
    groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    return np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])


@dataclass
class LawFit:
    """A law fitted to runs: point estimate, bootstrap refits, and a judged Estimate per parameter."""

    law: Law
    x0: dict[str, float]  # reference point (geometric means) the coefficients are centred on
    theta: np.ndarray
    converged: bool
    n_runs: int
    params: dict[str, float]  # point estimate in the papers' units
    estimates: dict[str, Estimate]
    boot_theta: np.ndarray = field(repr=False)  # converged refits, one row each
    boot_converged: float = 1.0  # fraction of refits that converged

    def predict(self, theta: np.ndarray | None = None, **features) -> np.ndarray:
        """L̂ at the given features (arrays broadcast), from θ (default: the point estimate)."""
        m_KNP = self.law.design(centred_logs(self.law, features, self.x0))
        return np.exp(log_predict(self.theta if theta is None else theta, m_KNP)[0])

    def boot_params(self) -> dict[str, np.ndarray]:
        return self.law.public(self.boot_theta, self.x0)


def fit_law(
    law: Law,
    features: dict[str, np.ndarray],
    loss: np.ndarray,
    *,
    strata: np.ndarray | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> LawFit:
    """Fit `law` to runs (one row each), with `n_boot` bootstrap refits resampled within `strata`
    (e.g. the compute budget; None: one stratum)."""
    loss = np.asarray(loss, float)
    if np.any(~np.isfinite(loss)) or np.any(loss <= 0):
        raise ValueError(f"{law.name}: losses must be finite and positive; drop diverged runs first")
    sizes = {f: np.size(features[f]) for f in law.features if f in features}
    if any(v != len(loss) for v in sizes.values()):
        raise ValueError(f"{law.name}: {len(loss)} losses but feature lengths {sizes}; pass one value per run")
    x0 = {f: float(np.exp(np.log(np.asarray(features[f], float)).mean())) for f in law.features}
    m_KNP = law.design(centred_logs(law, features, x0))
    lo, hi = bounds_for(law, loss)
    strata = np.zeros(len(loss)) if strata is None else np.asarray(strata)
    rng = np.random.default_rng(seed)
    with threadpool_limits(limits=1, user_api="blas"):
        theta, converged, _ = fit_from_grid(law, m_KNP, loss, lo, hi)
        # Without a converged point fit or a spare run the verdict is already "not identified".
        draws = n_boot if converged and len(loss) > len(law.names) else 0
        boot, frac = _bootstrap(law, m_KNP, loss, (lo, hi), strata, draws, rng)
    problem = _fit_problem(law, converged, len(loss), n_boot, frac)
    structural = structural_problems(law, theta, m_KNP) if not problem else {}
    est = _estimates(law, theta, boot, x0, (lo, hi), problem, structural)
    params = {k: float(v[0]) for k, v in law.public(theta, x0).items()}
    return LawFit(law, x0, theta, converged, len(loss), params, est, boot, frac)


def _bootstrap(law: Law, m_KNP, loss, bounds, strata, n_boot: int, rng) -> tuple[np.ndarray, float]:
    """(converged refits' θ rows, their fraction of n_boot); stops once the failures alone settle the verdict."""
    rows, failed = [], 0
    for _ in range(n_boot):
        idx = stratified_resample(strata, rng)
        theta, ok, _ = fit_from_grid(law, m_KNP[:, idx], loss[idx], *bounds)
        if ok:
            rows.append(theta)
        else:
            failed += 1
            if failed > (1 - MIN_CONVERGED) * n_boot:
                break
    return np.array(rows).reshape(-1, len(law.names)), len(rows) / n_boot if n_boot else 0.0


def _fit_problem(law: Law, converged: bool, n_runs: int, n_boot: int, frac: float) -> str:
    """Why no parameter of the fit can be identified, or "" when the fit itself is sound."""
    if not converged:
        return "the fit did not converge (typically a ridge: parameters the runs cannot separate)"
    if n_runs <= len(law.names):
        return f"{n_runs} runs for {len(law.names)} parameters"
    if n_boot == 0:
        return "no bootstrap refits (n_boot = 0)"
    if frac < MIN_CONVERGED:
        return f"more than {1 - MIN_CONVERGED:.0%} of the bootstrap refits did not converge"
    return ""


def _estimates(law: Law, theta, boot, x0, bounds, problem: str, structural: dict[str, str]) -> dict[str, Estimate]:
    """Public-unit values and intervals; the verdict from the fitting coordinates (a coefficient's term at
    the runs' centre, whose spread is what the runs determine, rather than its value extrapolated to N = 1)."""
    point, draws = law.public(theta, x0), law.public(boot, x0)
    out = {}
    for i, name in enumerate(law.names):
        value = float(point[name][0])
        if problem:
            out[name] = Estimate(value, None, None, False, problem)
            continue
        low, high = percentile_interval(draws[name])
        if name in structural:
            out[name] = Estimate(value, low, high, False, f"{name}: {structural[name]}")
            continue
        t_low, t_high = percentile_interval(boot[:, i])
        label = f"{name} (its term at the runs' centre)" if i < len(law.coefs) and law.terms[i].powers else name
        ok, why = judge(label, theta[i], t_low, t_high, (bounds[0][i], bounds[1][i]), log_scale=i < len(law.coefs))
        out[name] = Estimate(value, low, high, ok, why)
    return out
