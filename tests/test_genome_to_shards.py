"""From a genome to shards: k-mer tokens, FASTA reading, and preparation into parquet + manifest."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from raybio.data.fasta import read_fasta
from raybio.data.prepare import prepare
from raybio.data.sources import resolve_source
from raybio.data.tokenizers import KmerTokenizer
from raybio.data.validate import InputError


def tokens(tok: KmerTokenizer, seq: str) -> list[str]:
    return [tok.vocab[i] for i in tok.encode(seq)]


def test_kmer_tokenizer_splits_on_n_and_emits_remainder_as_single_bases():
    tok = KmerTokenizer(3)
    assert tokens(tok, "ACGTACGTA") == ["ACG", "TAC", "GTA"]
    assert tokens(tok, "ACGTNNACGTAC") == ["ACG", "T", "N", "N", "ACG", "TAC"]
    assert tokens(tok, "ACNGTACGTTTN") == ["A", "C", "N", "GTA", "CGT", "T", "T", "N"]
    assert tokens(tok, "NNN") == ["N", "N", "N"]
    assert tokens(tok, "") == []


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_kmer_tokenizer_round_trips_random_dna_with_gaps(k):
    rng = np.random.default_rng(k)
    seq = "".join(rng.choice(list("ACGTN"), p=[0.24, 0.24, 0.24, 0.24, 0.04], size=5000))
    tok = KmerTokenizer(k)
    ids = tok.encode(seq)
    assert ids.dtype == np.uint16 and ids.max() < tok.vocab_size
    assert tok.decode(ids) == seq


def test_kmer_tokenizer_rejects_non_dna_with_position():
    with pytest.raises(ValueError, match=r"invalid DNA character 'E' at position 2"):
        KmerTokenizer(3).encode("ACEGT")


def test_fasta_bad_character_names_file_line_and_column(tmp_path):
    path = tmp_path / "bad.fa"
    path.write_text(">r1 ok\nACGT\nACGT\n>r2\nACGU\n")
    with pytest.raises(InputError, match=r"bad\.fa:5:4: invalid character 'U' in record 'r2'"):
        list(read_fasta(path))


def test_fasta_that_is_not_fasta_is_rejected(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("id,seq\n1,ACGT\n")
    with pytest.raises(InputError, match=r"table\.csv:1: not a FASTA file"):
        list(read_fasta(path))


def test_fasta_reads_gzip_and_bundled_genome(tmp_path):
    path = tmp_path / "x.fa.gz"
    with gzip.open(path, "wt") as f:
        f.write(">a desc here\nacgt\nNNAC\n>b\nGG\n")
    recs = list(read_fasta(path))
    assert [(r.id, r.description, r.seq) for r in recs] == [("a", "desc here", "ACGTNNAC"), ("b", "", "GG")]
    (lam,) = read_fasta(resolve_source("bundled:lambda"))
    assert lam.id == "NC_001416.1" and len(lam.seq) == 48502


def test_prepare_writes_shards_and_manifest_and_skips_when_complete(lambda_corpus):
    uri, manifest, exp = lambda_corpus
    tok = KmerTokenizer(3)
    total = manifest.splits["train"].tokens + manifest.splits["val"].tokens
    expected = len(tok.encode(next(read_fasta(resolve_source("bundled:lambda"))).seq)) // 64 * 64
    assert total == expected
    assert manifest.splits["val"].rows > 0
    assert 3.5 < manifest.unigram_entropy_nats < np.log(64)
    again = prepare(exp.data, uri, progress=False)
    assert again == manifest
