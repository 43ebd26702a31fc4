"""The verdict rule: paired tests across training seeds, and words that say no more than the test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from raybio.analysis.verdict import MIN_SEEDS, label_for, paired_verdict

SEED_SD = 0.006  # seed-to-seed spread of the demo's losses (nats)


def _arms(rng, n, effect, shared_sd=SEED_SD, paired_sd=0.002):
    """Baseline and treatment losses of n seeds: a seed effect both arms share, plus a small arm-specific noise."""
    seed = rng.normal(3.78, shared_sd, n)
    baseline = seed + rng.normal(0, paired_sd, n)
    return seed + effect + rng.normal(0, paired_sd, n), baseline


def test_a_real_effect_with_five_seeds_is_reproduced():
    rng = np.random.default_rng(0)
    t, b = _arms(rng, 5, effect=-0.008)
    v = paired_verdict(t, b, "lower")
    assert v.label == "reproduced"
    assert v.n_seeds == 5 and v.ci_high < 0 and v.p_t < 0.05
    # The reference: scipy's paired t-test on the same numbers.
    assert v.p_t == pytest.approx(stats.ttest_rel(t, b).pvalue)
    assert v.mean_diff == pytest.approx(np.mean(t - b))


def test_under_the_null_reproduced_comes_no_more_often_than_the_tests_one_sided_error_rate():
    rng = np.random.default_rng(1)
    draws = 4000
    hits = sum(paired_verdict(*_arms(rng, 5, effect=0.0), "lower").label == "reproduced" for _ in range(draws))
    # A two-sided test at 0.05 says "lower" by chance 2.5 % of the time; 4000 draws give a binomial SE of 0.25 %.
    assert hits / draws < 0.025 + 3 * np.sqrt(0.025 * 0.975 / draws)


def test_the_effect_in_the_papers_direction_but_with_too_few_seeds_is_not_reproduced():
    rng = np.random.default_rng(2)
    t, b = _arms(rng, 3, effect=-0.02, paired_sd=0.001)
    v = paired_verdict(t, b, "lower")
    assert v.p_t < 0.05 and v.label == "same direction, too few seeds"


def test_two_seeds_like_the_committed_finegrained_run_are_not_significant():
    # The review's numbers: gaps -0.0067 and -0.0094 -> paired t p ~ 0.10, interval [-0.025, +0.009].
    b = np.array([3.7836, 3.7890])
    t = b + np.array([-0.0067, -0.0094])
    v = paired_verdict(t, b, "lower")
    assert v.label == "same direction, not significant"
    assert v.p_t == pytest.approx(0.105, abs=0.01)
    assert v.ci_low == pytest.approx(-0.0252, abs=1e-3) and v.ci_high == pytest.approx(0.0091, abs=1e-3)


def test_one_seed_gives_no_verdict_and_a_regime_mismatch_gives_not_tested():
    assert paired_verdict([3.7], [3.8], "lower").label == "one seed: no verdict"
    v = paired_verdict(
        [1, 2, 3, 4, 5], [2, 3, 4, 5, 6], "lower", not_tested="context length 256 here, the paper's >= 8192"
    )
    assert v.label == "not tested (context length 256 here, the paper's >= 8192)"


def test_labels_follow_the_rule_table():
    assert label_for(-0.01, 0.01, MIN_SEEDS, "lower") == "reproduced"
    assert label_for(+0.01, 0.01, MIN_SEEDS, "lower") == "opposite, significant"
    assert label_for(+0.01, 0.01, MIN_SEEDS, "higher") == "reproduced"
    assert label_for(-0.01, 0.20, MIN_SEEDS, "lower") == "same direction, not significant"
    assert label_for(+0.01, 0.20, MIN_SEEDS, "lower") == "opposite, not significant"
    assert label_for(+0.01, 0.01, MIN_SEEDS - 1, "lower") == "opposite, too few seeds"


def test_effect_in_seed_sds_uses_the_pooled_spread_of_the_two_arms():
    t, b = np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.5])
    v = paired_verdict(t, b, "lower")
    pooled = np.sqrt((np.var(t, ddof=1) + np.var(b, ddof=1)) / 2)
    assert v.effect_sd == pytest.approx(np.mean(t - b) / pooled)
