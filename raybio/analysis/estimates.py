"""Estimates with intervals, and the rule that decides whether the runs identify them.

A parameter is **not identified** when its 95 % interval

- touches a bound of the optimisation or of its physical range (the data would have pushed it further), or
- is too wide to mean anything: a positive scale parameter spanning more than MAX_SCALE_RATIO (10×), or an
  exponent wider than MAX_EXPONENT_WIDTH (0.5). The exponent rule is the scale rule carried over: an
  exponent uncertain by w makes its term uncertain by 100^w over two decades of its variable, and
  100^0.5 = 10×. A width of 0.5 also spans most of the published range of LM exponents (0.05 to 0.6).

A quantity derived from parameters (a predicted loss, N_opt, a leverage) is identified only when every
parameter it depends on is; otherwise it carries no number at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

CI_LEVEL = 0.95
MAX_SCALE_RATIO = 10.0
MAX_EXPONENT_WIDTH = 0.5
BOUND_TOLERANCE = 1e-3  # × the bound range: L-BFGS-B puts a solution exactly on a bound it presses against


@dataclass(frozen=True)
class Estimate:
    """A value with its percentile interval; `value`, `low`, `high` are None where no answer can be given."""

    value: float | None
    low: float | None
    high: float | None
    identified: bool
    why: str = ""

    @property
    def answer(self) -> float | None:
        """The value when identified, else None: what a report may present as a result."""
        return self.value if self.identified else None

    def __str__(self) -> str:
        if not self.identified:
            return f"not identified ({self.why})"
        return f"{self.value:.4g} [{self.low:.4g}, {self.high:.4g}]"


def t_interval(values: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """Student-t interval of the mean of `values` (independent replicates); (nan, nan) from fewer than two."""
    x = np.asarray(values, float)
    if len(x) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def percentile_interval(draws: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """Equal-tailed percentile interval of bootstrap draws (NaN draws, failed refits, are left out)."""
    q = (1 - level) / 2
    lo, hi = np.nanquantile(np.asarray(draws, float), [q, 1 - q])
    return float(lo), float(hi)


def judge(
    name: str, point: float, low: float, high: float, bounds: tuple[float, float], *, log_scale: bool
) -> tuple[bool, str]:
    """(identified, why) for one parameter from its interval in fitting coordinates.

    `log_scale`: the values are logs of a positive scale parameter (ratio rule); else an exponent (width rule)."""
    tol = BOUND_TOLERANCE * (bounds[1] - bounds[0])
    shown = np.exp(bounds) if log_scale else bounds
    if min(point, low) <= bounds[0] + tol:
        return False, f"{name}: its interval reaches the lower bound {shown[0]:.3g}"
    if max(point, high) >= bounds[1] - tol:
        return False, f"{name}: its interval reaches the upper bound {shown[1]:.3g}"
    if log_scale and np.exp(high - low) > MAX_SCALE_RATIO:
        return False, f"{name}: its interval spans {np.exp(high - low):.3g}× (> {MAX_SCALE_RATIO:g}×)"
    if not log_scale and high - low > MAX_EXPONENT_WIDTH:
        return False, f"{name}: its interval is {high - low:.3g} wide (> {MAX_EXPONENT_WIDTH:g})"
    return True, ""


def derived(point: float, draws: np.ndarray, depends: dict[str, Estimate], what: str) -> Estimate:
    """A derived quantity: the point from the full fit, the interval from the refits, identified only
    when all of `depends` (name -> Estimate) are; otherwise no number."""
    missing = [name for name, est in depends.items() if not est.identified]
    if missing:
        return Estimate(None, None, None, False, f"{what} depends on {', '.join(missing)}, not identified")
    if len(draws) == 0:
        return Estimate(None, None, None, False, f"{what}: no bootstrap refits")
    low, high = percentile_interval(draws)
    return Estimate(float(point), low, high, True)
