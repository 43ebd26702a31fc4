"""Verdicts from replicates: a paired test across training seeds, an effect size, and one word for it.

The rule (docs/findings.md states it too): a claim's treatment is compared with its baseline
seed by seed (the same seed's trials subtracted, so seed-to-seed noise common to both
cancels). With n seeds:

- `reproduced`: the paper's direction, two-sided paired t-test p < 0.05, and n >= MIN_SEEDS;
- `opposite, significant`: the other direction with p < 0.05 and n >= MIN_SEEDS;
- `same direction, not significant` / `opposite, not significant`: p >= 0.05;
- `same direction, too few seeds` / `opposite, too few seeds`: p < 0.05 but n < MIN_SEEDS;
- `one seed: no verdict`: n = 1 (nothing to test against);
- `not tested (...)`: the run's regime differs from the paper's (context, scale, objective).

Beside the t-test every comparison carries the exact Wilcoxon signed-rank p (with 5 seeds its
smallest two-sided value is 2/32 = 0.0625, so it can only confirm with 6 or more), the mean
difference with its 95 % t-interval, and the effect in seed standard deviations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from raybio.analysis.estimates import t_interval

ALPHA = 0.05
MIN_SEEDS = 5


@dataclass(frozen=True)
class Verdict:
    label: str
    n_seeds: int
    mean_diff: float  # treatment minus baseline, mean over seeds (the metric's units)
    ci_low: float
    ci_high: float
    p_t: float  # two-sided paired t-test
    p_wilcoxon: float  # two-sided exact Wilcoxon signed-rank
    effect_sd: float  # mean difference / pooled seed-to-seed SD of the two arms (NaN with one seed)

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self, unit: str = "nats") -> str:
        """`-0.0080 nats [-0.0120, -0.0040], p = 0.003 (t), 0.06 (Wilcoxon), 1.4 seed SDs, 5 seeds`."""
        if self.n_seeds < 2:
            return f"{self.mean_diff:+.4f} {unit}, one seed"
        return (
            f"{self.mean_diff:+.4f} {unit} [{self.ci_low:+.4f}, {self.ci_high:+.4f}], "
            f"p = {fmt_p(self.p_t)} (paired t), {fmt_p(self.p_wilcoxon)} (Wilcoxon), "
            f"{abs(self.effect_sd):.1f} seed SDs, {self.n_seeds} seeds"
        )


def fmt_p(p: float) -> str:
    if np.isnan(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}" if p < 0.1 else f"{p:.2f}"


def paired_verdict(
    treatment: np.ndarray, baseline: np.ndarray, expected: str, *, not_tested: str | None = None
) -> Verdict:
    """Verdict on treatment vs baseline, arrays aligned by seed; `expected` is the paper's direction of
    treatment − baseline ("lower" or "higher"); `not_tested` names how the regime differs, if it does."""
    if expected not in ("lower", "higher"):
        raise ValueError(f"expected must be 'lower' or 'higher' (got {expected!r})")
    t, b = np.asarray(treatment, float), np.asarray(baseline, float)
    diff = t - b
    n, mean = len(diff), float(diff.mean())
    if n < 2:
        nan = float("nan")
        label = f"not tested ({not_tested})" if not_tested else "one seed: no verdict"
        return Verdict(label, n, mean, nan, nan, nan, nan, nan)
    sd = diff.std(ddof=1)
    low, high = t_interval(diff, level=1 - ALPHA)
    p_t = float(stats.ttest_1samp(diff, 0.0).pvalue) if sd > 0 else (0.0 if mean != 0 else 1.0)
    p_w = float(stats.wilcoxon(diff, method="exact").pvalue) if np.any(diff != 0) else 1.0
    pooled = np.sqrt((t.var(ddof=1) + b.var(ddof=1)) / 2)
    effect_sd = mean / pooled if pooled > 0 else float("nan")
    label = label_for(mean, p_t, n, expected, not_tested)
    return Verdict(label, n, mean, low, high, p_t, p_w, effect_sd)


def label_for(mean_diff: float, p: float, n: int, expected: str, not_tested: str | None = None) -> str:
    """The verdict word for a paired difference (see the module docstring)."""
    if not_tested:
        return f"not tested ({not_tested})"
    if n < 2:
        return "one seed: no verdict"
    same = mean_diff < 0 if expected == "lower" else mean_diff > 0
    direction = "same direction" if same else "opposite"
    if p >= ALPHA:
        return f"{direction}, not significant"
    if n < MIN_SEEDS:
        return f"{direction}, too few seeds"
    return "reproduced" if same else "opposite, significant"
