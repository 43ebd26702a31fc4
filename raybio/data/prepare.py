"""`raybio prepare`: turn FASTA/CSV sources into parquet shards + `manifest.json`, as one Ray Data job.

read → validate → split (raybio/data/splits.py) → tokenize → pack (raybio/data/stages.py)
→ write_parquet, then the typed manifest (raybio/data/manifest.py) written last. The output
directory holds `manifest.json`, `tokenizer.json` and the shards under
`data-<run>/split=<train|val>/`. A re-run finds a complete manifest for the same corpus id
and does nothing; an incomplete run is discarded and redone.
"""

from __future__ import annotations

import hashlib
import json
import uuid

from raybio.data import storage
from raybio.data.config import DataConfig
from raybio.data.manifest import MANIFEST_VERSION, TOKENIZER_FILE, Manifest, build_manifest, read_manifest
from raybio.data.sources import SourceFile, plan_sources, source_config
from raybio.data.splits import split_block
from raybio.data.stages import PACK_BATCH, Stats, read_validate_split, tokenize_pack
from raybio.data.summary import summary
from raybio.data.tokenizer_io import build_tokenizer, tokenizer_from_json
from raybio.data.tokenizers import MODALITIES, Tokenizer
from raybio.data.validate import InputError, input_error_in, keep_input_errors_off_the_console

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


def prepare(cfg: DataConfig, out_uri: str, progress: bool = True) -> Manifest:
    """Prepare the corpus into `out_uri` (skipped when its manifest is already complete)."""
    s3 = cfg.s3
    cid = corpus_id(cfg)
    existing = read_manifest(out_uri, s3)
    if existing is not None:
        if existing.corpus_id != cid:
            raise InputError(
                f"{out_uri} holds corpus {existing.corpus_id}, prepared from a different data config "
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

    stats = ray.remote(num_cpus=0)(Stats).remote()
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
            bad = input_error_in(err)
            if bad is None:
                raise
            raise bad from None
    totals = ray.get(stats.get.remote())
    ray.kill(stats)

    manifest = build_manifest(cfg, cid, out_uri, run_dir, files, tok, tok_json, totals)
    manifest.save(out_uri, s3)
    if progress:
        print(summary(manifest, out_uri), flush=True)
    return manifest


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
    stats = ray.remote(num_cpus=0)(Stats).remote()
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
    """Deterministic (order-preserving) Ray Data execution, progress bars on request, and a bad input
    inside a task reported as raybio's one line (Ray Data's traceback stays in its log file)."""

    def __init__(self, progress: bool):
        self.progress = progress

    def __enter__(self):
        import os

        import ray.data

        keep_input_errors_off_the_console()
        ctx = ray.data.DataContext.get_current()
        self.saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = self.progress and not os.environ.get("RAY_DATA_DISABLE_PROGRESS_BARS")
        return ctx

    def __exit__(self, *exc):
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = self.saved


def default_shards_uri(storage_uri: str, cfg: DataConfig) -> str:
    return cfg.shards_dir or storage.join(storage_uri, "corpus", corpus_id(cfg))


def load_tokenizer(shards_uri: str, manifest: Manifest, s3=None) -> Tokenizer:
    """The tokenizer saved beside the shards, checked against the manifest's hash."""
    data = storage.read_bytes(storage.join(shards_uri, manifest.tokenizer.file), s3)
    if hashlib.sha256(data).hexdigest() != manifest.tokenizer.sha256:
        raise InputError(f"{shards_uri}/{TOKENIZER_FILE} does not match the manifest's tokenizer hash")
    return tokenizer_from_json(data.decode())
