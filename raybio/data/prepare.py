"""Corpus preparation as a Ray Data job: read → validate → split → tokenize → pack → write_parquet.

The output directory holds `manifest.json` (shards with rows, tokens and sha256, the
tokenizer spec and hash, source provenance, rejected-record counts by reason),
`tokenizer.json`, and the parquet shards under `data-<run>/split=<train|val>/`. A
re-run finds a complete manifest for the same corpus id and does nothing; an incomplete
run is discarded and redone.

Splitting is deterministic by hash. A record up to `2 * block` residues long goes whole to
validation when the hash of (source, record ID) falls below `val_fraction`. A longer record
(a genome) is cut into blocks of about 16 windows' worth of residues (`split_block`) and
the round(val_fraction * n_blocks) blocks with the lowest hashes (at least one) go to
validation, so even a single-genome corpus has a validation split.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import sys
import uuid
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raybio.config import DataConfig
from raybio.data import storage
from raybio.data.sources import SourceFile, iter_records, plan_sources, resolve_source, source_config
from raybio.data.tokenizers import MODALITIES, build_tokenizer, reverse_complement, token_dtype
from raybio.data.validate import NOTES, REASONS, InputError, Policy, Rejects

__all__ = ["default_shards_uri", "load_manifest", "prepare", "resolve_source", "split_paths"]

MANIFEST = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_VERSION = 2
SPLIT_BLOCK_WINDOWS = 16  # validation blocks of a long record span this many windows
READ_BATCH_RESIDUES = 1 << 24  # the reader hands on pieces in batches of about this many residues
BPE_RESIDUES_PER_TOKEN = 4
PACK_BATCH = 1024  # pieces per tokenize + pack batch (one partial window per batch is dropped)
# Fields of DataConfig that change the shards (the others only change how they are read).
SHARD_FIELDS = (
    "seq_len",
    "val_fraction",
    "rows_per_shard",
    "min_length",
    "iupac_to_n",
    "on_invalid",
    "reverse_complement",
    "pack",
)


def corpus_id(cfg: DataConfig) -> str:
    """Short hash of everything that determines the prepared corpus."""
    key = {
        "version": MANIFEST_VERSION,
        "sources": [source_config(s).model_dump() for s in cfg.sources],
        "tokenizer": cfg.tokenizer.model_dump(),
        **{f: getattr(cfg, f) for f in SHARD_FIELDS},
    }
    return hashlib.sha256(repr(sorted(key.items())).encode()).hexdigest()[:12]


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


# ---------------------------------------------------------------- Ray Data stages


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


class _Stats:
    """Driver-side sink for counts the stages report (a Ray actor)."""

    def __init__(self):
        self.totals: dict = {}

    def add(self, part: dict) -> None:
        _merge(self.totals, part)

    def get(self) -> dict:
        return self.totals


# ---------------------------------------------------------------- driver


def prepare(cfg: DataConfig, out_uri: str, progress: bool = True) -> dict:
    """Prepare the corpus into `out_uri` (skipped when its manifest is already complete)."""
    s3 = cfg.s3
    cid = corpus_id(cfg)
    existing = storage.read_json(storage.join(out_uri, MANIFEST), s3)
    if existing and existing.get("complete"):
        if existing.get("corpus_id") != cid:
            raise InputError(
                f"{out_uri} holds corpus {existing.get('corpus_id')}, prepared from a different data config "
                f"(this one is {cid}); choose another output location or delete that one"
            )
        return existing
    import ray

    from raybio.cluster import init_ray

    init_ray()
    kind = cfg.tokenizer.kind
    tok = None if kind == "bpe" else build_tokenizer(cfg.tokenizer)
    files = plan_sources(cfg.sources, kind, tok.modalities if tok else MODALITIES, s3)
    if tok is None:
        tok = _train_bpe(cfg, files, progress)
    tok_json = tok.to_json().encode()
    storage.write_bytes_atomic(storage.join(out_uri, TOKENIZER_FILE), tok_json, s3)
    for stale, _ in storage.list_files(out_uri, s3):  # shards of an earlier, unfinished run
        if stale.startswith("data-"):
            storage.delete_dir(storage.join(out_uri, stale.split("/", 1)[0]), s3)
    run_dir = f"data-{uuid.uuid4().hex[:8]}"

    stats = ray.remote(num_cpus=0)(_Stats).remote()
    with _data_context(progress):
        windows = _windows(cfg, files, tok, stats)
        fs, path = storage.filesystem(storage.join(out_uri, run_dir), s3)
        try:
            windows.write_parquet(
                path,
                filesystem=fs,
                partition_cols=["split"],
                max_rows_per_file=cfg.rows_per_shard,
            )
        except Exception as err:  # a bad input inside a task: raise it as itself
            bad = _input_error(err)
            if bad is None:
                raise
            raise bad from None
    totals = ray.get(stats.get.remote())
    ray.kill(stats)

    manifest = _manifest(cfg, cid, out_uri, run_dir, files, tok, tok_json, totals)
    storage.write_json(storage.join(out_uri, MANIFEST), manifest, s3)
    if progress:
        print(summary(manifest, out_uri), flush=True)
    return manifest


def split_block(cfg: DataConfig, modality: str) -> int:
    """Residues per validation block of a long record: about SPLIT_BLOCK_WINDOWS windows.

    Depends on the config only (BPE is assumed to average BPE_RESIDUES_PER_TOKEN), so the
    BPE training pass and the tokenizing pass split identically.
    """
    t = cfg.tokenizer
    per_token = {"kmer": t.k, "multiomic": t.k if modality == "dna" else 1, "bpe": BPE_RESIDUES_PER_TOKEN}
    return SPLIT_BLOCK_WINDOWS * cfg.seq_len * per_token.get(t.kind, 1)


def _windows(cfg: DataConfig, files: list[SourceFile], tok, stats, splits_only: bool = False):
    """The Ray Dataset of packed windows (or, with `splits_only` and no `tok`, of split pieces)."""
    modalities = sorted({f.modality for f in files})
    import ray.data

    blocks = {m: split_block(cfg, m) for m in modalities}
    # One row (a JSON string: no type guessing) and one read task per source file.
    ds = ray.data.from_items([{"file": json.dumps(f.as_dict())} for f in files], override_num_blocks=len(files))
    ds = ds.map_batches(
        read_validate_split,
        batch_size=1,
        fn_kwargs={"cfg": cfg.model_dump(), "blocks": blocks, "stats": stats, "s3": storage.s3_options(cfg.s3)},
    )
    if splits_only:
        return ds
    return ds.map_batches(
        tokenize_pack, batch_size=PACK_BATCH, fn_kwargs={"cfg": cfg.model_dump(), "tok": tok, "stats": stats}
    )


def _train_bpe(cfg: DataConfig, files: list[SourceFile], progress: bool):
    """Train the BPE vocabulary on (up to `bpe_train_residues` of) the train split."""
    import ray

    from raybio.data.bpe import BPETokenizer

    modalities = sorted({f.modality for f in files})
    if len(modalities) > 1:
        raise InputError(
            "a BPE vocabulary covers one modality but the sources hold DNA and protein; "
            "use data.tokenizer.kind=multiomic, or prepare each modality separately"
        )

    texts, budget = [], cfg.tokenizer.bpe_train_residues
    stats = ray.remote(num_cpus=0)(_Stats).remote()
    with _data_context(False):
        pieces = _windows(cfg, files, None, stats, splits_only=True)
        for batch in pieces.iter_batches(batch_size=64, batch_format="numpy"):
            texts += [s for s, split in zip(batch["seq"], batch["split"], strict=True) if split == "train"]
            budget -= sum(len(s) for s in texts[-len(batch["seq"]) :])
            if budget <= 0:
                break
    ray.kill(stats)
    if progress:
        print(f"[prepare] training a {cfg.tokenizer.vocab_size}-token BPE on {sum(map(len, texts)):,} residues")
    return BPETokenizer.train(texts, modalities[0], cfg.tokenizer.vocab_size)


class _data_context:
    """Deterministic (order-preserving) Ray Data execution, progress bars on request."""

    def __init__(self, progress: bool):
        self.progress = progress

    def __enter__(self):
        import os

        import ray.data

        ctx = ray.data.DataContext.get_current()
        self.saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = self.progress and not os.environ.get("RAY_DATA_DISABLE_PROGRESS_BARS")
        return ctx

    def __exit__(self, *exc):
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = self.saved


def _input_error(err: BaseException) -> InputError | None:
    """The InputError inside a Ray task failure, if that is what it was."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        cause = getattr(err, "cause", None)  # a RayTaskError carries the task's own exception here
        if isinstance(cause, InputError):
            # Our messages are one line; Ray Data appends its retry advice after a newline.
            return InputError(str(cause).split("\n", 1)[0])
        if isinstance(err, InputError) and type(err) is InputError:
            return err
        err = err.__cause__ or err.__context__
    return None


