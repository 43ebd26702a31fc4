"""The previous scaling API (a `Fit` record with a hold-out), kept for study_fits.py and report.py until the
report stops fitting L(C) to one run's evaluations: that is not a scaling law (see scaling.py).

The fits now run on the shared machinery (fitting.py: Huber on log loss, L-BFGS-B from a grid, a case
bootstrap that refits from the grid) rather than least squares with a residual bootstrap started at the
point estimate; the routed law, linear in log space, gets t-intervals (exact under normal errors, and
honest with 3 points where a bootstrap has 27 possible resamples).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from raybio.analysis.estimates import CI_LEVEL
from raybio.analysis.fitting import fit_law
from raybio.analysis.laws import CHINCHILLA, COMPUTE, Law, compute_optimum

SAME_SIZE = 1.25  # active-parameter ratio below which trials count as one model size


@dataclass
class Holdout:
    """Points the fit never saw, their predictions and relative errors |pred − actual| / actual."""

    x: list  # the held-out inputs (compute, or (N, D), or (N, E))
    actual: list[float]
    predicted: list[float]

    @property
    def rel_error(self) -> list[float]:
        return [abs(p - a) / a for p, a in zip(self.predicted, self.actual, strict=True)]

    @property
    def max_rel_error(self) -> float:
        return max(self.rel_error)


@dataclass
class Fit:
    """A fitted law: parameter values, their intervals, and the hold-out check."""

    law: str  # the formula, for reports
    params: dict[str, float]
    ci: dict[str, tuple[float, float] | None]
    n_points: int
    rmse: float
    holdout: Holdout | None
    predict: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    boot: np.ndarray = field(repr=False, default_factory=lambda: np.empty((0, 0)))  # refits' parameter rows
    boot_predict: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = field(repr=False, default=None)

    def band(self, x: np.ndarray, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray] | None:
        """Pointwise bootstrap interval of the prediction at `x`, or None without bootstrap refits."""
        if self.boot_predict is None or len(self.boot) == 0:
            return None
        preds = np.stack([self.boot_predict(p, x) for p in self.boot])
        q = (1 - level) / 2
        return np.quantile(preds, q, axis=0), np.quantile(preds, 1 - q, axis=0)


def _law_fit(law: Law, features: Callable, x: np.ndarray, loss: np.ndarray, order, n_boot, holdout, seed) -> Fit:
    """A `Law` fitted with the shared machinery, wrapped as a legacy `Fit` (with its hold-out refit)."""
    fit = fit_law(law, features(x), loss, n_boot=n_boot, seed=seed)

    def pred(theta, v):
        return fit.predict(theta, **features(v))

    def refit(v, y):
        refitted = fit_law(law, features(v), y, n_boot=0)
        return lambda u: refitted.predict(**features(u))

    ci = {k: None if e.low is None else (e.low, e.high) for k, e in fit.estimates.items()}
    return Fit(
        law=law.formula,
        params=fit.params,
        ci=ci,
        n_points=len(loss),
        rmse=_rmse(fit.predict(**features(x)), loss),
        holdout=_holdout(refit, x, loss, order=order, k=holdout, n_params=len(law.names)),
        predict=lambda v: pred(None, v),
        boot=fit.boot_theta,
        boot_predict=pred,
    )


def fit_compute_law(
    compute: np.ndarray, loss: np.ndarray, *, n_boot: int = 300, holdout: int = 1, seed: int = 0
) -> Fit:
    """L(C) = E + A·C^(−α); intervals from a case bootstrap over the points."""
    c, loss = np.asarray(compute, float), np.asarray(loss, float)
    return _law_fit(COMPUTE, lambda v: {"C": np.asarray(v, float)}, c, loss, c, n_boot, holdout, seed)


def fit_chinchilla(
    n_params: np.ndarray, tokens: np.ndarray, loss: np.ndarray, *, n_boot: int = 300, holdout: int = 1, seed: int = 0
) -> Fit:
    """L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022); the hold-out drops the largest N·D."""
    n, d, loss = np.asarray(n_params, float), np.asarray(tokens, float), np.asarray(loss, float)

    def features(v):
        v = np.atleast_2d(np.asarray(v, float))
        return {"N": v[:, 0], "D": v[:, 1]}

    return _law_fit(CHINCHILLA, features, np.stack([n, d], axis=1), loss, n * d, n_boot, holdout, seed)


def chinchilla_optimal_n(fit: Fit, compute: float, flops_per_param_token: float = 6.0) -> float:
    """N that minimises the fitted L(N, C/(k·N)) at training compute C (Hoffmann et al. eq. 4)."""
    p = fit.params
    return float(compute_optimum(p["E"], p["A"], p["alpha"], p["B"], p["beta"], compute, flops_per_param_token)[0])


# ------------------------------------- log L(N, Ê) = a·log N + b·log Ê + c·log N·log Ê + d (Clark et al.)


def _routed_design(v: np.ndarray, with_n: bool) -> np.ndarray:
    v = np.atleast_2d(np.asarray(v, float))
    ln, le = np.log(v[:, 0]), np.log(v[:, 1])
    cols = [ln, le, ln * le, np.ones_like(ln)] if with_n else [le, np.ones_like(le)]
    return np.stack(cols, axis=1)


def fit_routed(
    n_params: np.ndarray, experts: np.ndarray, loss: np.ndarray, *, n_boot: int = 300, holdout: int = 1, seed: int = 0
) -> Fit:
    """Clark et al. (2022) routed law, linear in log space, with Ê = the expert count E (no saturation).

    With a single model size N (active parameters within SAME_SIZE of each other, routers aside) a and c
    are not identifiable: the fit is then log L = b·log E + d' and a, c are reported as None. Intervals are
    ordinary least-squares t-intervals; `n_boot` and `seed` are accepted for the old signature and unused."""
    nv, ev, loss = np.asarray(n_params, float), np.asarray(experts, float), np.asarray(loss, float)
    with_n = nv.max() / nv.min() > SAME_SIZE
    ne = np.stack([nv, ev], axis=1)
    names = ["a", "b", "c", "d"] if with_n else ["b", "d"]

    def fit(v, ll):
        return np.linalg.lstsq(_routed_design(v, with_n), np.log(ll), rcond=None)[0]

    def pred(p, v):
        return np.exp(_routed_design(v, with_n) @ p)

    p = fit(ne, loss)
    half = _t_half_widths(_routed_design(ne, with_n), np.log(loss), p)
    params: dict = dict.fromkeys("abcd")
    ci: dict = dict.fromkeys("abcd")
    for i, name in enumerate(names):
        params[name] = float(p[i])
        ci[name] = None if half is None else (float(p[i] - half[i]), float(p[i] + half[i]))
    return Fit(
        law="log L = a·log N + b·log Ê + c·log N·log Ê + d",
        params=params,
        ci=ci,
        n_points=len(loss),
        rmse=_rmse(pred(p, ne), loss),
        holdout=_holdout(
            lambda v, y: lambda u: pred(fit(v, y), u), ne, loss, order=nv * ev, k=holdout, n_params=len(names)
        ),
        predict=lambda v: pred(p, v),
    )


def _t_half_widths(x: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray | None:
    """Half-widths of the OLS t-intervals at CI_LEVEL; None without a residual degree of freedom."""
    dof = len(y) - x.shape[1]
    if dof < 1:
        return None
    s2 = float(np.sum((y - x @ p) ** 2)) / dof
    se = np.sqrt(np.diag(s2 * np.linalg.pinv(x.T @ x)))
    return stats.t.ppf(0.5 + CI_LEVEL / 2, dof) * se


# ----------------------------------------------------------------------------- shared


def _holdout(refit, x, y, *, order: np.ndarray, k: int, n_params: int) -> Holdout | None:
    """Refit without the k points largest in `order` (`refit(x, y)` returns a predictor of x) and predict
    them; None when too few points would remain."""
    if k < 1 or len(y) - k < n_params:
        return None
    idx = np.argsort(order)
    train, test = idx[:-k], idx[-k:]
    predicted = np.atleast_1d(refit(x[train], y[train])(x[test]))
    held = [x[i].tolist() if np.ndim(x[i]) else float(x[i]) for i in test]
    return Holdout(x=held, actual=[float(y[i]) for i in test], predicted=[float(v) for v in predicted])


def _rmse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - y) ** 2)))
