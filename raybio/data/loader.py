"""Ray Data datasets over prepared shards, and the per-batch objectives (MLM masking, NTP)."""

from __future__ import annotations

import numpy as np
import torch
from ray.data.collate_fn import NumpyBatchCollateFn

from raybio.data.prepare import local_path, split_paths

IGNORE = -100


def read_split(shards_uri: str, manifest: dict, split: str):
    """A streaming Ray Dataset of one split's windows."""
    import ray.data

    from raybio.data.storage import filesystem

    paths = [local_path(p) for p in split_paths(shards_uri, manifest, split)]
    fs = filesystem(shards_uri)[0] if shards_uri.startswith("s3://") else None
    if fs is not None:
        paths = [p.removeprefix("s3://") for p in paths]
    # Training workers may hold every CPU of a small machine, so reads must fit in a CPU
    # share. The DataSourceV2 parquet path adds a file-listing task that always asks for a
    # whole CPU (and then waits forever for one); the V1 path honours `num_cpus` everywhere.
    ctx = ray.data.DataContext.get_current()
    saved, ctx.use_datasource_v2 = ctx.use_datasource_v2, False
    try:
        return ray.data.read_parquet(paths, filesystem=fs, columns=["tokens"], ray_remote_args={"num_cpus": 0.25})
    finally:
        ctx.use_datasource_v2 = saved


class TokensCollate(NumpyBatchCollateFn):
    """Collate a Ray Data batch into a (B, L) int64 token tensor."""

    def __call__(self, batch: dict[str, np.ndarray]) -> torch.Tensor:
        tokens = batch["tokens"]
        if tokens.dtype == object:  # list column read without a fixed size
            tokens = np.stack(tokens)
        return torch.from_numpy(tokens.astype(np.int64))


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
