"""The typed manifest of a prepared corpus (`manifest.json`), the one way every reader sees it.

Written last by `raybio prepare`, so its presence with `complete: true` means the shards
under the same directory are whole. It records the shards (rows, tokens, sha256) per split,
the tokenizer spec and hash, source provenance, rejected records by reason, and the
unigram entropy of the train tokens (the loss of a context-free model: a reference every
trained model must beat).
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from raybio.data import storage
from raybio.data.config import DataConfig
from raybio.data.sources import source_config
from raybio.data.validate import NOTES, REASONS, InputError

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 3  # 3: shards carry `source`; the manifest, train token counts
TOKENIZER_FILE = "tokenizer.json"  # beside the manifest; the checkpoint copy has the same name


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Shard(_Record):
    path: str  # relative to the corpus directory
    rows: int
    tokens: int
    sha256: str


class Count(_Record):
    rows: int
    tokens: int


class Split(_Record):
    shards: list[Shard]
    rows: int
    tokens: int
    modalities: dict[str, Count]


class TokenizerSpec(_Record):
    """What training needs of the tokenizer without loading it; `file` + `sha256` name the tokenizer itself."""

    kind: str
    vocab_size: int
    n_special: int  # ids below it (specials, modality tokens) are never masked or predicted as content
    mask_id: int
    pad_id: int
    eos_id: int
    modalities: list[str]
    modality_token_ids: dict[str, int]
    dtype: str  # numpy dtype of the shards' token column
    k: int | None = None  # k-mer size (kmer, multiomic)
    modality: str | None = None  # BPE: the one modality it covers
    residues_per_token: float | None = None  # BPE: measured compression
    file: str
    sha256: str


class SourceFile(_Record):
    uri: str
    sha256: str
    records: int
    residues: int
    modality: str
    format: str


class Source(_Record):
    uri: str
    modality: list[str]
    records: int
    residues: int
    files: list[SourceFile]


class Manifest(_Record):
    version: int
    corpus_id: str
    complete: bool
    tokenizer: TokenizerSpec
    seq_len: int
    config: dict  # the data config it was prepared from (provenance)
    sources: list[Source]
    rejected: dict[str, int]
    rejected_examples: dict[str, str]
    repairs: dict[str, int]
    splits: dict[str, Split]
    dropped_tail_tokens: int
    skipped_mostly_unknown_windows: int
    unigram_entropy_nats: float
    # Tokens of each id in the train split: the unigram model every validation loss is set against.
    train_token_counts: list[int] = []

    def split_uris(self, shards_uri: str, split: str) -> list[str]:
        """URIs of the parquet shards of `split` ('train' or 'val')."""
        return [storage.join(shards_uri, s.path) for s in self.splits[split].shards]

    def save(self, shards_uri: str, s3=None) -> None:
        storage.write_json(storage.join(shards_uri, MANIFEST_FILE), self.model_dump(), s3)


def read_manifest(shards_uri: str, s3=None) -> Manifest | None:
    """The manifest under `shards_uri` if one is complete, else None."""
    raw = storage.read_json(storage.join(shards_uri, MANIFEST_FILE), s3)
    if not raw or not raw.get("complete"):
        return None
    return Manifest.model_validate(raw)


def load_manifest(shards_uri: str, s3=None) -> Manifest:
    """The complete manifest under `shards_uri`, or FileNotFoundError with the command that makes one."""
    manifest = read_manifest(shards_uri, s3)
    if manifest is None:
        raise FileNotFoundError(
            f"no complete {MANIFEST_FILE} under {shards_uri}; run `raybio prepare` for this corpus first"
        )
    return manifest


def unigram_entropy(counts: np.ndarray) -> float:
    """Entropy (nats) of a token frequency distribution: the loss of a context-free model."""
    counts = np.asarray(counts, dtype=np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def build_manifest(
    cfg: DataConfig, cid: str, out_uri: str, run_dir: str, files: list, tok, tok_json: bytes, totals: dict
) -> Manifest:
    """The manifest of a finished prepare run: shards as written under `run_dir`, counts from the stages."""
    rejected = totals.get("rejected", {})
    counts = totals.get("train_token_counts")
    return Manifest.model_validate(
        {
            "version": MANIFEST_VERSION,
            "corpus_id": cid,
            "complete": True,
            "tokenizer": {**tok.spec, "file": TOKENIZER_FILE, "sha256": hashlib.sha256(tok_json).hexdigest()},
            "seq_len": cfg.seq_len,
            "config": cfg.model_dump(exclude={"s3", "shards_dir", "mix", "shuffle_buffer", "mask_prob"}),
            "sources": _sources(cfg, files, totals.get("files", {})),
            "rejected": {r: rejected.get("counts", {}).get(r, 0) for r in REASONS},
            "rejected_examples": rejected.get("examples", {}),
            "repairs": {n: rejected.get("notes", {}).get(n, 0) for n in NOTES},
            "splits": {split: _split(cfg, out_uri, run_dir, split, totals) for split in ("train", "val")},
            "dropped_tail_tokens": int(totals.get("dropped_tail_tokens", 0)),
            "skipped_mostly_unknown_windows": int(totals.get("skipped_mostly_unknown_windows", 0)),
            # Over content tokens only: MLM never predicts specials (separators, modality tokens).
            "unigram_entropy_nats": unigram_entropy(counts[tok.n_special :]) if counts is not None else float("nan"),
            "train_token_counts": [] if counts is None else [int(c) for c in counts],
        }
    )


def _split(cfg: DataConfig, out_uri: str, run_dir: str, split: str, totals: dict) -> dict:
    """One split's shards (as written, with checksums) and its windows per modality."""
    L, shards = cfg.seq_len, []
    for rel, _ in storage.list_files(storage.join(out_uri, run_dir, f"split={split}"), cfg.s3):
        path = f"{run_dir}/split={split}/{rel}"
        data = storage.read_bytes(storage.join(out_uri, path), cfg.s3)
        rows = pq.read_metadata(io.BytesIO(data)).num_rows
        shards.append({"path": path, "rows": rows, "tokens": rows * L, "sha256": hashlib.sha256(data).hexdigest()})
    rows = sum(s["rows"] for s in shards)
    if not rows:
        raise InputError(
            f"corpus has no {split} windows of {L} tokens; use more data, a shorter data.seq_len "
            f"or a larger data.val_fraction"
        )
    by_mod = {
        m: {"rows": n, "tokens": n * L}
        for key, n in sorted(totals.get("windows", {}).items())
        for s, m in [key.split("/")]
        if s == split and n
    }
    return {"shards": shards, "rows": rows, "tokens": rows * L, "modalities": by_mod}


def _sources(cfg: DataConfig, files: list, file_stats: dict) -> list[dict]:
    """Each configured source with its files' checksums and record, residue and modality counts."""
    sources = []
    for i, raw in enumerate(cfg.sources):
        mine = [dict(uri=f.uri, **file_stats.get(f.uri, {})) for f in files if f.source_index == i]
        for m in mine:
            m.pop("source_index", None)
        sources.append(
            {
                "uri": source_config(raw).uri,
                "modality": sorted({m["modality"] for m in mine if "modality" in m}),
                "records": sum(m.get("records", 0) for m in mine),
                "residues": sum(m.get("residues", 0) for m in mine),
                "files": mine,
            }
        )
    return sources
