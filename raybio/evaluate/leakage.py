"""Train/test leakage: exact duplicates and near duplicates (k-mer Jaccard >= threshold).

Genomic Benchmarks is known to hold near-duplicate sequences across its splits; these counts
are reported with every task so a score can be read against them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer

NEAR_K = {"dna": 6, "protein": 3}  # k-mer size of the near-duplicate check per modality
NEAR_THRESHOLD = 0.9  # k-mer-set Jaccard at or above which a test row is a near duplicate of a train row


@dataclass
class Leakage:
    exact: int  # test sequences identical to some train sequence
    near: int  # test sequences with k-mer Jaccard >= threshold to some train sequence (exact included)
    n_test: int
    k: int
    threshold: float
    near_rows: np.ndarray  # bool per test row: the near duplicates (scored apart)


def max_jaccard(train: list[str], test: list[str], k: int, chunk: int = 512) -> np.ndarray:
    """For each test sequence, its highest k-mer-set Jaccard similarity to any train sequence."""
    vec = CountVectorizer(analyzer="char", ngram_range=(k, k), lowercase=False, binary=True, dtype=np.float32)
    train_X = vec.fit_transform(train)
    test_X = vec.transform(test)
    train_sizes = np.asarray(train_X.sum(1)).ravel()
    # k-mers unseen in train are dropped by transform; count them back into the test set sizes.
    test_sizes = np.array([len({s[i : i + k] for i in range(len(s) - k + 1)}) for s in test], dtype=np.float32)
    best = np.zeros(len(test), dtype=np.float32)
    for a in range(0, len(test), chunk):
        inter = (test_X[a : a + chunk] @ train_X.T).toarray()
        union = test_sizes[a : a + chunk, None] + train_sizes[None, :] - inter
        best[a : a + chunk] = (inter / np.maximum(union, 1)).max(1)
    return best


def leakage(train: list[str], test: list[str], k: int = 6, threshold: float = NEAR_THRESHOLD) -> Leakage:
    """Exact and near-duplicate counts of test sequences against train."""
    seen = set(train)
    exact = sum(s in seen for s in test)
    rows = max_jaccard(train, test, k) >= threshold
    return Leakage(exact=exact, near=int(rows.sum()), n_test=len(test), k=k, threshold=threshold, near_rows=rows)
