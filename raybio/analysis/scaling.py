"""Scaling-law fits: loss vs compute, Chinchilla L(N, D), and the routed law of Clark et al. (2022).

Each fit is nonlinear least squares (scipy.optimize.least_squares) or linear least squares
(numpy.linalg.lstsq) on the data, with

- a **residual bootstrap** for confidence intervals: the fitted curve plus resampled residuals
  is refitted `n_boot` times (case resampling degenerates with a handful of trials, which is
  what a sweep has); intervals are None when there are no more points than parameters;
- a **hold-out check**: the law is refitted without the `holdout` largest points (by compute),
  which then are predicted; the relative errors are reported.

Inputs are plain arrays; `raybio.analysis.study_fits` turns a sweep's tables into them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

CI_LEVEL = 0.95
MAX_NFEV = 300  # per least-squares start; flat curves otherwise wander along the E–α ridge
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
    """A fitted law: parameter values, their bootstrap intervals, and the hold-out check."""

    law: str  # the formula, for reports
    params: dict[str, float]
    ci: dict[str, tuple[float, float] | None]
    n_points: int
    rmse: float
    holdout: Holdout | None
    predict: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    # Parameter vectors of the bootstrap refits (rows), for prediction bands.
    boot: np.ndarray = field(repr=False, default_factory=lambda: np.empty((0, 0)))
    boot_predict: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = field(repr=False, default=None)

    def band(self, x: np.ndarray, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray] | None:
        """Pointwise bootstrap interval of the prediction at `x`, or None without bootstrap refits."""
        if self.boot_predict is None or len(self.boot) == 0:
            return None
        preds = np.stack([self.boot_predict(p, x) for p in self.boot])
        q = (1 - level) / 2
        return np.quantile(preds, q, axis=0), np.quantile(preds, 1 - q, axis=0)


# ----------------------------------------------------------------------------- L(C) = E + A·C^(−α)


def _compute_model(p: np.ndarray, logc: np.ndarray) -> np.ndarray:
    e, log_a, alpha = p
    return e + np.exp(log_a - alpha * logc)


def _fit_compute(logc: np.ndarray, loss: np.ndarray, p0: np.ndarray | None = None) -> np.ndarray:
    # Several starts: the exponent and the floor trade off against each other on short curves.
    # A bootstrap refit starts from the point estimate instead (p0): same basin, far fewer steps.
    e0 = 0.5 * loss.min()
    starts = (
        [p0]
        if p0 is not None
        else [[e0, np.log(max(loss.max() - e0, 1e-6)) + a0 * logc.min(), a0] for a0 in (0.1, 0.3, 1.0)]
    )
    lo, hi = np.array([0.0, -np.inf, 0.0]), np.array([loss.min(), np.inf, 5.0])
    return _least_squares_from(starts, lambda p: _compute_model(p, logc) - loss, lo, hi)


def _least_squares_from(starts, residuals, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The best of bounded `least_squares` fits from several starts (these surfaces have shallow local minima)."""
    best = None
    for x0 in starts:
        res = least_squares(residuals, x0=np.clip(x0, lo + 1e-12, hi - 1e-12), bounds=(lo, hi), x_scale="jac",
                            max_nfev=MAX_NFEV)  # fmt: skip
        if best is None or res.cost < best.cost:
            best = res
    return best.x


def fit_compute_law(
    compute: np.ndarray, loss: np.ndarray, *, n_boot: int = 300, holdout: int = 1, seed: int = 0
) -> Fit:
    """L(C) = E + A·C^(−α) by least squares; C is normalised by its geometric mean inside the fit."""
    c, loss = np.asarray(compute, float), np.asarray(loss, float)
    c0 = float(np.exp(np.log(c).mean()))

    def fit(cc, ll, p0=None):
        return _fit_compute(np.log(cc / c0), ll, p0)

    def pred(p, x):
        return _compute_model(p, np.log(np.asarray(x, float) / c0))

    p, boot, ci_raw = _fit_with_bootstrap(fit, pred, c, loss, n_params=3, n_boot=n_boot, seed=seed)

    def public(q):  # A in the units of C: A·C^-α = exp(log_a)·(C/c0)^-α
        return {"E": q[0], "A": float(np.exp(q[1]) * c0 ** q[2]), "alpha": q[2]}

    return Fit(
        law="L(C) = E + A·C^(−α)",
        params=public(p),
        ci=_ci(public, p, boot, ci_raw),
        n_points=len(c),
        rmse=_rmse(pred(p, c), loss),
        holdout=_holdout(fit, pred, c, loss, order=c, k=holdout, n_params=3),
        predict=lambda x: pred(p, x),
        boot=boot,
        boot_predict=pred,
    )


# ------------------------------------------------------------------ L(N, D) = E + A/N^α + B/D^β


