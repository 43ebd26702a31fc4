"""The evaluation side of a BioLM: loading, tokenising task sequences, batching, pooled features.

Batches are right-padded; the padding mask goes to the model (`BioLM.hidden_states`), so no
real token attends to padding, and pooling skips it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from raybio.data.validate import InputError
from raybio.models.model import BioLM
from raybio.models.pretrained import load_pretrained


def load(path: str | Path) -> tuple[BioLM, object]:
    """(model, tokenizer) of a checkpoint directory (local path or s3:// URI)."""
    pretrained = load_pretrained(path)
    return pretrained.model, pretrained.tokenizer


def fresh_copy(model: BioLM, seed: int) -> BioLM:
    """The same architecture, randomly initialised (the untrained backbone every pretrained run is paired with).

    Offset from the training seeds so a checkpoint that was never trained (or trained from
    seed 0) does not get its own initial weights back.
    """
    torch.manual_seed(1_000_003 + seed)
    return BioLM(model.cfg, model.vocab_size).train()


def token_states(model: BioLM, ids_BL: torch.Tensor, mask_BL: torch.Tensor) -> torch.Tensor:
    """Final-norm hidden states; `mask_BL` is True at real tokens (padding is masked out of every mixer)."""
    return model.hidden_states(ids_BL, pad_mask_BL=~mask_BL)


def pool(h_BLD: torch.Tensor, mask_BL: torch.Tensor, how: str) -> torch.Tensor:
    """Mean over non-padding tokens, or the first token's state."""
    if how == "first":
        return h_BLD[:, 0]
    m_BL1 = mask_BL[..., None].to(h_BLD.dtype)
    return (h_BLD * m_BL1).sum(1) / m_BL1.sum(1).clamp_min(1)


@dataclass
class Encoded:
    ids: list[np.ndarray]
    n_truncated: int  # sequences cut to the model's max_seq_len


def encode(tokenizer, sequences: list[str], modality: str, max_len: int, what: str) -> Encoded:
    """Token ids of every sequence (with the modality token first for multi-omic vocabularies)."""
    try:
        tokenizer.check_modality(modality)
    except ValueError as err:
        raise InputError(f"{what}: the checkpoint's tokenizer cannot encode it: {err}") from None
    prefix = [tokenizer.modality_token_ids[modality]] if tokenizer.modality_token_ids else []
    ids, cut = [], 0
    for seq in sequences:
        row = np.concatenate([np.asarray(prefix, dtype=np.int64), tokenizer.encode(seq, modality).astype(np.int64)])
        cut += len(row) > max_len
        ids.append(row[:max_len])
    return Encoded(ids, cut)


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Index batches of similar length: shuffled (if `rng`), then stably sorted by length and chunked."""
    order = rng.permutation(len(lengths)) if rng is not None else np.arange(len(lengths))
    order = order[np.argsort(lengths[order], kind="stable")]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def pad(ids: list[np.ndarray], idx: np.ndarray, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids_BL, mask_BL) of the chosen rows, right-padded to the longest."""
    L = max(len(ids[i]) for i in idx)
    out = np.full((len(idx), L), pad_id, dtype=np.int64)
    for r, i in enumerate(idx):
        out[r, : len(ids[i])] = ids[i]
    ids_BL = torch.from_numpy(out)
    return ids_BL, ids_BL != pad_id


class SequenceClassifier(nn.Module):
    """A BioLM backbone, pooling and a linear head."""

    def __init__(self, backbone: BioLM, n_classes: int, pooling: str = "mean"):
        super().__init__()
        self.backbone, self.pooling = backbone, pooling
        self.head = nn.Linear(backbone.cfg.d_model, n_classes)

    def forward(self, ids_BL: torch.Tensor, mask_BL: torch.Tensor) -> torch.Tensor:
        return self.head(pool(token_states(self.backbone, ids_BL, mask_BL), mask_BL, self.pooling))


@torch.no_grad()
def features(model: BioLM, ids: list[np.ndarray], pooling: str, batch_size: int, pad_id: int) -> np.ndarray:
    """Pooled frozen-backbone features (N, D), in input order."""
    model.eval()
    out = np.zeros((len(ids), model.cfg.d_model), dtype=np.float32)
    for idx in length_batches(np.array([len(x) for x in ids]), batch_size, None):
        ids_BL, mask_BL = pad(ids, idx, pad_id)
        out[idx] = pool(token_states(model, ids_BL, mask_BL), mask_BL, pooling).float().numpy()
    return out
