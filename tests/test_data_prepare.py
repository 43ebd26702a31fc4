"""`raybio prepare` as a Ray Data job: shards, manifest, checksums, splits, determinism, idempotence."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raybio.cli import main as cli_main
from raybio.config import DataConfig
from raybio.data import storage
from raybio.data.manifest import load_manifest
from raybio.data.prepare import load_tokenizer, prepare
from raybio.data.tokenizers import EOS_ID, KmerTokenizer, reverse_complement
from raybio.data.validate import InputError


def read_windows(uri: str, manifest: dict, split: str):
    return pa.concat_tables([pq.read_table(p) for p in manifest.split_uris(uri, split)]).to_pandas()


def segments(tok, window: np.ndarray) -> list[str]:
    """Decoded pieces of a packed window between <eos> separators (modality token dropped)."""
    out, cur = [], []
    for t in window.tolist():
        if t == EOS_ID:
            out.append(tok.decode(cur))
            cur = []
        else:
            cur.append(t)
    return [*out, tok.decode(cur)]


def test_manifest_lists_checksummed_shards_tokenizer_and_provenance(multiomic_corpus):
    c = multiomic_corpus
    m = c.manifest
    assert m.complete and m.seq_len == 64
    for split in ("train", "val"):
        s = m.splits[split]
        assert s.rows == sum(sh.rows for sh in s.shards) > 0
        assert s.tokens == 64 * s.rows == sum(v.tokens for v in s.modalities.values())
        assert set(s.modalities) == {"dna", "protein"}  # even the single genome has val windows
        for sh in s.shards:
            data = Path(c.uri, sh.path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == sh.sha256
            table = pq.read_table(Path(c.uri, sh.path))
            assert table.num_rows == sh.rows <= c.cfg.rows_per_shard
            assert table.schema.field("tokens").type == pa.list_(pa.uint16(), 64)
    tok_spec = m.tokenizer
    assert tok_spec.kind == "multiomic" and tok_spec.dtype == "uint16" and tok_spec.n_special == 9
    saved = Path(c.uri, tok_spec.file).read_bytes()
    assert hashlib.sha256(saved).hexdigest() == tok_spec.sha256
    spec = tok_spec.model_dump(exclude={"file", "sha256"}, exclude_none=True)
    assert load_tokenizer(c.uri, m).spec == spec
    genome, proteins = m.sources
    assert (genome.records, genome.residues, genome.modality) == (1, len(c.genome), ["dna"])
    assert (proteins.records, proteins.modality) == (len(c.proteins), ["protein"])
    faa = proteins.files[0]
    assert faa.sha256 == hashlib.sha256(Path(faa.uri).read_bytes()).hexdigest()
    assert m.rejected == {"empty": 0, "invalid_character": 0, "too_short": 0, "duplicate_id": 0}


def test_windows_carry_modality_token_and_decode_back_to_the_sources(multiomic_corpus):
    c = multiomic_corpus
    tok = load_tokenizer(c.uri, c.manifest)
    mod_ids = c.manifest.tokenizer.modality_token_ids
    whole_proteins = set(c.proteins.values())
    for split in ("train", "val"):
        df = read_windows(c.uri, c.manifest, split)
        for tokens, modality, rid in zip(df["tokens"], df["modality"], df["record_id"], strict=True):
            assert tokens[0] == mod_ids[modality]
            parts = segments(tok, tokens[1:])
            if modality == "dna":
                assert rid == "NC_001416.1" and all(p in c.genome for p in parts)
            else:
                assert rid in c.proteins and all(p in c.proteins[rid] or p in whole_proteins for p in parts[:1])
                # A piece between two separators is one whole protein.
                assert all(p in whole_proteins for p in parts[1:-1])


def test_split_is_by_record_hash_for_proteins_and_by_block_for_the_genome(multiomic_corpus):
    c = multiomic_corpus
    train, val = (read_windows(c.uri, c.manifest, s) for s in ("train", "val"))
    prot_train = set(train[train.modality == "protein"].record_id)
    prot_val = set(val[val.modality == "protein"].record_id)
    assert prot_train and prot_val and prot_train.isdisjoint(prot_val)
    assert 0.01 < len(prot_val) / len(c.proteins) < 0.12  # val_fraction 0.05 of records
    dna_val = (val.modality == "dna").sum() / ((train.modality == "dna").sum() + (val.modality == "dna").sum())
    assert 0.02 < dna_val < 0.15


def test_rerun_is_idempotent_and_prepare_is_deterministic(multiomic_corpus, tmp_path):
    c = multiomic_corpus
    before = storage.list_files(c.uri)
    t0 = time.perf_counter()
    assert prepare(c.cfg, c.uri, progress=False) == c.manifest
    assert time.perf_counter() - t0 < 5 and storage.list_files(c.uri) == before
    # An interrupted earlier run left shards but no manifest: they are discarded and the run redone,
    # and the redone run writes exactly the same bytes as the first.
    other = tmp_path / "again"
    (other / "data-deadbeef" / "split=train").mkdir(parents=True)
    (other / "data-deadbeef" / "split=train" / "stale.parquet").write_bytes(b"half a file")
    again = prepare(c.cfg, str(other), progress=False)
    assert not (other / "data-deadbeef").exists()
    for split in ("train", "val"):
        assert [s.sha256 for s in again.splits[split].shards] == [s.sha256 for s in c.manifest.splits[split].shards]
    changed = c.cfg.model_copy(update={"seq_len": 32})
    with pytest.raises(InputError, match=r"holds corpus \w+, prepared from a different data config"):
        prepare(changed, c.uri, progress=False)


def test_reverse_complement_augments_dna_train_blocks_only(lambda_corpus, tmp_path):
    _, plain, exp = lambda_corpus
    cfg = exp.data.model_copy(update={"reverse_complement": True})
    aug = prepare(cfg, str(tmp_path / "rc"), progress=False)
    assert aug.splits["val"].rows == plain.splits["val"].rows
    assert aug.splits["train"].rows == pytest.approx(2 * plain.splits["train"].rows, abs=2)
    genome = Path(aug.sources[0].files[0].uri).read_text().split("\n", 1)[1].replace("\n", "")
    rc, tok = reverse_complement(genome), KmerTokenizer(3)
    parts = [p for w in read_windows(str(tmp_path / "rc"), aug, "train")["tokens"] for p in segments(tok, w)]
    assert any(len(p) > 100 and p in rc and p not in genome for p in parts)


def test_cli_unpacked_csv_keeps_one_labelled_record_per_window(tmp_path, capsys, ray_local):
    rng = np.random.default_rng(0)
    lengths = [10, 50, 100, 3, 70] * 8
    rows = ["".join(rng.choice(list("ACGT"), size=n)) for n in lengths]
    csv = tmp_path / "labelled.csv"
    csv.write_text("sequence,label\n" + "".join(f"{s},{i % 2}\n" for i, s in enumerate(rows)))
    out = tmp_path / "csv"
    argv = ["--data", str(csv), "--tokenizer", "nucleotide", "--seq-len", "32", "--min-length", "5", "--out", str(out)]
    cli_main(["prepare", *argv, "--set", "data.pack=false", "data.val_fraction=0.3"])
    printed = capsys.readouterr().out
    manifest = load_manifest(str(out))
    assert "too_short                 8" in printed and f"corpus {manifest.corpus_id}" in printed
    assert manifest.rejected["too_short"] == 8 and manifest.tokenizer.kind == "nucleotide"
    df = pa.concat_tables(
        [pq.read_table(p) for split in ("train", "val") for p in manifest.split_uris(str(out), split)]
    ).to_pandas()
    expected = sum(-(-(n + 1) // 32) for n in lengths if n >= 5)  # record + <eos>, padded to whole windows
    assert len(df) == expected
    tok = KmerTokenizer(1)
    for tokens, label, rid in zip(df["tokens"], df["label"], df["record_id"], strict=True):
        i = int(rid.removeprefix("row")) - 1
        assert label == str(i % 2)
        if EOS_ID in tokens:  # the record's last window: <eos>, then padding
            end = list(tokens).index(EOS_ID)
            assert tok.decode(tokens[:end]) and not tokens[end + 1 :].any()
            tokens = tokens[:end]
        assert tok.decode(tokens) in rows[i]


def test_bpe_corpus_trains_on_train_split_and_saves_tokenizer(tmp_path, ray_local):
    cfg = DataConfig(sources=["bundled:lambda"], tokenizer={"kind": "bpe", "vocab_size": 512}, seq_len=64)
    uri = str(tmp_path / "bpe")
    m = prepare(cfg, uri, progress=False)
    assert m.tokenizer.kind == "bpe" and m.tokenizer.vocab_size == 512
    tok = load_tokenizer(uri, m)
    genome = Path(m.sources[0].files[0].uri).read_text().split("\n", 1)[1].replace("\n", "")
    for w in read_windows(uri, m, "val")["tokens"]:
        assert all(p in genome for p in segments(tok, w))
    from conftest import write_proteins

    write_proteins(tmp_path / "p.faa.gz", 20)
    with pytest.raises(InputError, match=r"a BPE vocabulary covers one modality"):
        prepare(cfg.model_copy(update={"sources": ["bundled:lambda", str(tmp_path / "p.faa.gz")]}), uri + "2")
