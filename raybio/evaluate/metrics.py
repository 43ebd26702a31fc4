"""Downstream metrics (scikit-learn), and the statistics that compare models on one test set.

- `classification_metrics` / `retrieval_metrics`: one run's scores, scikit-learn's functions.
- `Resampler`: a hierarchical bootstrap over seeds *and* test examples. Every seed of every
  model is scored on the same test set, so a resample draws seeds (with replacement) and test
  examples (as multiplicity weights, shared by all seeds and models); a model's statistic is
  its metric averaged over the drawn seeds. Both sources of variation are in the interval.
- `paired_difference`: the same resamples applied to two models at once (seeds paired by seed
  number: they share the validation carve), giving the difference's interval and a two-sided
  bootstrap p-value; `mcnemar_p`: statsmodels' exact McNemar test of accuracy, per seed.

Weighted metrics are computed in numpy from confusion counts / sorted scores, so thousands of
resamples cost seconds; tests check them against scikit-learn with `sample_weight`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    label_ranking_average_precision_score,
    matthews_corrcoef,
    roc_auc_score,
    top_k_accuracy_score,
)

CLASSIFICATION = ("accuracy", "mcc", "macro_f1", "auroc", "auprc")
RETRIEVAL = ("recall_at_1", "recall_at_10", "mrr")


def classification_metrics(y_true: np.ndarray, prob_NC: np.ndarray) -> dict[str, float]:
    """Accuracy, MCC, macro-F1, AUROC and AUPRC (binary: of class 1; else macro one-vs-rest)."""
    pred = prob_NC.argmax(1)
    out = {
        "accuracy": accuracy_score(y_true, pred),
        "mcc": matthews_corrcoef(y_true, pred),
        "macro_f1": f1_score(y_true, pred, average="macro", labels=np.arange(prob_NC.shape[1]), zero_division=0),
    }
    out |= ranking_metrics(y_true, prob_NC)
    return {k: float(v) for k, v in out.items()}


def ranking_metrics(y_true: np.ndarray, prob_NC: np.ndarray) -> dict[str, float]:
    """AUROC and AUPRC; NaN when a class is absent from `y_true`."""
    C = prob_NC.shape[1]
    classes = [1] if C == 2 else range(C)
    if any(not (y_true == c).any() or (y_true == c).all() for c in classes):
        return {"auroc": float("nan"), "auprc": float("nan")}
    auroc = [roc_auc_score(y_true == c, prob_NC[:, c]) for c in classes]
    auprc = [average_precision_score(y_true == c, prob_NC[:, c]) for c in classes]
    return {"auroc": float(np.mean(auroc)), "auprc": float(np.mean(auprc))}


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


# ------------------------------------------------------------------ weighted metrics, vectorised


def weighted_confusion(y_true: np.ndarray, pred: np.ndarray, W_BN: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion counts (B, C, C) [true, predicted] of each weight row (a resample's multiplicities)."""
    onehot_NK = np.zeros((len(y_true), n_classes * n_classes))
    onehot_NK[np.arange(len(y_true)), y_true * n_classes + pred] = 1.0
    return (W_BN @ onehot_NK).reshape(-1, n_classes, n_classes)


