"""Downstream metrics: thin wrappers over scikit-learn, and bootstrap CIs over the test set (scipy)."""

from __future__ import annotations

import numpy as np
from scipy.stats import bootstrap
from sklearn import config_context
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    label_ranking_average_precision_score,
    matthews_corrcoef,
    roc_auc_score,
    top_k_accuracy_score,
)

CLASSIFICATION = ("accuracy", "mcc", "macro_f1", "auroc")
RETRIEVAL = ("recall_at_1", "recall_at_10", "mrr")


def classification_metrics(y_true: np.ndarray, prob_NC: np.ndarray) -> dict[str, float]:
    """Accuracy, MCC, macro-F1 and (binary tasks) AUROC of class probabilities `prob_NC`."""
    pred = prob_NC.argmax(1)
    out = {
        "accuracy": accuracy_score(y_true, pred),
        "mcc": matthews_corrcoef(y_true, pred),
        "macro_f1": f1_score(y_true, pred, average="macro"),
    }
    if prob_NC.shape[1] == 2:
        out["auroc"] = roc_auc_score(y_true, prob_NC[:, 1]) if len(np.unique(y_true)) == 2 else float("nan")
    return {k: float(v) for k, v in out.items()}


def retrieval_metrics(score_QK: np.ndarray) -> dict[str, float]:
    """Recall@1, recall@10 and MRR when query i's match is candidate i (scores: queries x candidates).

    With one relevant candidate per query, label-ranking average precision equals the
    reciprocal rank, so MRR is scikit-learn's LRAP.
    """
    n = score_QK.shape[0]
    truth = np.arange(n)
    labels = np.arange(score_QK.shape[1])
    return {
        "recall_at_1": float(top_k_accuracy_score(truth, score_QK, k=1, labels=labels)),
        "recall_at_10": float(top_k_accuracy_score(truth, score_QK, k=min(10, n), labels=labels)),
        "mrr": float(label_ranking_average_precision_score(np.eye(n, score_QK.shape[1], dtype=bool), score_QK)),
    }


def bootstrap_ci(
    y_true: np.ndarray, probs: list[np.ndarray], n_resamples: int = 200, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """95 % percentile-bootstrap CI, over test examples, of each metric averaged over the seeds' predictions.

    Every seed's predictions share each resample, so the interval reflects the finite test set
    (seed spread is reported separately as min–max). One resample costs one scikit-learn call
    per metric and seed (~15 ms on a busy 2-core machine), hence 200 resamples by default.
    """
    names = [*CLASSIFICATION[:3], *(["auroc"] if probs[0].shape[1] == 2 else [])]

    def stat(idx: np.ndarray) -> np.ndarray:
        idx = idx.astype(int)
        per_seed = [classification_metrics(y_true[idx], p[idx]) for p in probs]
        return np.array([np.mean([m[name] for m in per_seed]) for name in names])

    with config_context(skip_parameter_validation=True):
        res = bootstrap(
            (np.arange(len(y_true)),),
            stat,
            n_resamples=n_resamples,
            vectorized=False,
            method="percentile",
            random_state=seed,
        )
    low, high = res.confidence_interval
    return {name: (float(lo), float(hi)) for name, lo, hi in zip(names, low, high, strict=True)}
