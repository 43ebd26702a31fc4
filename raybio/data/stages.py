"""The two Ray Data stages of `raybio prepare`, and the actor that gathers their counts.

Stage 1 (`read_validate_split`, one source file per call) parses, validates and splits
records into train/val pieces; stage 2 (`tokenize_pack`) tokenizes the pieces and packs each
(split, modality) stream into fixed windows. Both report counts (records, residues, rejects,
windows, token frequencies) to a `Stats` actor, which the driver reads for the manifest.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from raybio.data.config import DataConfig
from raybio.data.sources import SourceFile, iter_records
from raybio.data.splits import split_record
from raybio.data.tokenizers import reverse_complement, token_dtype
from raybio.data.validate import Policy, Rejects

READ_BATCH_RESIDUES = 1 << 24  # the reader hands on pieces in batches of about this many residues
PACK_BATCH = 1024  # pieces per tokenize + pack batch (one partial window per batch is dropped)


def read_validate_split(batch: dict, *, cfg: dict, blocks: dict, stats, s3: dict) -> Iterator[dict]:
    """Stage 1 (one source file per call): parse, validate, split into train/val pieces."""
    data = DataConfig.model_validate(cfg)
    policy = Policy(iupac_to_n=data.iupac_to_n, on_invalid=data.on_invalid, min_length=data.min_length)
    for spec in batch["file"]:
        sf = SourceFile(**json.loads(spec))
        rejects, digest = Rejects(), hashlib.sha256()
        out: dict[str, list] = defaultdict(list)
        n_records = n_residues = pending = 0
        for rec in iter_records(sf, policy, rejects, s3, digest):
            n_records += 1
            n_residues += len(rec.seq)
            key = f"{sf.source_index}:{rec.id}"
            pieces = split_record(rec.seq, key, blocks[sf.modality], data.val_fraction)
            if data.reverse_complement and sf.modality == "dna":
                # The reverse strand of the training pieces, last block first (it reads backwards).
                pieces += [
                    ("train", reverse_complement(p), end) for split, p, end in reversed(pieces) if split == "train"
                ]
            for split, piece, end in pieces:
                out["split"].append(split)
                out["seq"].append(piece)
                out["ends_run"].append(end)
                out["record_id"].append(rec.id)
                out["source"].append(sf.source_index)
                out["label"].append(rec.label)
                out["modality"].append(sf.modality)
                pending += len(piece)
            if pending >= READ_BATCH_RESIDUES:
                yield _batch(out)
                out, pending = defaultdict(list), 0
        _add(
            stats,
            {
                "files": {
                    sf.uri: {
                        "source_index": sf.source_index,
                        "sha256": digest.hexdigest(),
                        "records": n_records,
                        "residues": n_residues,
                        "modality": sf.modality,
                        "format": sf.format,
                    }
                },
                "rejected": rejects.as_dict(),
            },
        )
        if out:
            yield _batch(out)


def tokenize_pack(batch: dict, *, cfg: dict, tok, stats) -> pa.Table:
    """Stage 2: tokenize pieces, pack each (split, modality) stream into fixed windows."""
    data = DataConfig.model_validate(cfg)
    L = data.seq_len
    dtype = token_dtype(tok.vocab_size)
    mod_tokens = tok.modality_token_ids
    body = L - (1 if mod_tokens else 0)
    unknown = np.array(tok.unknown_ids)
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (split, modality) in enumerate(zip(batch["split"], batch["modality"], strict=True)):
        groups[(split, modality)].append(i)
    cols: dict[str, list] = defaultdict(list)
    st = {"windows": defaultdict(int), "dropped_tail_tokens": 0, "skipped_mostly_unknown_windows": 0}
    counts = np.zeros(tok.vocab_size, dtype=np.int64)
    for (split, modality), idx in groups.items():
        ids = _encode_all(tok, [batch["seq"][i] for i in idx], modality)
        units = _units(ids, [bool(batch["ends_run"][i]) for i in idx], tok.eos_id, data.pack)
        for unit, first in units:
            stream = np.concatenate(unit) if unit else np.zeros(0, dtype)
            n_win = len(stream) // body if data.pack else math.ceil(len(stream) / body)
            if not data.pack and len(stream) % body:
                stream = np.concatenate([stream, np.full(n_win * body - len(stream), tok.pad_id, dtype)])
            st["dropped_tail_tokens"] += len(stream) - n_win * body
            win_WB = stream[: n_win * body].reshape(n_win, body)
            if mod_tokens:
                win_WB = np.concatenate([np.full((n_win, 1), mod_tokens[modality], dtype), win_WB], axis=1)
            keep = np.isin(win_WB, unknown).sum(axis=1) <= L // 2  # mostly-N/X windows teach nothing
            st["skipped_mostly_unknown_windows"] += int((~keep).sum())
            starts = np.cumsum([0] + [len(u) for u in unit])[:-1]
            owner = np.searchsorted(starts, np.arange(n_win) * body, side="right") - 1
            for w in np.flatnonzero(keep):
                piece = idx[first[owner[w]]]
                cols["tokens"].append(win_WB[w])
                cols["split"].append(split)
                cols["modality"].append(modality)
                cols["record_id"].append(batch["record_id"][piece])
                cols["source"].append(batch["source"][piece])
                cols["label"].append(batch["label"][piece])
            kept = win_WB[keep]
            st["windows"][f"{split}/{modality}"] += len(kept)
            if split == "train":
                counts += np.bincount(kept.reshape(-1), minlength=tok.vocab_size)
    _add(stats, {**st, "windows": dict(st["windows"]), "train_token_counts": counts})
    return _window_table(cols, L, dtype)


def _encode_all(tok, seqs: list[str], modality: str) -> list[np.ndarray]:
    if hasattr(tok, "encode_batch"):  # HF BPE: parallel in Rust
        return tok.encode_batch(seqs)
    return [tok.encode(s, modality) for s in seqs]


def _units(ids: list[np.ndarray], ends: list[bool], eos: int, pack: bool):
    """Group token arrays into streams: the whole batch when packing, else one per record run.

    Yields (arrays, first) where arrays[j] came from piece first[j] of the batch; an <eos>
    follows every piece that ends a contiguous run of one record.
    """
    eos_arr = np.array([eos], dtype=ids[0].dtype) if ids else None
    unit, first = [], []
    for j, (a, end) in enumerate(zip(ids, ends, strict=True)):
        unit.append(np.concatenate([a, eos_arr]) if end else a)
        first.append(j)
        if end and not pack:
            yield unit, first
            unit, first = [], []
    if unit:
        yield unit, first


def _window_table(cols: dict, L: int, dtype: np.dtype) -> pa.Table:
    flat = np.concatenate(cols["tokens"]) if cols["tokens"] else np.zeros(0, dtype)
    return pa.table(
        {
            "tokens": pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa.from_numpy_dtype(dtype)), L),
            "split": pa.array(cols["split"], type=pa.string()),
            "modality": pa.array(cols["modality"], type=pa.string()),
            "record_id": pa.array(cols["record_id"], type=pa.string()),
            # Index into the manifest's sources: validation samples are stratified by it.
            "source": pa.array(cols["source"], type=pa.int32()),
            "label": pa.array(cols["label"], type=pa.string()),
        }
    )


def _batch(out: dict) -> dict:
    return {k: np.array(v, dtype=object) if k != "ends_run" else np.array(v, dtype=bool) for k, v in out.items()}


def _add(stats, part: dict) -> None:
    import ray

    ray.get(stats.add.remote(part))


def _merge(into: dict, part: dict) -> None:
    for k, v in part.items():
        if isinstance(v, dict):
            _merge(into.setdefault(k, {}), v)
        elif isinstance(v, str):
            into.setdefault(k, v)  # first example wins
        elif k in into:
            into[k] = into[k] + v
        else:
            into[k] = v


class Stats:
    """Driver-side sink for counts the stages report (a Ray actor)."""

    def __init__(self):
        self.totals: dict = {}

    def add(self, part: dict) -> None:
        _merge(self.totals, part)

    def get(self) -> dict:
        return self.totals
