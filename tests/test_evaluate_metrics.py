"""Downstream metrics agree with hand computations and scikit-learn; the hierarchical bootstrap and the
paired tests behave as their definitions say."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, matthews_corrcoef, roc_auc_score

from raybio.evaluate.leakage import leakage, max_jaccard
from raybio.evaluate.metrics import (
    Resampler,
    classification_metrics,
    mcnemar_p,
    paired_difference,
    retrieval_metrics,
    weighted_metrics,
)


def probs(pred: list[int], n_classes: int = 2) -> np.ndarray:
    return np.eye(n_classes)[pred] * 0.8 + 0.2 / n_classes


def test_binary_metrics_match_hand_computation():
    # TP=2 FN=1 FP=1 TN=2: accuracy 4/6; MCC (2*2-1*1)/sqrt(3*3*3*3) = 3/9; F1 2/3 for both classes.
    y = np.array([1, 1, 1, 0, 0, 0])
    p = probs([1, 1, 0, 1, 0, 0])
    m = classification_metrics(y, p)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["mcc"] == pytest.approx(1 / 3)
    assert m["macro_f1"] == pytest.approx(2 / 3)
    # Scores rank 6 of the 9 (positive, negative) pairs correctly: AUROC 6/9.
    assert m["auroc"] == pytest.approx(6 / 9)


def test_multiclass_metrics_macro_average_f1_and_one_vs_rest_auroc():
    y = np.array([0, 0, 1, 1, 2, 2])
    p = probs([0, 0, 1, 2, 2, 2], 3)
    m = classification_metrics(y, p)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert m["accuracy"] == pytest.approx(5 / 6)
    # Per-class F1: 1, 2/3 (P 1, R 1/2), 4/5 (P 2/3, R 1).
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 4 / 5) / 3)


def test_retrieval_metrics_match_hand_computed_ranks():
    # 12 queries; query i's own candidate is placed at rank r_i among 12 distinct scores.
    ranks = np.array([1, 1, 2, 3, 5, 10, 11, 12, 1, 4, 2, 7])
    rng = np.random.default_rng(0)
    score = np.zeros((12, 12))
    for i, r in enumerate(ranks):
        values = np.sort(rng.random(12))[::-1]  # values[r - 1] is the r-th highest
        others = [j for j in range(12) if j != i]
        score[i, i] = values[r - 1]
        score[i, others] = np.delete(values, r - 1)
    m = retrieval_metrics(score)
    assert m["recall_at_1"] == pytest.approx(3 / 12)
    assert m["recall_at_10"] == pytest.approx(10 / 12)
    assert m["mrr"] == pytest.approx(np.mean(1 / ranks))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_weighted_metrics_equal_scikit_learn_with_sample_weights(n_classes):
    rng = np.random.default_rng(n_classes)
    y = rng.integers(0, n_classes, 300)
    p = rng.dirichlet(np.ones(n_classes), 300)
    p[:, 0] = np.round(p[:, 0], 1)  # ties in the scores
    W = rng.integers(0, 3, (4, 300)).astype(float)  # bootstrap multiplicities
    got = weighted_metrics(y, p, W)
    pred = p.argmax(1)
    for b, w in enumerate(W):
        assert got["accuracy"][b] == pytest.approx(np.average(pred == y, weights=w))
        assert got["mcc"][b] == pytest.approx(matthews_corrcoef(y, pred, sample_weight=w))
        assert got["macro_f1"][b] == pytest.approx(f1_score(y, pred, average="macro", sample_weight=w))
        classes = [1] if n_classes == 2 else range(n_classes)
        auroc = np.mean([roc_auc_score(y == c, p[:, c], sample_weight=w) for c in classes])
        auprc = np.mean([average_precision_score(y == c, p[:, c], sample_weight=w) for c in classes])
        assert (got["auroc"][b], got["auprc"][b]) == (pytest.approx(auroc), pytest.approx(auprc))


def noisy(y: np.ndarray, accuracy: float, rng) -> np.ndarray:
    return probs(np.where(rng.random(len(y)) < accuracy, y, 1 - y).tolist())


def test_hierarchical_interval_brackets_the_mean_and_widens_with_seed_spread():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    steady = [noisy(y, 0.8, rng) for _ in range(4)]
    spread = [noisy(y, a, rng) for a in (0.6, 0.7, 0.9, 1.0)]  # same mean accuracy, seeds far apart
    res = Resampler.draw(4, 600, 1000)

    def ci(seeds):
        values = res.statistic(y, seeds)["accuracy"]
        return np.percentile(values, 2.5), np.percentile(values, 97.5)

    mean = np.mean([classification_metrics(y, p)["accuracy"] for p in steady])
    lo, hi = ci(steady)
    assert lo < mean < hi
    lo2, hi2 = ci(spread)
    assert hi2 - lo2 > 2 * (hi - lo)  # seed variance is in the interval, not only test-set variance


def test_paired_test_of_identical_predictions_gives_p_one():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    seeds = [noisy(y, 0.75, rng) for _ in range(3)]
    diff = paired_difference(Resampler.draw(3, 400, 500), y, seeds, [s.copy() for s in seeds])
    assert (diff.estimate, diff.ci_low, diff.ci_high, diff.p) == (0.0, 0.0, 0.0, 1.0)
    assert mcnemar_p(y, seeds[0].argmax(1), seeds[0].argmax(1)) == 1.0


def test_paired_test_detects_a_known_difference_that_unpaired_intervals_would_call_a_tie():
    # B is A with 20 of 400 wrong answers fixed: +0.05 accuracy on the same examples.
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    a = noisy(y, 0.7, rng)
    wrong = np.flatnonzero(a.argmax(1) != y)[:20]
    b = a.copy()
    b[wrong] = b[wrong][:, ::-1]
    res = Resampler.draw(1, 400, 1000)
    diff = paired_difference(res, y, [b], [a])
    assert diff.estimate == pytest.approx(20 / 400) and diff.ci_low > 0 and diff.p < 0.01
    # Each model's own interval is much wider than the paired one: overlapping CIs are no test.
    ci_a = np.percentile(res.statistic(y, [a])["accuracy"], [2.5, 97.5])
    ci_b = np.percentile(res.statistic(y, [b])["accuracy"], [2.5, 97.5])
    assert ci_a[1] > ci_b[0]
    # McNemar on 20 discordant pairs all one way: exact binomial p = 2 * 0.5**20.
    assert mcnemar_p(y, b.argmax(1), a.argmax(1)) == pytest.approx(2 * 0.5**20)


def test_leakage_counts_exact_and_near_duplicates():
    base = "ACGTTGCAAGCTTAGCCGATCGATCGGATCCTAGGCTAACGTTAGC" * 3
    near = base[:-1] + ("A" if base[-1] != "A" else "C")  # one base changed at the end
    unrelated = "T" * len(base)
    leak = leakage([base], [base, near, unrelated], k=6)
    assert (leak.exact, leak.near, leak.n_test) == (1, 2, 3)
    best = max_jaccard([base], [near], k=6)
    assert 0.9 <= best[0] < 1.0
