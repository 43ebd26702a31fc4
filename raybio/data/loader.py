"""Training data over prepared shards (read whole or streamed by Ray Data), and the per-batch objectives.

A corpus whose train split holds at most IN_MEMORY_MAX_BYTES of tokens is read whole by each
worker (`LocalData` -> `Windows`, one pyarrow read of its shards): batches are slices of one
token array, reshuffled every epoch, with no Ray Data tasks or actors per run. A larger one
streams: `read_split` (parquet read, shard order permuted by the seed, optional modality
re-weighting) -> Ray Train splits it equally across workers (the trainer preserves order, so
each worker's stream is deterministic) -> `iter_batches` (local shuffle buffer,
`TokensCollate`). Either way -> `mlm_mask` / `ntp_targets`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from ray.data.collate_fn import NumpyBatchCollateFn

from raybio.data import storage
from raybio.data.manifest import Count, Manifest
from raybio.data.tokenizers import IGNORE, MODALITIES

READ_CPUS = 0.25
READ_TASK_BYTES = 64 << 20
BLOCK_BYTES = 32 << 20
REMOTE_BLOCK_BYTES = 8 << 20
CHUNK_ROWS = 1024  # rows per hand-over from Ray Data to the training loop (see iter_batches)
PREFETCH_CHUNKS = 2
# Train splits up to this many token bytes are read whole into every worker (`data.loader: auto`);
# larger ones stream through Ray Data. 1 GiB is ~500 M uint16 tokens: a bacterial or small
# eukaryotic corpus fits, a multi-genome one streams.
IN_MEMORY_MAX_BYTES = 1 << 30
_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)


def read_split(
    shards_uri: str,
    manifest: Manifest,
    split: str,
    *,
    mix: dict[str, float] | None = None,
    seed: int = 0,
    s3=None,
):
    """A streaming Ray Dataset of one split's windows: columns `tokens` and `modality`.

    For the train split the shard order is permuted by `seed` (a block-order shuffle that
    keeps the read streaming) and `mix` re-weights modalities (see `ModalityMixer`).
    """
    import ray.data

    paths, fs = _shard_paths(shards_uri, manifest, split, seed, s3)
    # Training workers may hold every CPU of a small machine, so reads must fit in a CPU
    # share. The DataSourceV2 parquet path adds a file-listing task that always asks for a
    # whole CPU (and then waits forever for one); the V1 path honours `num_cpus` everywhere.
    ctx = ray.data.DataContext.get_current()
    saved, ctx.use_datasource_v2 = ctx.use_datasource_v2, False
    try:
        ds = ray.data.read_parquet(
            paths,
            filesystem=fs,
            columns=_columns(split),
            partitioning=None,
            num_cpus=READ_CPUS,
            override_num_blocks=read_tasks(manifest, split, len(paths)),
            concurrency=read_concurrency(),
        )
    finally:
        ctx.use_datasource_v2 = saved
    # Read tasks hand on a block every BLOCK_BYTES instead of one per task at its end, so the
    # first batches arrive while the task is still reading (sooner from slower object storage).
    ds.context.target_max_block_size = BLOCK_BYTES if fs is None else REMOTE_BLOCK_BYTES
    if split == "train" and mix:
        mixer = ModalityMixer(mix, manifest.splits["train"].modalities, seed)
        ds = ds.map_batches(mixer, batch_format="pyarrow", num_cpus=READ_CPUS)
    return ds


def _shard_paths(shards_uri: str, manifest: Manifest, split: str, seed: int, s3) -> tuple[list[str], object]:
    """(paths, pyarrow filesystem or None when local) of a split's shards; train shards permuted by `seed`."""
    paths = [storage.local_path(p) for p in manifest.split_uris(shards_uri, split)]
    fs = None
    if storage.is_remote(shards_uri):
        fs = storage.filesystem(shards_uri, storage.s3_options(s3), whole_files=True)[0]
        paths = [p.removeprefix("s3://") for p in paths]
    if split == "train":
        paths = [paths[i] for i in np.random.default_rng(seed).permutation(len(paths))]
    return paths, fs


def _columns(split: str) -> list[str]:
    return ["tokens", "modality", "source"] if split == "val" else ["tokens", "modality"]


def split_bytes(manifest: Manifest, split: str) -> int:
    """Bytes of a split's token column (its size in memory)."""
    return manifest.splits[split].tokens * np.dtype(manifest.tokenizer.dtype).itemsize


def reads_whole(manifest: Manifest, loader: str = "auto") -> bool:
    """Whether runs read this corpus whole (`data.loader`: "memory", "stream", or "auto": by the train split's size)."""
    if loader == "auto":
        return split_bytes(manifest, "train") <= IN_MEMORY_MAX_BYTES
    return loader == "memory"


