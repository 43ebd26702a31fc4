"""Loader: MLM masking statistics, NTP shift, modality mixing, equal and deterministic worker streams."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
import torch

from raybio.data.loader import (
    IGNORE,
    IN_MEMORY_MAX_BYTES,
    LocalData,
    ModalityMixer,
    TokensCollate,
    iter_batches,
    mlm_mask,
    ntp_targets,
    read_split,
    read_whole,
    reads_whole,
    split_bytes,
)
from raybio.data.manifest import Count


def test_mlm_mask_picks_15_percent_of_content_tokens_80_10_10():
    n_special, vocab, mask_id = 9, 99, 4
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(n_special, vocab, (256, 512), generator=gen)
    tokens[:, 0] = 7  # a modality token at the start of every window
    tokens[:, -8:] = 0  # padding
    inputs, labels = mlm_mask(tokens, torch.Generator().manual_seed(1), mask_id, n_special, vocab)
    picked = labels != IGNORE
    content = tokens >= n_special
    assert not picked[~content].any()  # specials, modality tokens and padding are never picked
    assert picked.sum() / content.sum() == pytest.approx(0.15, abs=0.005)
    assert torch.equal(labels[picked], tokens[picked])
    masked = (inputs == mask_id) & picked
    same = (inputs == tokens) & picked
    rand = picked & ~masked & ~same
    n = picked.sum().item()
    assert masked.sum() / n == pytest.approx(0.8, abs=0.01)
    assert same.sum() / n == pytest.approx(0.1 + 0.1 / (vocab - n_special), abs=0.01)
    assert rand.sum() / n == pytest.approx(0.1, abs=0.01)
    assert (inputs[rand] >= n_special).all() and torch.equal(inputs[~picked], tokens[~picked])
    again, _ = mlm_mask(tokens, torch.Generator().manual_seed(1), mask_id, n_special, vocab)
    assert torch.equal(again, inputs)  # dynamic masking is reproducible from the generator seed
    only, _ = mlm_mask(tokens, torch.Generator().manual_seed(1), mask_id, n_special, vocab, mask_only=True)
    assert (only[picked] == mask_id).all()


def test_ntp_targets_shift_by_one():
    tokens = torch.arange(12).reshape(2, 6)
    inputs, labels = ntp_targets(tokens)
    assert torch.equal(inputs, tokens[:, :-1]) and torch.equal(labels, tokens[:, 1:])


def synthetic_batch(n_dna: int, n_protein: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "tokens": rng.integers(9, 99, size=(n_dna + n_protein, 32), dtype=np.uint16),
        "modality": np.array(["dna"] * n_dna + ["protein"] * n_protein, dtype=object),
    }


def as_table(batch: dict[str, np.ndarray]) -> pa.Table:
    tokens = batch["tokens"]
    flat = pa.array(tokens.reshape(-1), type=pa.uint16())
    return pa.table({"tokens": pa.FixedSizeListArray.from_arrays(flat, tokens.shape[1]), "modality": batch["modality"]})


def test_modality_mixer_reaches_the_weights_deterministically():
    table = as_table(synthetic_batch(9000, 1000))
    counts = {"dna": Count(rows=9000, tokens=9000 * 8), "protein": Count(rows=1000, tokens=1000 * 8)}
    mixer = ModalityMixer({"dna": 0.7, "protein": 0.3}, counts, seed=0)
    out = mixer(table)
    share = Counter(out.column("modality").to_pylist())
    assert sum(share.values()) == pytest.approx(10000, rel=0.03)
    assert share["protein"] / sum(share.values()) == pytest.approx(0.3, abs=0.02)
    assert mixer(table).equals(out)
    # Rows are whole copies of input rows (resampled, not altered).
    assert set(map(tuple, out.column("tokens").to_pylist())) <= set(map(tuple, table.column("tokens").to_pylist()))
    other = ModalityMixer({"dna": 0.7, "protein": 0.3}, counts, seed=1)(table)
    assert not other.slice(0, 2000).equals(out.slice(0, 2000))
    with pytest.raises(ValueError, match=r"data.mix weights modalities \['protein'\] that the corpus does not have"):
        ModalityMixer({"protein": 1.0}, {"dna": Count(rows=10, tokens=80)}, seed=0)


def test_collate_keeps_the_modality_tag():
    batch = synthetic_batch(2, 3)
    out = TokensCollate()(batch)
    assert out["tokens"].dtype == torch.int64 and out["tokens"].shape == (5, 32)
    assert out["modality"].tolist() == [0, 0, 1, 1, 1]


def test_read_split_mixes_modalities_and_keeps_tags(multiomic_corpus):
    c = multiomic_corpus
    train_rows = c.manifest.splits["train"].modalities
    assert train_rows["protein"].rows > 4 * train_rows["dna"].rows  # the raw corpus is mostly protein
    ds = read_split(c.uri, c.manifest, "train", mix={"dna": 0.7, "protein": 0.3}, seed=0)
    assert ds.columns() == ["tokens", "modality"]
    mods = Counter()
    mod_ids = c.manifest.tokenizer.modality_token_ids
    for batch in ds.iter_torch_batches(batch_size=128, collate_fn=TokensCollate()):
        first = batch["tokens"][:, 0]
        for name, idx in (("dna", 0), ("protein", 1)):
            sel = batch["modality"] == idx
            assert (first[sel] == mod_ids[name]).all()  # the tag matches the window's own modality token
            mods[name] += int(sel.sum())
    assert mods["dna"] / sum(mods.values()) == pytest.approx(0.7, abs=0.05)


def _worker_streams(ds, n: int, seed: int) -> list[list[torch.Tensor]]:
    """Consume `n` equal streaming splits concurrently, as n Train workers would."""
    ds.context.execution_options.preserve_order = True
    shards = ds.streaming_split(n, equal=True)
    out: list[list[torch.Tensor]] = [[] for _ in range(n)]

    def consume(i):
        for b in iter_batches(shards[i], 16, shuffle_buffer=64, seed=seed):
            out[i].append(b["tokens"])

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return out


def test_worker_streams_are_equal_sized_and_deterministic_under_a_seed(multiomic_corpus):
    c = multiomic_corpus
    first = _worker_streams(read_split(c.uri, c.manifest, "train", seed=3), 2, seed=3)
    second = _worker_streams(read_split(c.uri, c.manifest, "train", seed=3), 2, seed=3)
    assert len(first[0]) == len(first[1]) > 10  # equal batch counts per worker
    assert sum(len(b) for b in first[0]) == sum(len(b) for b in first[1])
    for a, b in zip(first, second, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    reseeded = _worker_streams(read_split(c.uri, c.manifest, "train", seed=4), 2, seed=4)
    assert not torch.equal(torch.cat(reseeded[0]), torch.cat(first[0]))


def _stream(ds, batch_size: int) -> torch.Tensor:
    ds.context.execution_options.preserve_order = True
    return torch.cat([b["tokens"] for b in iter_batches(ds, batch_size)])


def test_a_split_read_whole_holds_the_rows_the_stream_yields_in_its_order(multiomic_corpus):
    c = multiomic_corpus
    mix = {"dna": 0.7, "protein": 0.3}
    for split, kwargs in (("train", {"mix": mix, "seed": 5}), ("train", {"seed": 6}), ("val", {})):
        streamed = _stream(read_split(c.uri, c.manifest, split, **kwargs), 16)
        whole = torch.cat([b["tokens"] for b in iter_batches(read_whole(c.uri, c.manifest, split, **kwargs), 16)])
        assert torch.equal(whole, streamed), (split, kwargs)
    val = read_whole(c.uri, c.manifest, "val")
    assert [t.num_rows for t in val.iter_batches(batch_size=7)][:1] == [7]  # tables, as the Validator reads them
    assert val.table.column_names == ["tokens", "modality", "source"]


def test_workers_reading_whole_get_equal_disjoint_shares_reshuffled_each_epoch(multiomic_corpus):
    c = multiomic_corpus
    data = LocalData(c.uri, c.manifest, seed=3)
    (a, val_a), (b, val_b) = data.shards(0, 2), data.shards(1, 2)
    n = c.manifest.splits["train"].rows
    assert len(a) == len(b) == n // 2 and len(val_a) == len(val_b) == c.manifest.splits["val"].rows
    # Together the shares are the split's rows (less an odd last one), each row in one share only.
    whole = read_whole(c.uri, c.manifest, "train", seed=3).tokens_NL[: n // 2 * 2]
    assert sorted(map(tuple, np.concatenate([a.tokens_NL, b.tokens_NL]).tolist())) == sorted(map(tuple, whole.tolist()))

    def epoch(seed: int) -> torch.Tensor:
        return torch.cat([x["tokens"] for x in iter_batches(a, 16, shuffle_buffer=1, seed=seed, drop_last=True)])

    assert len(epoch(0)) == len(a) // 16 * 16  # full batches only
    assert torch.equal(epoch(0), epoch(0)) and not torch.equal(epoch(0), epoch(1))
    unshuffled = torch.cat([x["tokens"] for x in iter_batches(a, 16)])
    assert torch.equal(unshuffled, torch.from_numpy(a.tokens_NL.astype(np.int64)))  # shuffle_buffer 0: read order


def test_a_corpus_is_read_whole_up_to_the_threshold_unless_the_config_says(multiomic_corpus):
    m = multiomic_corpus.manifest
    assert split_bytes(m, "train") == m.splits["train"].tokens * np.dtype(m.tokenizer.dtype).itemsize
    assert split_bytes(m, "train") <= IN_MEMORY_MAX_BYTES and reads_whole(m)
    assert reads_whole(m, "memory") and not reads_whole(m, "stream")
    big = m.model_copy(update={"splits": {**m.splits, "train": m.splits["train"].model_copy(
        update={"tokens": IN_MEMORY_MAX_BYTES // np.dtype(m.tokenizer.dtype).itemsize + 1})}})  # fmt: skip
    assert not reads_whole(big) and reads_whole(big, "memory")
