"""Baselines on the same splits: k-mer counts + logistic regression, and the Genomic Benchmarks CNN.

The third baseline, the same raybio architecture from random initialisation, is
`backbone.fresh_copy` run through the ordinary protocols.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler
from torch import nn

from raybio.data.tokenizers import NucleotideTokenizer, ProteinTokenizer
from raybio.evaluate import backbone as bb
from raybio.evaluate.metrics import classification_metrics
from raybio.evaluate.protocols import EvalConfig, Loader, adamw, fit, predict, split_for_seed
from raybio.evaluate.tasks import ClassificationTask

# k-mer sizes: all k = 1..6 for DNA (5,460 features); protein 6-mers would be 20^6, so 1..3.
KMER_RANGE = {"dna": (1, 6), "protein": (1, 3)}


def kmer_logreg(task: ClassificationTask, cfg: EvalConfig, seed: int) -> dict:
    """Counts of every k-mer (k = 1..6 for DNA) -> max-abs scaling -> logistic regression."""
    t0 = time.perf_counter()
    train, val = split_for_seed(task, cfg, seed)
    clf = make_pipeline(
        CountVectorizer(analyzer="char", ngram_range=KMER_RANGE[task.modality], lowercase=False),
        MaxAbsScaler(),
        LogisticRegression(max_iter=2000, random_state=seed),
    )
    clf.fit(train.sequences, train.labels)
    prob = np.zeros((len(task.test), len(task.classes)), dtype=np.float32)
    prob[:, clf.classes_] = clf.predict_proba(task.test.sequences)
    return _row(task, prob, train, val, t0)


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


def gb_cnn(task: ClassificationTask, cfg: EvalConfig, seed: int) -> dict:
    """The GB CNN on one-token-per-residue input: 10 epochs, batch 64, lr 1e-3; best validation epoch kept."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    train, val = split_for_seed(task, cfg, seed)
    tok = NucleotideTokenizer() if task.modality == "dna" else ProteinTokenizer()
    # At least CNN_MIN_LEN (short inputs are zero-padded): three kernel-8 convs and pools need it.
    length = max(CNN_MIN_LEN, min(CNN_MAX_LEN, max(len(s) for s in train.sequences)))
    loaders = {
        name: Loader(s.labels, CNN_BATCH, ids=bb.encode(tok, s.sequences, task.modality, length, task.name).ids)
        for name, s in (("train", train), ("val", val), ("test", task.test))
    }
    module = GBCNN(tok.vocab_size, length, len(task.classes))
    fit(module, loaders["train"], loaders["val"], CNN_EPOCHS, CNN_EPOCHS, adamw(module, CNN_LR, 0.0), seed)
    return _row(task, predict(module, loaders["test"]), train, val, t0)


def _row(task, prob, train, val, t0) -> dict:
    return {
        **classification_metrics(task.test.labels, prob),
        "prob": prob,
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(task.test),
        "seconds": time.perf_counter() - t0,
    }


BASELINES = {"kmer_logreg": kmer_logreg, "gb_cnn": gb_cnn}