def read_tasks(manifest: Manifest, split: str, n_files: int) -> int:
    """Read tasks for a split: about READ_TASK_BYTES of tokens each, at most one per shard.

    Each task (and each block it makes) costs scheduling and object-store round trips, which
    dominate when shards are small; fewer, larger reads keep the stream ahead of training.
    """
    return int(min(n_files, max(1, -(-split_bytes(manifest, split) // READ_TASK_BYTES))))


def read_concurrency() -> int:
    """Read tasks in flight: a quarter of the cluster's CPUs, at least two.

    Reads ask for a fraction of a CPU (see read_split), so without a cap Ray would start
    many reader processes at once and oversubscribe a small machine.
    """
    import ray

    return max(2, int(ray.cluster_resources().get("CPU", 0)) // 4)


class ModalityMixer:
    """Re-weights modalities to `weights` of the train rows by deterministic resampling.

    A modality with n_m of the N rows and weight w_m is repeated r_m = w_m * N / n_m times
    on average: floor(r_m) copies of each row plus one more with probability frac(r_m),
    decided by a hash of the row's tokens and the seed (so it is the same in every run).
    """

    def __init__(self, weights: dict[str, float], counts: dict[str, Count], seed: int):
        missing = sorted(m for m in weights if m not in counts or not counts[m].rows)
        if missing:
            raise ValueError(
                f"data.mix weights modalities {missing} that the corpus does not have (it has {sorted(counts)})"
            )
        total_w = sum(weights.values())
        n = sum(counts[m].rows for m in weights)
        self.rate = np.array(
            [weights.get(m, 0.0) / total_w * n / counts[m].rows if m in weights else 0.0 for m in MODALITIES]
        )
        self.seed = np.uint64(seed)

    def __call__(self, table: pa.Table) -> pa.Table:
        rows = arrow_to_numpy(table)
        rate = self.rate[modality_ids(rows["modality"])]
        u = _row_hash(rows["tokens"], self.seed)
        copies = np.floor(rate).astype(np.int64) + (u < rate - np.floor(rate))
        return table.take(np.repeat(np.arange(table.num_rows), copies))


def _row_hash(tokens_BL: np.ndarray, seed: np.uint64) -> np.ndarray:
    """A uniform [0, 1) number per row from its tokens and the seed (FNV-style mixing)."""
    h = np.full(tokens_BL.shape[0], seed ^ np.uint64(0xCBF29CE484222325), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in tokens_BL.T.astype(np.uint64):
            h = (h ^ col) * _HASH_MULT
        h ^= h >> np.uint64(29)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _tokens_2d(tokens: np.ndarray) -> np.ndarray:
    return np.stack(tokens) if tokens.dtype == object else tokens  # Ray's numpy format: an array per row


def arrow_to_numpy(table: pa.Table) -> dict[str, np.ndarray]:
    """{"tokens": (B, L) array (zero-copy where possible), "modality": (B,) names} from a shard table."""
    tokens = table.column("tokens").combine_chunks()
    out = {"tokens": tokens.flatten().to_numpy().reshape(len(tokens), tokens.type.list_size)}
    for name in ("modality", "source"):
        if name in table.column_names:
            out[name] = table.column(name).to_numpy(zero_copy_only=False)
    return out


def read_windows(shard) -> dict[str, np.ndarray]:
    """Every row of a small dataset (a validation split): tokens (N, L), modality (N,), source (N,)."""
    parts = [arrow_to_numpy(t) for t in shard.iter_batches(batch_size=4096, batch_format="pyarrow")]
    return {k: np.concatenate([p[k] for p in parts]) for k in ("tokens", "modality", "source")}


def modality_ids(modality: np.ndarray) -> np.ndarray:
    """Modality names -> indices into MODALITIES."""
    out = np.zeros(len(modality), dtype=np.int64)
    for i, name in enumerate(MODALITIES[1:], start=1):
        out[modality == name] = i
    return out


def read_whole(shards_uri: str, manifest: Manifest, split: str, *, mix=None, seed: int = 0, s3=None) -> Windows:
    """A split read whole with pyarrow: the rows `read_split` would stream, in the same order."""
    paths, fs = _shard_paths(shards_uri, manifest, split, seed, s3)
    table = pa.concat_tables([pq.read_table(p, columns=_columns(split), filesystem=fs) for p in paths])
    if split == "train" and mix:
        table = ModalityMixer(mix, manifest.splits["train"].modalities, seed)(table)
    return Windows(table)


class Windows:
    """A split's windows held in memory, iterated by a worker in place of a Ray Data shard.

    Like a shard, `iter_batches(batch_size, batch_format="pyarrow")` yields tables (the
    Validator reads the val split through it); training batches come from the module's
    `iter_batches`, which slices them from one token array.
    """

    def __init__(self, table: pa.Table):
        self.table = table
        rows = arrow_to_numpy(table.combine_chunks())
        self.tokens_NL = rows["tokens"]
        self.modality_N = modality_ids(rows["modality"])

    def __len__(self) -> int:
        return self.table.num_rows

    def shard(self, rank: int, world: int) -> Windows:
        """Rows rank, rank + world, ...: every worker as many (the remainder is dropped, as Ray's equal split does)."""
        return Windows(self.table.take(np.arange(rank, len(self) // world * world, world)))

    def iter_batches(self, batch_size: int, batch_format: str = "pyarrow") -> Iterator[pa.Table]:
        if batch_format != "pyarrow":
            raise ValueError(f"Windows.iter_batches yields pyarrow tables, not {batch_format!r}")
        for start in range(0, len(self), batch_size):
            yield self.table.slice(start, batch_size)

    def batches(self, batch_size: int, *, shuffle: bool, seed: int | None, drop_last: bool) -> Iterator[dict]:
        """`TokensCollate`-style batches; with `shuffle` in an order drawn afresh from `seed` (the whole split)."""
        n = len(self)
        order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
        for start in range(0, n - n % batch_size if drop_last else n, batch_size):
            rows = order[start : start + batch_size]
            yield {
                "tokens": torch.from_numpy(self.tokens_NL[rows].astype(np.int64)),
                "modality": torch.from_numpy(self.modality_N[rows]),
            }


@dataclass(frozen=True)
class LocalData:
    """A corpus every worker reads whole (`reads_whole`); small and picklable, sent instead of Ray datasets."""

    shards_uri: str
    manifest: Manifest
    mix: dict[str, float] | None = None
    seed: int = 0
    s3: object = None

    def shards(self, rank: int = 0, world: int = 1) -> tuple[Windows, Windows]:
        """This worker's equal share of the train split and the whole val split (every worker evaluates it)."""
        train = read_whole(self.shards_uri, self.manifest, "train", mix=self.mix, seed=self.seed, s3=self.s3)
        val = read_whole(self.shards_uri, self.manifest, "val", s3=self.s3)
        return (train.shard(rank, world) if world > 1 else train), val


class TokensCollate(NumpyBatchCollateFn):
    """Collate a Ray Data batch into {"tokens": (B, L) int64, "modality": (B,) int64 index into MODALITIES}."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        tokens = _tokens_2d(batch["tokens"])
        out = {"tokens": torch.from_numpy(tokens.astype(np.int64))}
        if "modality" in batch:
            out["modality"] = torch.from_numpy(modality_ids(batch["modality"]))
        return out


def iter_batches(shard, batch_size: int, *, shuffle_buffer: int = 0, seed: int | None = None, drop_last=False):
    """Collated training batches (`TokensCollate` dicts) from a worker's dataset shard or `Windows`.

    In memory, a non-zero `shuffle_buffer` shuffles the whole shard (an order drawn from `seed`).
    From Ray Data, whose per-batch cost (formatting, transfer, shuffle bookkeeping) would dominate
    at small training batches, rows are fetched in chunks of about CHUNK_ROWS (through a local
    shuffle buffer of at least `shuffle_buffer` rows), collated once, and sliced into batches.
    """
    if isinstance(shard, Windows):
        yield from shard.batches(batch_size, shuffle=bool(shuffle_buffer), seed=seed, drop_last=drop_last)
        return
    chunk = batch_size * max(1, CHUNK_ROWS // batch_size)
    collate = TokensCollate()
    chunks = shard.iter_batches(
        batch_size=chunk,
        batch_format="pyarrow",  # fixed-size lists convert to one (B, L) array, not an array per row
        prefetch_batches=PREFETCH_CHUNKS,
        local_shuffle_buffer_size=max(shuffle_buffer, chunk) if shuffle_buffer else None,
        local_shuffle_seed=seed if shuffle_buffer else None,
    )
    for table in chunks:
        out = collate(arrow_to_numpy(table))
        n = len(out["tokens"])
        for i in range(0, n - n % batch_size if drop_last else n, batch_size):
            yield {k: v[i : i + batch_size] for k, v in out.items()}


def mlm_mask(
    tokens_BL: torch.Tensor,
    gen: torch.Generator,
    mask_id: int,
    n_special: int,
    vocab_size: int,
    mask_prob: float = 0.15,
    mask_only: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: pick `mask_prob` of tokens; 80% -> <mask>, 10% random, 10% unchanged.

    Ids below `n_special` (padding, separators, modality tokens) are never picked.
    `mask_only` replaces every picked token by <mask> (a stricter evaluation: the model
    cannot copy the answer from its input).
    """
    u = torch.rand(tokens_BL.shape, generator=gen)
    picked = (u < mask_prob) & (tokens_BL >= n_special)
    labels = torch.where(picked, tokens_BL, IGNORE)
    inputs = tokens_BL.clone()
    if mask_only:
        inputs[picked] = mask_id
        return inputs, labels
    r = torch.rand(tokens_BL.shape, generator=gen)
    to_mask = picked & (r < 0.8)
    to_rand = picked & (r >= 0.8) & (r < 0.9)
    inputs[to_mask] = mask_id
    rand_ids = torch.randint(n_special, vocab_size, tokens_BL.shape, generator=gen)
    inputs[to_rand] = rand_ids[to_rand]
    return inputs, labels


def ntp_targets(tokens_BL: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token prediction: inputs are tokens[:-1], labels tokens[1:]."""
    return tokens_BL[:, :-1], tokens_BL[:, 1:]
