"""Chinchilla approach 2 (IsoFLOP profiles): a parabola in log N per compute budget gives N_opt(C), and
N_opt ∝ C^a, D_opt ∝ C^b follow by linear regression in log-log.

It assumes no functional form for L, which makes it a cross-check on approach 3; but a parabola is only
a local approximation, so a budget whose sizes are not centred on its optimum biases N_opt (Czech et al.
2026). A budget whose parabola is not convex, or whose minimum lies outside its sampled sizes, has no
interior minimum: it is reported and left out of the regression. The regression uses each budget's
nominal compute (never C = 6·N·D, which would build the answer into the fit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from raybio.analysis.estimates import Estimate, derived, judge, percentile_interval
from raybio.analysis.fitting import MIN_CONVERGED, stratified_resample
from raybio.units import si

MIN_SIZES = 3  # distinct sizes for a parabola
MIN_BUDGETS = 3  # budgets with an interior minimum for a power law with a residual to check
ALLOCATION_RANGE = (0.0, 1.0)  # with C ∝ N·D, N_opt ∝ C^a and D_opt ∝ C^(1−a): a outside [0, 1] is unphysical


@dataclass(frozen=True)
class BudgetMinimum:
    """One budget's parabola minimum, or why it has none."""

    compute: float
    n_runs: int
    n_opt: float | None
    tokens_opt: float | None
    why: str = ""
    parabola: tuple[float, float, float] | None = None  # (c2, c1, c0) of loss in log N, where fitted


@dataclass
class IsoFlopFit:
    """N_opt ∝ C^a and D_opt ∝ C^b: the exponents as Estimates, and predictions at a new compute."""

    minima: list[BudgetMinimum]
    n_exponent: Estimate  # a
    d_exponent: Estimate  # b
    lines: np.ndarray  # [[a, log-intercept], [b, log-intercept]] of the point fit
    boot_lines: np.ndarray = field(repr=False)  # (draws, 2, 2), NaN where a draw had < 2 minima

    def n_opt(self, compute: float) -> Estimate:
        return self._at(compute, 0, self.n_exponent, "N_opt")

    def tokens_opt(self, compute: float) -> Estimate:
        return self._at(compute, 1, self.d_exponent, "D_opt")

    def _at(self, compute: float, i: int, exponent: Estimate, what: str) -> Estimate:
        lc = np.log(compute)
        draws = np.exp(self.boot_lines[:, i, 0] * lc + self.boot_lines[:, i, 1])
        point = float(np.exp(self.lines[i, 0] * lc + self.lines[i, 1]))
        where = f"{what} at C = {si(compute, 'FLOP')}"
        return derived(point, draws[np.isfinite(draws)], {"the exponent": exponent}, where)


def budget_minimum(log_n: np.ndarray, loss: np.ndarray, log_fpt: np.ndarray, compute: float) -> BudgetMinimum:
    """The minimum of loss ≈ c2·(log N)² + c1·log N + c0 over one budget's runs; D_opt = C / flops-per-token
    at N_opt (interpolated in log-log between the runs)."""
    sizes = len(np.unique(log_n))
    if sizes < MIN_SIZES:
        return BudgetMinimum(compute, len(loss), None, None, f"{sizes} model sizes; a parabola needs {MIN_SIZES}")
    coef = np.polyfit(log_n, loss, 2)
    c2, c1, _ = coef
    parabola = tuple(float(c) for c in coef)
    if c2 <= 0:
        why = "no interior minimum: the parabola is not convex"
        return BudgetMinimum(compute, len(loss), None, None, why, parabola)
    x = -c1 / (2 * c2)
    if not log_n.min() < x < log_n.max():
        where = f"N = {si(np.exp(x))} lies outside the sampled {si(np.exp(log_n.min()))}–{si(np.exp(log_n.max()))}"
        return BudgetMinimum(compute, len(loss), None, None, f"no interior minimum: {where}", parabola)
    order = np.argsort(log_n)
    fpt = np.exp(np.interp(x, log_n[order], log_fpt[order]))
    return BudgetMinimum(compute, len(loss), float(np.exp(x)), float(compute / fpt), parabola=parabola)


def _minima(log_n, loss, log_fpt, budget) -> list[BudgetMinimum]:
    return [budget_minimum(log_n[budget == c], loss[budget == c], log_fpt[budget == c], c) for c in np.unique(budget)]


def _lines(minima: list[BudgetMinimum]) -> np.ndarray:
    """[[a, intercept], [b, intercept]] by least squares in log-log; NaN with fewer than 2 minima."""
    found = [m for m in minima if m.n_opt is not None]
    if len(found) < 2:
        return np.full((2, 2), np.nan)
    lc = np.log([m.compute for m in found])
    return np.stack([np.polyfit(lc, np.log([m.n_opt for m in found]), 1),
                     np.polyfit(lc, np.log([m.tokens_opt for m in found]), 1)])  # fmt: skip


def fit_isoflop(n_params, budget, loss, *, flops_per_token=None, n_boot: int = 200, seed: int = 0) -> IsoFlopFit:
    """Approach 2 on runs with active parameters N, nominal compute `budget` and final loss.

    flops_per_token per run (default 6·N). Intervals: runs resampled within each budget, everything refitted."""
    log_n, loss, budget = np.log(np.asarray(n_params, float)), np.asarray(loss, float), np.asarray(budget, float)
    fpt = 6.0 * np.exp(log_n) if flops_per_token is None else np.asarray(flops_per_token, float)
    log_fpt = np.log(fpt)
    minima = _minima(log_n, loss, log_fpt, budget)
    lines = _lines(minima)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        idx = stratified_resample(budget, rng)
        boot.append(_lines(_minima(log_n[idx], loss[idx], log_fpt[idx], budget[idx])))
    boot_lines = np.array(boot).reshape(-1, 2, 2)
    found = sum(m.n_opt is not None for m in minima)
    ok = float(np.isfinite(boot_lines[:, 0, 0]).mean()) if n_boot else 0.0
    problem = (
        f"{found} budget(s) with an interior minimum; a power law needs {MIN_BUDGETS}" if found < MIN_BUDGETS
        else "no bootstrap refits (n_boot = 0)" if not n_boot
        else f"only {ok:.0%} of the resamples had 2 budgets with a minimum" if ok < MIN_CONVERGED
        else ""
    )  # fmt: skip
    exps = [_exponent(name, lines[i, 0], boot_lines[:, i, 0], problem) for i, name in enumerate(("a", "b"))]
    return IsoFlopFit(minima, exps[0], exps[1], lines, boot_lines)


def _exponent(name: str, point: float, draws: np.ndarray, problem: str) -> Estimate:
    if problem:
        return Estimate(None if np.isnan(point) else float(point), None, None, False, problem)
    low, high = percentile_interval(draws)
    ok, why = judge(name, point, low, high, ALLOCATION_RANGE, log_scale=False)
    return Estimate(float(point), low, high, ok, why)
