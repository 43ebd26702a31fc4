"""The throughput probe times each config alone through Ray, records the load, and never ranks inside its noise."""

import pytest

from raybio.analysis.probe import ProbeResult, ProbeSettings, against_goal, paired_ratio, probe_configs, tie_groups
from raybio.models.flops import flops_per_token


def _variant(exp, n_layers):
    return exp.model_copy(update={"model": exp.model.model_copy(update={"n_layers": n_layers, "d_model": 128})})


def test_identical_configs_are_tied_and_twice_the_flops_probes_slower(ray_local, lambda_corpus):
    uri, manifest, exp = lambda_corpus
    small, big = _variant(exp, 2), _variant(exp, 4)
    vocab = manifest.tokenizer.vocab_size
    ratio = flops_per_token(big.model, 64, vocab).train / flops_per_token(small.model, 64, vocab).train
    assert 1.7 < ratio < 2.1  # the premise: the big config costs about twice the FLOPs per token

    out = probe_configs({"A": small, "A again": small, "B": big}, uri, manifest, ProbeSettings(steps=8, rounds=3))

    a, a2, b = out["A"], out["A again"], out["B"]
    groups = tie_groups(out)
    assert groups["A"] == groups["A again"]  # the same config twice: tied, whichever measured faster
    assert b.tokens_per_s < 0.8 * min(a.tokens_per_s, a2.tokens_per_s)
    assert len(a.rounds) == 3 and len(a.loads) == 3 and a.peak_memory_MiB > 0
    lo, hi = a.interval
    assert lo < a.tokens_per_s < hi


def _result(rounds):
    return ProbeResult(rounds=rounds, step_times=[1.0] * len(rounds), loads=[0.0] * len(rounds), peak_memory_MiB=1.0)


def test_tie_rule_groups_overlapping_intervals_and_ranks_separated_ones():
    # Mean 100 ± ~2.5, mean 101 ± ~2.5 (overlap: tied), mean 80 ± ~2.5 (below both: its own group).
    out = {"a": _result([98, 100, 102]), "b": _result([99, 101, 103]), "c": _result([78, 80, 82])}
    assert tie_groups(out) == {"b": 1, "a": 1, "c": 2}


def test_tie_rule_chains_overlaps_and_one_round_ranks_nothing():
    chain = {"x": _result([104, 105, 106]), "y": _result([96, 100, 104]), "z": _result([93, 95, 97])}
    lo_x, _ = chain["x"].interval
    _, hi_z = chain["z"].interval
    assert hi_z < lo_x  # x and z alone would be ranked, but y overlaps both: one group
    assert set(tie_groups(chain).values()) == {1}
    assert set(tie_groups({"x": _result([100]), "y": _result([50])}).values()) == {0}


def test_probe_interval_is_the_t_interval_of_the_round_mean():
    from scipy import stats

    r = _result([90.0, 100.0, 110.0])
    half = stats.t.ppf(0.975, 2) * 10.0 / 3**0.5
    assert r.interval == pytest.approx((100 - half, 100 + half))


def test_paired_ratio_is_statsmodels_t_interval_of_the_log_ratios_taken_back():
    import numpy as np
    from statsmodels.stats.weightstats import DescrStatsW

    num, den = [120.0, 90.0, 131.0, 100.0], [100.0, 80.0, 105.0, 85.0]
    logs = np.log(np.divide(num, den))
    low, high = DescrStatsW(logs).tconfint_mean(alpha=0.05)
    assert paired_ratio(num, den) == pytest.approx((np.exp(logs.mean()), np.exp(low), np.exp(high)))


def test_a_slow_round_that_slows_both_contenders_leaves_the_paired_ratio_exact():
    estimate, low, high = paired_ratio([120.0, 60.0, 240.0], [100.0, 50.0, 200.0])
    assert (estimate, low, high) == pytest.approx((1.2, 1.2, 1.2))
    assert against_goal(low, high, 1.2) == "met"


def test_a_goal_inside_the_ratio_interval_is_a_tie_and_one_round_is_not_judged():
    estimate, low, high = paired_ratio([118.0, 123.0, 119.0, 122.0], [100.0] * 4)
    assert low < 1.2 < high and estimate == pytest.approx(1.2, abs=0.01)
    assert against_goal(low, high, 1.2).startswith("tie")
    assert against_goal(low, high, 1.3) == "NOT met" and against_goal(low, high, 1.1) == "met"
    assert against_goal(*paired_ratio([130.0], [100.0])[1:], 1.2) == "one round: not judged"
