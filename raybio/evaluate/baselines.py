"""Baselines on the same splits, tuned on the same validation split as the backbone runs.

- `majority`: the most frequent train class (the floor every model must clear).
- `length_only`: logistic regression on log sequence length (what length alone gives away).
- `kmer_logreg`: k-mer counts + logistic regression, C from a grid.
- `gb_cnn`: the Genomic Benchmarks CNN, learning rate from a grid.

The untrained backbone (same architecture, seeded random init) runs through the ordinary
protocols (`runner.backbone_unit`).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.dummy import DummyClassifier
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler
from torch import nn

from raybio.data.tokenizers import NucleotideTokenizer, ProteinTokenizer
from raybio.evaluate import backbone as bb
from raybio.evaluate.protocols import EvalConfig, Loader, adamw, fit, predict, result_row, split_for_seed
from raybio.evaluate.task_types import ClassificationTask

# k-mer sizes: all k = 1..6 for DNA (5,460 features); protein 6-mers would be 20^6, so 1..3.
KMER_RANGE = {"dna": (1, 6), "protein": (1, 3)}


def _sklearn_run(task: ClassificationTask, clf, inputs, cfg: EvalConfig, seed: int) -> dict:
    """Fit a scikit-learn classifier on one seed's train rows; validation log loss, test metrics."""
    t0 = time.perf_counter()
    tr, va = split_for_seed(task, cfg, seed)
    X_train, X_test = inputs(task.train.sequences), inputs(task.test.sequences)
    pick = (lambda X, idx: [X[i] for i in idx]) if isinstance(X_train, list) else (lambda X, idx: X[idx])
    clf.fit(pick(X_train, tr), task.train.labels[tr])

    def proba(X) -> np.ndarray:
        out = np.full((len(X), len(task.classes)), 1e-12, dtype=np.float64)
        out[:, clf.classes_] = clf.predict_proba(X)
        return out / out.sum(1, keepdims=True)

    val = log_loss(task.train.labels[va], proba(pick(X_train, va)), labels=np.arange(len(task.classes)))
    return result_row(task, proba(X_test).astype(np.float32), len(tr), len(va), t0, val_loss=float(val))


def majority(task: ClassificationTask, cfg: EvalConfig, seed: int, hp: float | None = None) -> dict:
    """Always the most frequent train class."""
    return _sklearn_run(task, DummyClassifier(strategy="prior"), _lengths, cfg, seed)


def _lengths(sequences: list[str]) -> np.ndarray:
    return np.log([[len(s)] for s in sequences])


def length_only(task: ClassificationTask, cfg: EvalConfig, seed: int, hp: float | None = None) -> dict:
    """Logistic regression on log length: a task that this solves tests length, not sequence."""
    return _sklearn_run(task, LogisticRegression(max_iter=1000), _lengths, cfg, seed)


def kmer_logreg(task: ClassificationTask, cfg: EvalConfig, seed: int, hp: float | None = 1.0) -> dict:
    """Counts of every k-mer (k = 1..6 for DNA) -> max-abs scaling -> logistic regression with C = `hp`."""
    clf = make_pipeline(
        CountVectorizer(analyzer="char", ngram_range=KMER_RANGE[task.modality], lowercase=False),
        MaxAbsScaler(),
        LogisticRegression(C=hp, max_iter=2000, random_state=seed),
    )
    return _sklearn_run(task, clf, list, cfg, seed)


class GBCNN(nn.Module):
    """The Genomic Benchmarks paper's small CNN: embedding, three conv blocks (16/8/4 channels,
    kernel 8, batch-norm, max-pool 2), then two dense layers."""

    def __init__(self, vocab_size: int, length: int, n_classes: int, embed_dim: int = 100):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        blocks, c_in = [], embed_dim
        for c_out in (16, 8, 4):
            blocks += [nn.Conv1d(c_in, c_out, 8), nn.BatchNorm1d(c_out), nn.ReLU(), nn.MaxPool1d(2)]
            c_in = c_out
        self.conv = nn.Sequential(*blocks, nn.Flatten())
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, embed_dim, length)).shape[1]
        self.dense = nn.Sequential(nn.Linear(flat, 512), nn.ReLU(), nn.Linear(512, n_classes))
        self.length = length

    def forward(self, ids_BL: torch.Tensor, mask_BL: torch.Tensor | None = None) -> torch.Tensor:
        ids_BL = nn.functional.pad(ids_BL[:, : self.length], (0, max(0, self.length - ids_BL.shape[1])))
        return self.dense(self.conv(self.embed(ids_BL).transpose(1, 2)))


CNN_EPOCHS, CNN_BATCH, CNN_LR = 10, 64, 1e-3  # the paper's settings
CNN_MIN_LEN, CNN_MAX_LEN = 64, 1024


def gb_cnn(task: ClassificationTask, cfg: EvalConfig, seed: int, hp: float | None = CNN_LR) -> dict:
    """The GB CNN on one-token-per-residue input: up to 10 epochs, batch 64, learning rate `hp`;
    the best validation epoch is kept."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    tr, va = split_for_seed(task, cfg, seed)
    parts = {"train": task.train.subset(tr), "val": task.train.subset(va), "test": task.test}
    tok = NucleotideTokenizer() if task.modality == "dna" else ProteinTokenizer()
    # At least CNN_MIN_LEN (short inputs are zero-padded): three kernel-8 convs and pools need it.
    length = max(CNN_MIN_LEN, min(CNN_MAX_LEN, max(len(s) for s in parts["train"].sequences)))
    loaders = {
        name: Loader(s.labels, CNN_BATCH, ids=bb.encode(tok, s.sequences, task.modality, length, task.name).ids)
        for name, s in parts.items()
    }
    module = GBCNN(tok.vocab_size, length, len(task.classes))
    fitted = fit(module, loaders["train"], loaders["val"], CNN_EPOCHS, CNN_EPOCHS, adamw(module, hp, 0.0), seed)
    prob = predict(module, loaders["test"])
    return result_row(task, prob, len(tr), len(va), t0, val_loss=min(fitted.val_losses), best_epoch=fitted.best_epoch)


def grid(name: str, cfg: EvalConfig) -> tuple[str, list[float | None]]:
    """(hyper-parameter name, values tried on seed 0) of a baseline."""
    return {"kmer_logreg": ("C", cfg.kmer_cs), "gb_cnn": ("lr", cfg.cnn_lrs)}.get(name, ("", [None]))


BASELINES = {"majority": majority, "length_only": length_only, "kmer_logreg": kmer_logreg, "gb_cnn": gb_cnn}
