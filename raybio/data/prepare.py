"""Corpus preparation: FASTA -> tokenized fixed-length windows -> parquet shards + manifest.

The output directory is named by a hash of everything that determines its contents, so a
re-run with the same config finds the finished manifest and skips the work.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raybio.config import DataConfig
from raybio.data import storage
from raybio.data.fasta import read_fasta

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
# Windows are assigned to train/val in blocks, so neighbouring windows of one genome
# (which share no tokens, but share local context) mostly land in the same split.
SPLIT_BLOCK = 16

BUNDLED = {
    "ecoli": "ecoli_K12_MG1655_NC_000913.2.fa.gz",
    "lambda": "lambda_phage_NC_001416.1.fa",
    "phix": "phiX174_NC_001422.1.fa",
}


def resolve_source(src: str) -> str:
    """Map `bundled:<name>` to the packaged file; other sources pass through."""
    if src.startswith("bundled:"):
        name = src.removeprefix("bundled:")
        if name not in BUNDLED:
            raise ValueError(f"unknown bundled corpus {name!r}; choose one of {sorted(BUNDLED)}")
        return str(resources.files("raybio.data") / "bundled" / BUNDLED[name])
    return src


def corpus_id(cfg: DataConfig) -> str:
    """Short hash of what determines the prepared corpus."""
    key = {
        "sources": cfg.sources,
        "tokenizer": cfg.tokenizer.model_dump(),
        "seq_len": cfg.seq_len,
        "val_fraction": cfg.val_fraction,
        "version": MANIFEST_VERSION,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def in_val_split(record_id: str, window: int, val_fraction: float) -> bool:
    h = hashlib.blake2b(f"{record_id}:{window // SPLIT_BLOCK}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64 < val_fraction


def prepare(cfg: DataConfig, out_uri: str, progress: bool = True) -> dict:
    """Prepare the corpus into `out_uri` (skipped when its manifest is already complete)."""
    existing = storage.read_json(storage.join(out_uri, MANIFEST))
    if existing and existing.get("complete"):
        return existing
    tok = cfg.tokenizer.build()
    L = cfg.seq_len
    rows: dict[str, list] = {"train": [], "val": []}
    sources, dropped_tokens, skipped_n = [], 0, 0
    for src in cfg.sources:
        path = resolve_source(src)
        n_rec = n_bases = 0
        for rec in read_fasta(path):
            n_rec += 1
            n_bases += len(rec.seq)
            ids = tok.encode(rec.seq)
            n_win = len(ids) // L
            dropped_tokens += len(ids) - n_win * L
            windows = ids[: n_win * L].reshape(n_win, L)
            for w, window in enumerate(windows):
                # Windows that are mostly assembly gaps teach nothing.
                if np.count_nonzero(window == tok.n_id) > L // 2:
                    skipped_n += 1
                    continue
                split = "val" if in_val_split(rec.id, w, cfg.val_fraction) else "train"
                rows[split].append((window, rec.id, w))
        sources.append({"uri": src, "records": n_rec, "bases": n_bases})
        if progress:
            print(f"[prepare] {src}: {n_rec} records, {n_bases:,} bases", flush=True)

    splits = {}
    for split, items in rows.items():
        if not items:
            raise ValueError(
                f"corpus has no {split} windows (seq_len={L} tokens); use more data or a shorter data.seq_len"
            )
        splits[split] = _write_split(out_uri, split, items, L, cfg.rows_per_shard)
    train_tokens = np.concatenate([w for w, _, _ in rows["train"]])
    manifest = {
        "version": MANIFEST_VERSION,
        "corpus_id": corpus_id(cfg),
        "complete": True,
        "tokenizer": tok.spec,
        "seq_len": L,
        "sources": sources,
        "splits": splits,
        "dropped_tail_tokens": int(dropped_tokens),
        "skipped_mostly_n_windows": int(skipped_n),
        "unigram_entropy_nats": unigram_entropy(train_tokens, tok.vocab_size),
    }
    storage.write_json(storage.join(out_uri, MANIFEST), manifest)
    if progress:
        print(
            f"[prepare] wrote {splits['train']['rows']} train / {splits['val']['rows']} val windows "
            f"of {L} tokens to {out_uri}",
            flush=True,
        )
    return manifest


def _write_split(out_uri: str, split: str, items: list, L: int, rows_per_shard: int) -> dict:
    shards = []
    for i in range(math.ceil(len(items) / rows_per_shard)):
        chunk = items[i * rows_per_shard : (i + 1) * rows_per_shard]
        flat = pa.array(np.concatenate([w for w, _, _ in chunk]), type=pa.uint16())
        table = pa.table(
            {
                "tokens": pa.FixedSizeListArray.from_arrays(flat, L),
                "record_id": pa.array([r for _, r, _ in chunk], type=pa.string()),
                "window": pa.array([w for _, _, w in chunk], type=pa.int32()),
                "modality": pa.array(["dna"] * len(chunk), type=pa.string()),
            }
        )
        buf = io.BytesIO()
        pq.write_table(table, buf)
        data = buf.getvalue()
        name = f"{split}/part-{i:05d}.parquet"
        storage.write_bytes_atomic(storage.join(out_uri, name), data)
        shards.append(
            {"path": name, "rows": len(chunk), "tokens": len(chunk) * L, "sha256": hashlib.sha256(data).hexdigest()}
        )
    return {"shards": shards, "rows": len(items), "tokens": len(items) * L}


def unigram_entropy(tokens: np.ndarray, vocab_size: int) -> float:
    """Entropy (nats) of the token frequency distribution: the loss of a context-free model."""
    counts = np.bincount(tokens.astype(np.int64), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def load_manifest(shards_uri: str) -> dict:
    """Read a finished manifest or fail with the command that makes one."""
    manifest = storage.read_json(storage.join(shards_uri, MANIFEST))
    if not manifest or not manifest.get("complete"):
        raise FileNotFoundError(
            f"no complete {MANIFEST} under {shards_uri}; run `raybio prepare` for this corpus first"
        )
    return manifest


def split_paths(shards_uri: str, manifest: dict, split: str) -> list[str]:
    return [storage.join(shards_uri, s["path"]) for s in manifest["splits"][split]["shards"]]


def default_shards_uri(storage_uri: str, cfg: DataConfig) -> str:
    return cfg.shards_dir or storage.join(storage_uri, "corpus", corpus_id(cfg))


def local_path(uri: str) -> str:
    """Absolute local path for a local URI (Ray Data wants absolute paths)."""
    return uri if storage.is_remote(uri) else str(Path(uri.removeprefix("file://")).resolve())
