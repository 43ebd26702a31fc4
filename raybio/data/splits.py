"""Deterministic train/validation split by hash: no randomness, no coordination between tasks.

A record up to `2 * block` residues long goes whole to validation when the hash of
(source, record ID) falls below `val_fraction`. A longer record (a genome) is cut into
blocks of about `SPLIT_BLOCK_WINDOWS` windows' worth of residues and the
round(val_fraction * n_blocks) blocks with the lowest hashes (at least one) go to
validation, so even a single-genome corpus has a validation split.
"""

from __future__ import annotations

import hashlib
import math

from raybio.data.config import DataConfig

SPLIT_BLOCK_WINDOWS = 16  # validation blocks of a long record span this many windows
BPE_RESIDUES_PER_TOKEN = 4


def _unit_hash(key: str) -> float:
    h = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64


def val_blocks(key: str, n_blocks: int, val_fraction: float) -> set[int]:
    """The round(val_fraction * n_blocks) blocks (at least one) with the lowest hashes."""
    n_val = max(1, round(val_fraction * n_blocks))
    return set(sorted(range(n_blocks), key=lambda b: _unit_hash(f"{key}:{b}"))[:n_val])


def split_record(seq: str, key: str, block: int, val_fraction: float) -> list[tuple[str, str, bool]]:
    """(split, piece, ends_run) pieces of one record; `ends_run` marks where a separator goes."""
    if len(seq) <= 2 * block:
        return [("val" if _unit_hash(key) < val_fraction else "train", seq, True)]
    n_blocks = math.ceil(len(seq) / block)
    val = val_blocks(key, n_blocks, val_fraction)
    splits = ["val" if b in val else "train" for b in range(n_blocks)]
    return [
        (splits[b], seq[b * block : (b + 1) * block], b == n_blocks - 1 or splits[b + 1] != splits[b])
        for b in range(n_blocks)
    ]


def split_block(cfg: DataConfig, modality: str) -> int:
    """Residues per validation block of a long record: about SPLIT_BLOCK_WINDOWS windows.

    Depends on the config only (BPE is assumed to average BPE_RESIDUES_PER_TOKEN), so the
    BPE training pass and the tokenizing pass split identically.
    """
    t = cfg.tokenizer
    per_token = {"kmer": t.k, "multiomic": t.k if modality == "dna" else 1, "bpe": BPE_RESIDUES_PER_TOKEN}
    return SPLIT_BLOCK_WINDOWS * cfg.seq_len * per_token.get(t.kind, 1)
