"""Fine-tune and linear-probe protocols, and the one training loop every classifier shares.

Validation is carved from train; the loop keeps the weights of the epoch with the lowest
validation loss (early stopping after `patience` epochs without improvement), and only
then is the test set predicted.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from sklearn.preprocessing import StandardScaler
from torch import nn

from raybio.evaluate import backbone as bb
from raybio.evaluate.metrics import classification_metrics
from raybio.evaluate.splits import stratified_holdout, validation_indices
from raybio.evaluate.task_types import ClassificationTask


class EvalConfig(BaseModel):
    """How each downstream run trains (Caduceus-style: 10 % validation, early stopping on it).

    Every trainable model and baseline gets the same treatment: a small grid (learning rate,
    or C for the k-mer model) is tried on seed 0, the value with the lowest validation loss is
    kept for every seed, and the number of epochs is chosen by early stopping on validation.
    """

    model_config = ConfigDict(extra="forbid")

    pooling: Literal["mean", "first"] = "mean"
    epochs: int = Field(10, ge=1, description="most fine-tune epochs (probe heads train up to 10x as many)")
    patience: int = Field(3, ge=1, description="epochs without a better validation loss before stopping")
    batch_size: int = Field(32, ge=1)
    finetune_lrs: list[float] = Field([1e-4, 3e-4, 1e-3], min_length=1, description="fine-tune LR grid")
    probe_lrs: list[float] = Field([1e-3, 1e-2], min_length=1, description="linear-probe head LR grid")
    cnn_lrs: list[float] = Field([3e-4, 1e-3, 3e-3], min_length=1, description="GB CNN LR grid")
    kmer_cs: list[float] = Field([0.1, 1.0, 10.0], min_length=1, description="k-mer logistic regression C grid")
    weight_decay: float = Field(0.01, ge=0)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    max_train: int | None = Field(None, ge=2, description="downsample train rows (stratified) to this many")
    bootstrap: int = Field(2000, ge=50, description="hierarchical bootstrap resamples")
    allow_seen: bool = Field(False, description="run tasks that overlap a checkpoint's pretraining sources")


@dataclass
class Loader:
    """Batches of (inputs..., labels); token inputs are length-bucketed and right-padded."""

    labels: np.ndarray
    batch_size: int
    ids: list[np.ndarray] | None = None  # token rows, or
    feats: np.ndarray | None = None  # precomputed features (probe)
    pad_id: int = 0

    def batches(self, rng: np.random.Generator | None):
        if self.ids is not None:
            lengths = np.array([len(x) for x in self.ids])
        else:
            lengths = np.zeros(len(self.labels), dtype=int)
        for idx in bb.length_batches(lengths, self.batch_size, rng):
            y = torch.from_numpy(self.labels[idx])
            if self.ids is not None:
                yield bb.pad(self.ids, idx, self.pad_id), y, idx
            else:
                yield (torch.from_numpy(self.feats[idx]),), y, idx


@dataclass
class FitResult:
    val_losses: list[float] = field(default_factory=list)
    best_epoch: int = 0  # 1-based epoch whose weights were kept


def train_epoch(module: nn.Module, loader: Loader, opt: torch.optim.Optimizer, rng: np.random.Generator) -> int:
    """One pass over `loader` (cross-entropy, one optimizer step per batch); returns sequences seen."""
    module.train()
    seen = 0
    for inputs, y, _ in loader.batches(rng):
        loss = F.cross_entropy(module(*inputs).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(y)
    return seen


@torch.no_grad()
def predict(module: nn.Module, loader: Loader) -> np.ndarray:
    """Class probabilities (N, C) in the loader's row order."""
    module.eval()
    out = None
    for inputs, _, idx in loader.batches(None):
        p = torch.softmax(module(*inputs).float(), -1).numpy()
        out = np.zeros((len(loader.labels), p.shape[1]), dtype=np.float32) if out is None else out
        out[idx] = p
    return out


def val_loss(module: nn.Module, loader: Loader) -> float:
    p = predict(module, loader)
    return float(F.nll_loss(torch.from_numpy(np.log(np.clip(p, 1e-12, 1))), torch.from_numpy(loader.labels)))


def fit(
    module: nn.Module, train: Loader, val: Loader, epochs: int, patience: int, opt: torch.optim.Optimizer, seed: int
) -> FitResult:
    """Train with early stopping on validation loss; `module` ends with the best epoch's weights."""
    rng = np.random.default_rng(seed)
    result, best, best_state, wait = FitResult(), float("inf"), None, 0
    for epoch in range(1, epochs + 1):
        train_epoch(module, train, opt, rng)
        loss = val_loss(module, val)
        result.val_losses.append(loss)
        if loss < best:
            best, best_state, result.best_epoch, wait = loss, copy.deepcopy(module.state_dict()), epoch, 0
        else:
            wait += 1
            if wait >= patience:
                break
    module.load_state_dict(best_state)
    return result