def confusion_scores(cm_BCC: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, MCC (Gorodkin's multi-class form, as scikit-learn) and macro-F1 of confusion counts."""
    n = cm_BCC.sum((1, 2))
    tp = np.diagonal(cm_BCC, axis1=1, axis2=2)
    true_k, pred_k = cm_BCC.sum(2), cm_BCC.sum(1)
    correct = tp.sum(1)
    cov_ytyp = correct * n - (true_k * pred_k).sum(1)
    cov_ypyp = n**2 - (pred_k**2).sum(1)
    cov_ytyt = n**2 - (true_k**2).sum(1)
    denom = np.sqrt(cov_ytyt * cov_ypyp)
    with np.errstate(invalid="ignore", divide="ignore"):
        mcc = np.where(denom > 0, cov_ytyp / np.where(denom > 0, denom, 1), 0.0)
        f1_k = np.where(true_k + pred_k > 0, 2 * tp / np.maximum(true_k + pred_k, 1e-300), 0.0)
        accuracy = correct / n
    return {"accuracy": accuracy, "mcc": mcc, "macro_f1": f1_k.mean(1)}


def weighted_auc(pos_N: np.ndarray, score_N: np.ndarray, W_BN: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(AUROC, average precision) of each weight row; ties are handled as scikit-learn does."""
    order = np.argsort(-score_N, kind="stable")
    s = score_N[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # groups of tied scores, descending
    Wp = np.add.reduceat(W_BN[:, order] * pos_N[order], starts, axis=1)
    Wn = np.add.reduceat(W_BN[:, order] * ~pos_N[order], starts, axis=1)
    P, N = Wp.sum(1), Wn.sum(1)
    tp, fp = np.cumsum(Wp, 1), np.cumsum(Wn, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # A positive in group g beats every negative below it and ties half of those in g.
        auroc = (Wp * (N[:, None] - fp + 0.5 * Wn)).sum(1) / (P * N)
        precision = tp / np.maximum(tp + fp, 1e-300)
        ap = (Wp / P[:, None] * precision).sum(1)
    return auroc, ap


def weighted_metrics(y_true: np.ndarray, prob_NC: np.ndarray, W_BN: np.ndarray) -> dict[str, np.ndarray]:
    """Every classification metric of one prediction set under each weight row: name -> (B,)."""
    C = prob_NC.shape[1]
    out = confusion_scores(weighted_confusion(y_true, prob_NC.argmax(1), W_BN, C))
    classes = [1] if C == 2 else range(C)
    pairs = [weighted_auc(y_true == c, prob_NC[:, c], W_BN) for c in classes]
    out["auroc"] = np.mean([p[0] for p in pairs], axis=0)
    out["auprc"] = np.mean([p[1] for p in pairs], axis=0)
    return out


# ------------------------------------------------------------------------- hierarchical bootstrap


@dataclass
class Resampler:
    """Bootstrap draws shared by every model of one task: seed draws (B, S) and test weights (B, N)."""

    seed_counts_BS: np.ndarray  # how often each seed is drawn in each resample
    weights_BN: np.ndarray  # how often each test example is drawn in each resample

    @classmethod
    def draw(cls, n_seeds: int, n_test: int, n_resamples: int = 1000, seed: int = 0) -> Resampler:
        rng = np.random.default_rng(seed)
        seeds = rng.integers(0, n_seeds, size=(n_resamples, n_seeds))
        examples = rng.integers(0, n_test, size=(n_resamples, n_test))
        counts = np.stack([np.bincount(r, minlength=n_seeds) for r in seeds]).astype(float)
        weights = np.stack([np.bincount(r, minlength=n_test) for r in examples]).astype(float)
        return cls(counts, weights)

    def statistic(self, y_true: np.ndarray, probs: list[np.ndarray], keep: np.ndarray | None = None) -> dict:
        """Per metric, the (B,) resampled seed-mean of a model with one (N, C) prediction set per seed."""
        W = self.weights_BN if keep is None else self.weights_BN * keep
        per_seed = [weighted_metrics(y_true, p, W) for p in probs]
        S = self.seed_counts_BS[:, : len(probs)]
        S = S / S.sum(1, keepdims=True)
        return {m: (np.stack([ps[m] for ps in per_seed], 1) * S).sum(1) for m in per_seed[0]}


def percentile_ci(values_B: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    finite = values_B[np.isfinite(values_B)]
    if not len(finite):
        return float("nan"), float("nan")
    lo, hi = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


@dataclass
class Difference:
    """A minus B on one metric: point estimate, 95 % interval, two-sided bootstrap p."""

    estimate: float
    ci_low: float
    ci_high: float
    p: float


def paired_difference(
    resampler: Resampler,
    y_true: np.ndarray,
    probs_a: list[np.ndarray],
    probs_b: list[np.ndarray],
    metric: str = "accuracy",
    keep: np.ndarray | None = None,
) -> Difference:
    """Paired bootstrap of mean(A) - mean(B): both models see the same seed draws and test examples.

    p = 2 min(P(diff <= 0), P(diff >= 0)) over resamples (capped at 1): identical predictions give 1.
    """
    n = min(len(probs_a), len(probs_b))
    a = resampler.statistic(y_true, probs_a[:n], keep)[metric]
    b = resampler.statistic(y_true, probs_b[:n], keep)[metric]
    diff = a - b
    ones = np.ones(len(y_true)) if keep is None else keep.astype(float)
    point = np.mean([weighted_metrics(y_true, p, ones[None])[metric][0] for p in probs_a[:n]]) - np.mean(
        [weighted_metrics(y_true, p, ones[None])[metric][0] for p in probs_b[:n]]
    )
    finite = diff[np.isfinite(diff)]
    p = min(1.0, 2 * min((finite <= 0).mean(), (finite >= 0).mean())) if len(finite) else float("nan")
    return Difference(float(point), *percentile_ci(diff), float(p))


def mcnemar_p(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """Exact McNemar test (statsmodels) of A's and B's accuracy on the same examples."""
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = pred_a == y_true, pred_b == y_true
    table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
    return float(mcnemar(table, exact=True).pvalue)