def _chinchilla_model(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    e, log_a, alpha, log_b, beta = p
    return e + np.exp(log_a - alpha * x[:, 0]) + np.exp(log_b - beta * x[:, 1])


def _fit_chinchilla(x: np.ndarray, loss: np.ndarray, p0: np.ndarray | None = None) -> np.ndarray:
    gap = np.log(max(loss.max() - 0.5 * loss.min(), 1e-6) / 2)
    # A grid of starts, as Hoffmann et al. do: the surface has several shallow minima.
    grid = [[0.5 * loss.min(), gap, a0, gap, b0] for a0 in (0.2, 0.5, 1.0) for b0 in (0.2, 0.5, 1.0)]
    lo, hi = np.array([0.0, -np.inf, 0.0, -np.inf, 0.0]), np.array([loss.min(), np.inf, 5.0, np.inf, 5.0])
    return _least_squares_from([p0] if p0 is not None else grid, lambda p: _chinchilla_model(p, x) - loss, lo, hi)


def fit_chinchilla(
    n_params: np.ndarray, tokens: np.ndarray, loss: np.ndarray, *, n_boot: int = 300, holdout: int = 1, seed: int = 0
) -> Fit:
    """L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022); the hold-out drops the largest N·D."""
    n, d, loss = np.asarray(n_params, float), np.asarray(tokens, float), np.asarray(loss, float)
    n0, d0 = float(np.exp(np.log(n).mean())), float(np.exp(np.log(d).mean()))
    xy = np.stack([n, d], axis=1)

    def scaled(v):
        v = np.atleast_2d(np.asarray(v, float))
        return np.stack([np.log(v[:, 0] / n0), np.log(v[:, 1] / d0)], axis=1)

    def fit(v, ll, p0=None):
        return _fit_chinchilla(scaled(v), ll, p0)

    def pred(p, v):
        return _chinchilla_model(p, scaled(v))

    p, boot, ci_raw = _fit_with_bootstrap(fit, pred, xy, loss, n_params=5, n_boot=n_boot, seed=seed)

    def public(q):
        return {
            "E": q[0],
            "A": float(np.exp(q[1]) * n0 ** q[2]),
            "alpha": q[2],
            "B": float(np.exp(q[3]) * d0 ** q[4]),
            "beta": q[4],
        }

    return Fit(
        law="L(N, D) = E + A/N^α + B/D^β",
        params=public(p),
        ci=_ci(public, p, boot, ci_raw),
        n_points=len(loss),
        rmse=_rmse(pred(p, xy), loss),
        holdout=_holdout(fit, pred, xy, loss, order=n * d, k=holdout, n_params=5),
        predict=lambda v: pred(p, v),
        boot=boot,
        boot_predict=pred,
    )


def chinchilla_optimal_n(fit: Fit, compute: float, flops_per_param_token: float = 6.0) -> float:
    """N that minimises the fitted L(N, C/(k·N)) at training compute C (Hoffmann et al. eq. 4)."""
    a, alpha, b, beta = (fit.params[k] for k in ("A", "alpha", "B", "beta"))
    g = (alpha * a / (beta * b)) ** (1 / (alpha + beta))
    return float(g * (compute / flops_per_param_token) ** (beta / (alpha + beta)))


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

    With a single model size N (an expert-count study at fixed width: active parameters within
    SAME_SIZE of each other, routers aside) a and c are not identifiable: the fit is then
    log L = b·log E + d' and a, c are reported as None.
    """
    nv, ev, loss = np.asarray(n_params, float), np.asarray(experts, float), np.asarray(loss, float)
    with_n = nv.max() / nv.min() > SAME_SIZE
    ne = np.stack([nv, ev], axis=1)
    k = 4 if with_n else 2

    def fit(v, ll, p0=None):  # linear: no start needed
        return np.linalg.lstsq(_routed_design(v, with_n), np.log(ll), rcond=None)[0]

    def pred(p, v):
        return np.exp(_routed_design(v, with_n) @ p)

    p, boot, ci_raw = _fit_with_bootstrap(fit, pred, ne, loss, n_params=k, n_boot=n_boot, seed=seed)

    def public(q):
        if with_n:
            return {"a": q[0], "b": q[1], "c": q[2], "d": q[3]}
        return {"a": None, "b": q[0], "c": None, "d": q[1]}

    return Fit(
        law="log L = a·log N + b·log Ê + c·log N·log Ê + d",
        params=public(p),
        ci=_ci(public, p, boot, ci_raw),
        n_points=len(loss),
        rmse=_rmse(pred(p, ne), loss),
        holdout=_holdout(fit, pred, ne, loss, order=nv * ev, k=holdout, n_params=k),
        predict=lambda v: pred(p, v),
        boot=boot,
        boot_predict=pred,
    )


# ----------------------------------------------------------------------------- shared machinery


def _fit_with_bootstrap(fit, pred, x, y, *, n_params: int, n_boot: int, seed: int):
    """(point estimate, bootstrap parameter rows, whether CIs exist)."""
    p = np.asarray(fit(x, y), float)
    if len(y) <= n_params or n_boot == 0:
        return p, np.empty((0, len(p))), False
    fitted = pred(p, x)
    # Residuals rescaled for the parameters spent (Davison & Hinkley's leverage-free correction).
    resid = (y - fitted) * np.sqrt(len(y) / (len(y) - n_params))
    rng = np.random.default_rng(seed)
    boot = np.stack([fit(x, fitted + rng.choice(resid, size=len(y), replace=True), p) for _ in range(n_boot)])
    return p, boot, True


def _ci(public, p: np.ndarray, boot: np.ndarray, have: bool) -> dict[str, tuple[float, float] | None]:
    names = public(p).keys()
    if not have:
        return dict.fromkeys(names)
    rows = [public(b) for b in boot]
    q = (1 - CI_LEVEL) / 2
    out = {}
    for name in names:
        vals = np.array([r[name] for r in rows if r[name] is not None], float)
        out[name] = (float(np.quantile(vals, q)), float(np.quantile(vals, 1 - q))) if len(vals) else None
    return out


def _holdout(fit, pred, x, y, *, order: np.ndarray, k: int, n_params: int) -> Holdout | None:
    """Refit without the k points largest in `order`; None when too few points would remain."""
    if k < 1 or len(y) - k < n_params:
        return None
    idx = np.argsort(order)
    train, test = idx[:-k], idx[-k:]
    p = fit(x[train], y[train])
    predicted = np.atleast_1d(pred(p, x[test]))
    held = [x[i].tolist() if np.ndim(x[i]) else float(x[i]) for i in test]
    return Holdout(x=held, actual=[float(y[i]) for i in test], predicted=[float(v) for v in predicted])


def _rmse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - y) ** 2)))
