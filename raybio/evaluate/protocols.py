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
from raybio.evaluate.splits import Split, carve_validation
from raybio.evaluate.tasks import ClassificationTask


class EvalConfig(BaseModel):
    """How each downstream run trains (defaults follow Caduceus: 10 % validation, 10 epochs, early stopping)."""

    model_config = ConfigDict(extra="forbid")

    protocol: Literal["finetune", "probe"] = "finetune"
    pooling: Literal["mean", "first"] = "mean"
    epochs: int = Field(10, ge=1, description="fine-tune epochs (probe heads train up to 10x as many: they are cheap)")
    patience: int = Field(3, ge=1, description="epochs without a better validation loss before stopping")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(3e-4, gt=0, description="fine-tune learning rate (the probe head uses 1e-3)")
    weight_decay: float = Field(0.01, ge=0)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    max_train: int | None = Field(None, ge=2, description="downsample train rows (stratified) to this many")
    bootstrap: int = Field(200, ge=50, description="bootstrap resamples for the test-set CI")


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


def split_for_seed(task: ClassificationTask, cfg: EvalConfig, seed: int) -> tuple[Split, Split]:
    """The (train, validation) split of one seed, downsampled to `cfg.max_train` if asked."""
    train = task.train
    if cfg.max_train and len(train) > cfg.max_train:
        from raybio.evaluate.splits import stratified_holdout

        keep, _ = stratified_holdout(train.labels, 1 - cfg.max_train / len(train), seed, task.name)
        train = train.subset(np.sort(keep))
    return carve_validation(train, cfg.val_fraction, seed, task.name)


def run_backbone(task: ClassificationTask, model, tokenizer, cfg: EvalConfig, seed: int) -> dict:
    """Fine-tune or probe `model` (a BioLM, modified in place) on `task`; metrics + test probabilities."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    train, val = split_for_seed(task, cfg, seed)
    enc = {
        name: bb.encode(tokenizer, s.sequences, task.modality, model.cfg.max_seq_len, f"task {task.name}")
        for name, s in (("train", train), ("val", val), ("test", task.test))
    }
    labels = {"train": train.labels, "val": val.labels, "test": task.test.labels}
    n_classes = len(task.classes)
    if cfg.protocol == "finetune":
        module = bb.SequenceClassifier(model, n_classes, cfg.pooling)
        loaders = {k: Loader(labels[k], cfg.batch_size, ids=enc[k].ids, pad_id=tokenizer.pad_id) for k in enc}
        fitted = fit(
            module,
            loaders["train"],
            loaders["val"],
            cfg.epochs,
            cfg.patience,
            adamw(module, cfg.lr, cfg.weight_decay),
            seed,
        )
    else:
        for p in model.parameters():
            p.requires_grad_(False)
        feats = {k: bb.features(model, enc[k].ids, cfg.pooling, cfg.batch_size, tokenizer.pad_id) for k in enc}
        scaler = StandardScaler().fit(feats["train"])
        loaders = {
            k: Loader(labels[k], cfg.batch_size, feats=scaler.transform(feats[k]).astype(np.float32)) for k in enc
        }
        module = nn.Linear(model.cfg.d_model, n_classes)
        fitted = fit(
            module,
            loaders["train"],
            loaders["val"],
            10 * cfg.epochs,
            3 * cfg.patience,
            adamw(module, 1e-3, cfg.weight_decay),
            seed,
        )
    prob = predict(module, loaders["test"])
    return {
        **classification_metrics(task.test.labels, prob),
        "prob": prob,
        "best_epoch": fitted.best_epoch,
        "epochs_run": len(fitted.val_losses),
        "best_val_loss": min(fitted.val_losses),
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(task.test),
        "n_truncated": sum(e.n_truncated for e in enc.values()),
        "seconds": time.perf_counter() - t0,
    }
