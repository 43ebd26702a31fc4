"""Downstream metrics agree with hand-computed values; the bootstrap CI brackets the estimate."""

from __future__ import annotations

import numpy as np
import pytest

from raybio.evaluate.leakage import leakage, max_jaccard
from raybio.evaluate.metrics import bootstrap_ci, classification_metrics, retrieval_metrics


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


def test_multiclass_metrics_have_no_auroc_and_macro_average_f1():
    y = np.array([0, 0, 1, 1, 2, 2])
    m = classification_metrics(y, probs([0, 0, 1, 2, 2, 2], 3))
    assert "auroc" not in m
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


def test_bootstrap_ci_brackets_the_seed_mean_and_narrows_with_more_test_data():
    rng = np.random.default_rng(0)

    def width(n: int) -> tuple[float, float, float]:
        y = rng.integers(0, 2, n)
        seeds = [probs(np.where(rng.random(n) < 0.8, y, 1 - y).tolist()) for _ in range(2)]
        lo, hi = bootstrap_ci(y, seeds, n_resamples=60)["accuracy"]
        mean = np.mean([classification_metrics(y, p)["accuracy"] for p in seeds])
        return lo, mean, hi

    lo, mean, hi = width(200)
    assert lo < mean < hi
    lo2, _, hi2 = width(2000)
    assert hi2 - lo2 < (hi - lo) / 2


def test_leakage_counts_exact_and_near_duplicates():
    base = "ACGTTGCAAGCTTAGCCGATCGATCGGATCCTAGGCTAACGTTAGC" * 3
    near = base[:-1] + ("A" if base[-1] != "A" else "C")  # one base changed at the end
    unrelated = "T" * len(base)
    leak = leakage([base], [base, near, unrelated], k=6)
    assert (leak.exact, leak.near, leak.n_test) == (1, 2, 3)
    best = max_jaccard([base], [near], k=6)
    assert 0.9 <= best[0] < 1.0