def _manifest(cfg, cid, out_uri, run_dir, files, tok, tok_json, totals) -> dict:
    L = cfg.seq_len
    splits = {}
    for split in ("train", "val"):
        shards = []
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
        splits[split] = {"shards": shards, "rows": rows, "tokens": rows * L, "modalities": by_mod}
    rejected = totals.get("rejected", {})
    file_stats = totals.get("files", {})
    sources = []
    for i, raw in enumerate(cfg.sources):
        src = source_config(raw)
        mine = [dict(uri=f.uri, **file_stats.get(f.uri, {})) for f in files if f.source_index == i]
        for m in mine:
            m.pop("source_index", None)
        sources.append(
            {
                "uri": src.uri,
                "modality": sorted({m["modality"] for m in mine if "modality" in m}),
                "records": sum(m.get("records", 0) for m in mine),
                "residues": sum(m.get("residues", 0) for m in mine),
                "files": mine,
            }
        )
    counts = totals.get("train_token_counts")
    return {
        "version": MANIFEST_VERSION,
        "corpus_id": cid,
        "complete": True,
        "tokenizer": {**tok.spec, "file": TOKENIZER_FILE, "sha256": hashlib.sha256(tok_json).hexdigest()},
        "seq_len": L,
        "config": cfg.model_dump(exclude={"s3", "shards_dir", "mix", "shuffle_buffer", "mask_prob"}),
        "sources": sources,
        "rejected": {r: rejected.get("counts", {}).get(r, 0) for r in REASONS},
        "rejected_examples": rejected.get("examples", {}),
        "repairs": {n: rejected.get("notes", {}).get(n, 0) for n in NOTES},
        "splits": splits,
        "dropped_tail_tokens": int(totals.get("dropped_tail_tokens", 0)),
        "skipped_mostly_unknown_windows": int(totals.get("skipped_mostly_unknown_windows", 0)),
        # Over content tokens only: MLM never predicts specials (separators, modality tokens).
        "unigram_entropy_nats": unigram_entropy(counts[tok.n_special :]) if counts is not None else float("nan"),
    }


