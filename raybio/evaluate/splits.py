"""Train/validation/test splitting with scikit-learn's splitters.

Validation is always carved from train (never test). Tasks whose rows carry `groups`
(e.g. species windows: their position block) are split by group, so no window of the
validation split overlaps one of train.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, StratifiedShuffleSplit

from raybio.data.validate import InputError


@dataclass
class Split:
    """Sequences with integer labels; `groups` (optional) keeps related rows together when splitting."""

    sequences: list[str]
    labels: np.ndarray
    groups: np.ndarray | None = None
    rows: list[str] | None = None  # where each row came from ("file:row 12"), for messages

    def __len__(self) -> int:
        return len(self.sequences)

    def subset(self, idx: np.ndarray) -> Split:
        pick = [int(i) for i in idx]
        return Split(
            [self.sequences[i] for i in pick],
            self.labels[pick],
            None if self.groups is None else self.groups[pick],
            None if self.rows is None else [self.rows[i] for i in pick],
        )


def stratified_holdout(
    labels: np.ndarray, test_fraction: float, seed: int, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) of a stratified split; InputError when a class is too small to split."""
    _, counts = np.unique(labels, return_counts=True)
    if len(counts) < 2:
        raise InputError(f"{source}: all rows have label {labels[0]!r} (one class only); a task needs at least two")
    if counts.min() < 2:
        raise InputError(f"{source}: a class has a single row; each class needs >= 2 rows to appear in train and test")
    n_test = max(len(counts), round(test_fraction * len(labels)))
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=n_test, random_state=seed)
    return next(splitter.split(np.zeros(len(labels)), labels))


def carve_validation(train: Split, fraction: float, seed: int, source: str) -> tuple[Split, Split]:
    """(train, validation) from a task's train split: by group if it has groups, else stratified."""
    tr, va = validation_indices(train, fraction, seed, source)
    return train.subset(tr), train.subset(va)


def validation_indices(train: Split, fraction: float, seed: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) into `train`: by group if it has groups, else stratified."""
    if train.groups is not None:
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        tr, va = next(splitter.split(np.zeros(len(train)), train.labels, train.groups))
    else:
        tr, va = stratified_holdout(train.labels, fraction, seed, source)
    if len(va) == 0 or len(tr) == 0:
        raise InputError(f"{source}: carving {fraction:.0%} validation from {len(train)} train rows left a split empty")
    return tr, va