def adamw(module: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)


def split_for_seed(task: ClassificationTask, cfg: EvalConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices into `task.train` of one seed's (train, validation), downsampled to `cfg.max_train` first."""
    keep = np.arange(len(task.train))
    if cfg.max_train and len(keep) > cfg.max_train:
        keep, _ = stratified_holdout(task.train.labels, 1 - cfg.max_train / len(keep), seed, task.name)
        keep = np.sort(keep)
    tr, va = validation_indices(task.train.subset(keep), cfg.val_fraction, seed, task.name)
    return keep[tr], keep[va]


def result_row(task: ClassificationTask, prob: np.ndarray, n_train: int, n_val: int, t0: float, **extra) -> dict:
    """Test metrics, test probabilities and sizes of one run."""
    return {
        **classification_metrics(task.test.labels, prob),
        "prob": prob,
        "n_train": n_train,
        "n_val": n_val,
        "n_test": len(task.test),
        "seconds": time.perf_counter() - t0,
        **extra,
    }


def _fitted(fitted: FitResult) -> dict:
    return {"best_epoch": fitted.best_epoch, "epochs_run": len(fitted.val_losses), "val_loss": min(fitted.val_losses)}


def finetune(task: ClassificationTask, model, tokenizer, cfg: EvalConfig, lr: float, seed: int) -> dict:
    """Fine-tune `model` (a BioLM, modified in place) with a linear head on `task`; metrics + test probabilities."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    tr, va = split_for_seed(task, cfg, seed)
    parts = {"train": task.train.subset(tr), "val": task.train.subset(va), "test": task.test}
    enc = {
        k: bb.encode(tokenizer, s.sequences, task.modality, model.cfg.max_seq_len, f"task {task.name}")
        for k, s in parts.items()
    }
    loaders = {k: Loader(parts[k].labels, cfg.batch_size, ids=enc[k].ids, pad_id=tokenizer.pad_id) for k in enc}
    module = bb.SequenceClassifier(model, len(task.classes), cfg.pooling)
    opt = adamw(module, lr, cfg.weight_decay)
    fitted = fit(module, loaders["train"], loaders["val"], cfg.epochs, cfg.patience, opt, seed)
    prob = predict(module, loaders["test"])
    n_cut = sum(e.n_truncated for e in enc.values())
    return result_row(task, prob, len(tr), len(va), t0, **_fitted(fitted), n_truncated=n_cut)


@dataclass
class Features:
    """Frozen-backbone pooled features of a task's train rows (computed as needed) and test rows."""

    model: object
    tokenizer: object
    task: ClassificationTask
    cfg: EvalConfig
    train: dict[int, np.ndarray] = field(default_factory=dict)
    test: np.ndarray | None = None
    n_truncated: int = 0

    def _embed(self, sequences: list[str]) -> np.ndarray:
        m, tok = self.model, self.tokenizer
        enc = bb.encode(tok, sequences, self.task.modality, m.cfg.max_seq_len, f"task {self.task.name}")
        self.n_truncated += enc.n_truncated
        return bb.features(m, enc.ids, self.cfg.pooling, self.cfg.batch_size, tok.pad_id)

    def rows(self, idx: np.ndarray) -> np.ndarray:
        missing = [int(i) for i in idx if int(i) not in self.train]
        if missing:
            for i, x in zip(missing, self._embed([self.task.train.sequences[i] for i in missing]), strict=True):
                self.train[i] = x
        return np.stack([self.train[int(i)] for i in idx])

    def test_rows(self) -> np.ndarray:
        if self.test is None:
            self.test = self._embed(self.task.test.sequences)
        return self.test


def probe(feats: Features, cfg: EvalConfig, lr: float, seed: int) -> dict:
    """A linear head on standardised frozen features (up to 10x the fine-tune epochs; 3x the patience)."""
    t0 = time.perf_counter()
    task = feats.task
    torch.manual_seed(seed)
    tr, va = split_for_seed(task, cfg, seed)
    X = {"train": feats.rows(tr), "val": feats.rows(va), "test": feats.test_rows()}
    y = {"train": task.train.labels[tr], "val": task.train.labels[va], "test": task.test.labels}
    scaler = StandardScaler().fit(X["train"])
    loaders = {k: Loader(y[k], cfg.batch_size, feats=scaler.transform(X[k]).astype(np.float32)) for k in X}
    module = nn.Linear(X["train"].shape[1], len(task.classes))
    opt = adamw(module, lr, cfg.weight_decay)
    fitted = fit(module, loaders["train"], loaders["val"], 10 * cfg.epochs, 3 * cfg.patience, opt, seed)
    prob = predict(module, loaders["test"])
    return result_row(task, prob, len(tr), len(va), t0, **_fitted(fitted), n_truncated=feats.n_truncated)