def unigram_entropy(counts: np.ndarray) -> float:
    """Entropy (nats) of a token frequency distribution: the loss of a context-free model."""
    counts = np.asarray(counts, dtype=np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def summary(manifest: dict, out_uri: str) -> str:
    """The human-readable prepare report: sources, rejected records by reason, splits."""
    lines = [f"[prepare] corpus {manifest['corpus_id']} -> {out_uri}"]
    for s in manifest["sources"]:
        mods = "/".join(s["modality"])
        lines.append(f"  source {s['uri']}: {mods}, {s['records']:,} records, {s['residues']:,} residues")
    lines.append("  rejected records by reason:")
    for reason, n in manifest["rejected"].items():
        example = manifest["rejected_examples"].get(reason, "")
        lines.append(f"    {reason:<18} {n:>8,}" + (f"   e.g. {example}" if example else ""))
    for note, n in manifest["repairs"].items():
        if n:
            lines.append(f"  repaired: {note} {n:,}")
    for split, s in manifest["splits"].items():
        mods = ", ".join(f"{m} {v['rows']:,}" for m, v in s["modalities"].items())
        lines.append(f"  {split}: {s['rows']:,} windows ({mods}), {s['tokens']:,} tokens in {len(s['shards'])} shards")
    t = manifest["tokenizer"]
    lines.append(
        f"  tokenizer {t['kind']} (vocab {t['vocab_size']}, {t['dtype']}, sha256 {t['sha256'][:12]}); "
        f"dropped tail tokens {manifest['dropped_tail_tokens']:,}; "
        f"skipped mostly-N/X windows {manifest['skipped_mostly_unknown_windows']:,}"
    )
    return "\n".join(lines)


def load_manifest(shards_uri: str, s3=None) -> dict:
    """Read a finished manifest or fail with the command that makes one."""
    manifest = storage.read_json(storage.join(shards_uri, MANIFEST), s3)
    if not manifest or not manifest.get("complete"):
        raise FileNotFoundError(
            f"no complete {MANIFEST} under {shards_uri}; run `raybio prepare` for this corpus first"
        )
    return manifest


def load_tokenizer(shards_uri: str, manifest: dict, s3=None):
    """The tokenizer saved beside the shards, checked against the manifest's hash."""
    from raybio.data.tokenizers import tokenizer_from_json

    data = storage.read_bytes(storage.join(shards_uri, manifest["tokenizer"]["file"]), s3)
    if hashlib.sha256(data).hexdigest() != manifest["tokenizer"]["sha256"]:
        raise InputError(f"{shards_uri}/{TOKENIZER_FILE} does not match the manifest's tokenizer hash")
    return tokenizer_from_json(data.decode())


def split_paths(shards_uri: str, manifest: dict, split: str) -> list[str]:
    return [storage.join(shards_uri, s["path"]) for s in manifest["splits"][split]["shards"]]


def default_shards_uri(storage_uri: str, cfg: DataConfig) -> str:
    return cfg.shards_dir or storage.join(storage_uri, "corpus", corpus_id(cfg))


def local_path(uri: str) -> str:
    """Absolute local path for a local URI (Ray Data wants absolute paths)."""
    return uri if storage.is_remote(uri) else storage.filesystem(uri)[1]


# ---------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `raybio prepare` (the config flags --preset/--config/--set come from the CLI)."""
    g = parser.add_argument_group("corpus")
    g.add_argument("--data", nargs="+", metavar="URI", help="sources: paths, globs, s3:// URIs, bundled:<name>")
    g.add_argument("--tokenizer", choices=["kmer", "nucleotide", "protein", "bpe", "multiomic"])
    g.add_argument("--k", type=int, help="k-mer size (kmer, multiomic)")
    g.add_argument("--seq-len", type=int, help="tokens per window")
    g.add_argument("--min-length", type=int, help="reject records shorter than this (residues)")
    g.add_argument("--iupac-to-n", action="store_true", help="map IUPAC ambiguity codes to N (DNA) / X (protein)")
    g.add_argument("--skip-invalid", action="store_true", help="drop (and count) records with invalid characters")
    g.add_argument("--reverse-complement", action="store_true", help="add reverse-complement DNA train blocks")


def overrides_from_args(args: argparse.Namespace) -> list[str]:
    """Config overrides for the flags `add_arguments` defines."""
    out = []
    if args.data:
        out.append(f"data.sources={list(args.data)!r}")
    for flag, key in (("tokenizer", "tokenizer.kind"), ("k", "tokenizer.k"), ("seq_len", "seq_len")):
        if getattr(args, flag) is not None:
            out.append(f"data.{key}={getattr(args, flag)}")
    if args.min_length is not None:
        out.append(f"data.min_length={args.min_length}")
    if args.iupac_to_n:
        out.append("data.iupac_to_n=true")
    if args.skip_invalid:
        out.append("data.on_invalid=skip")
    if args.reverse_complement:
        out.append("data.reverse_complement=true")
    return out


def main(argv: list[str] | None = None) -> None:
    """`python -m raybio.data.prepare` is `raybio prepare`."""
    from raybio.cli import main as cli_main

    cli_main(["prepare", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
