"""Tokenizers: k-mer against an HF `tokenizers` reference, nucleotide, protein, multi-omic, BPE."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from tokenizers import Regex, Tokenizer, models, pre_tokenizers

from raybio.config import TokenizerConfig
from raybio.data.bpe import BPETokenizer
from raybio.data.fasta import read_fasta
from raybio.data.sources import resolve_source
from raybio.data.tokenizer_io import tokenizer_from_json
from raybio.data.tokenizers import (
    MASK_ID,
    SPECIAL_TOKENS,
    KmerTokenizer,
    MultiOmicTokenizer,
    ProteinTokenizer,
    reverse_complement,
)


def hf_kmer_reference(tok: KmerTokenizer) -> Tokenizer:
    """The NT k-mer rule written independently: a regex split (k-mer, else one base, else N) + word lookup."""
    hf = Tokenizer(models.WordLevel(tok.token_to_id, unk_token="<unk>"))
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(f"[ACGT]{{{tok.k}}}|[ACGT]|N"), behavior="isolated")
    return hf


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("p_n", [0.0, 0.002, 0.3])
def test_kmer_matches_hf_regex_reference_and_round_trips(k, p_n):
    rng = np.random.default_rng(k)
    seq = "".join(rng.choice(list("ACGTN"), p=[(1 - p_n) / 4] * 4 + [p_n], size=4001))
    seq = "NN" + seq + "ACGTA"  # runs that start and end with N, and a remainder at the very end
    tok = KmerTokenizer(k)
    ids = tok.encode(seq)
    assert ids.dtype == np.uint16
    np.testing.assert_array_equal(ids, hf_kmer_reference(tok).encode(seq).ids)
    assert tok.decode(ids) == seq


def test_kmer_accepts_bytes_and_lower_case():
    tok = KmerTokenizer(3)
    np.testing.assert_array_equal(tok.encode(b"acgtnACG"), tok.encode("ACGTNACG"))


def test_nucleotide_tokenizer_is_one_token_per_base():
    tok = TokenizerConfig(kind="nucleotide").build()
    ids = tok.encode("ACGTN")
    assert [tok.vocab[i] for i in ids] == list("ACGTN")
    assert tok.spec["kind"] == "nucleotide" and tok.vocab_size == len(SPECIAL_TOKENS) + 5


def test_protein_tokenizer_residues_and_errors():
    tok = ProteinTokenizer()
    seq = "MKVLAAGIVGLLLAX"
    assert tok.decode(tok.encode(seq)) == seq
    np.testing.assert_array_equal(tok.encode(seq.lower()), tok.encode(seq))
    with pytest.raises(ValueError, match=r"invalid protein character 'J' at position 2"):
        tok.encode("MKJ")
    with pytest.raises(ValueError, match=r"tokenizer 'protein' encodes protein only, not dna"):
        tok.encode("ACGT", "dna")


def test_multiomic_vocabulary_keeps_modalities_apart():
    tok = MultiOmicTokenizer(3)
    dna, prot = tok.encode("ACGTAC", "dna"), tok.encode("ACGT", "protein")
    # The same letters get different ids per modality, and no content id is special.
    assert set(dna.tolist()).isdisjoint(prot.tolist())
    assert min(dna.min(), prot.min()) >= tok.n_special
    assert tok.decode(dna) == "ACGTAC" and tok.decode(prot) == "ACGT"
    spec = tok.spec
    assert spec["n_special"] == len(SPECIAL_TOKENS) + 2 and spec["mask_id"] == MASK_ID
    assert [tok.vocab[i] for i in spec["modality_token_ids"].values()] == ["<dna>", "<protein>"]
    assert all(i < spec["n_special"] for i in spec["modality_token_ids"].values())
    assert [tok.vocab[i] for i in tok.unknown_ids] == ["N", "X"]


def test_dna_tokenizer_names_protein_input():
    with pytest.raises(ValueError, match=r"invalid DNA character 'M' at position 0.* looks like protein"):
        KmerTokenizer(3).encode("MEEK")


def test_reverse_complement():
    assert reverse_complement("AACGTN") == "NACGTT"
    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACGTN"), size=500))
    assert reverse_complement(reverse_complement(seq)) == seq
    pairs = dict(zip("ACGTN", "TGCAN", strict=True))
    assert reverse_complement(seq) == "".join(pairs[c] for c in reversed(seq))


def test_saved_tokenizers_rebuild_identically():
    for tok in (KmerTokenizer(4), ProteinTokenizer(), MultiOmicTokenizer(2)):
        again = tokenizer_from_json(tok.to_json())
        assert again.spec == tok.spec and again.sha256() == tok.sha256()


@pytest.fixture(scope="module")
def lambda_seq() -> str:
    return next(read_fasta(resolve_source("bundled:lambda"))).seq


def test_bpe_trains_4096_vocab_with_raybio_specials_deterministically(lambda_seq):
    chunks = [lambda_seq[i : i + 5000] for i in range(0, len(lambda_seq), 5000)]
    tok = BPETokenizer.train(chunks, "dna", vocab_size=4096)
    assert tok.vocab_size == 4096 and tuple(tok.vocab[: len(SPECIAL_TOKENS)]) == SPECIAL_TOKENS
    assert tok.spec["residues_per_token"] > 3  # merges happened: several bases per token
    assert BPETokenizer.train(chunks, "dna", vocab_size=4096).to_json() == tok.to_json()
    seq = lambda_seq[:3000] + "NNN" + lambda_seq[3000:6000]
    ids = tok.encode(seq)
    assert tok.decode(ids) == seq and ids.min() >= tok.n_special
    # Each N is a token of its own: merges never cross an unknown base.
    assert [tok.vocab[i] for i in ids if "N" in tok.vocab[i]] == ["N", "N", "N"]
    again = tokenizer_from_json(tok.to_json())
    np.testing.assert_array_equal(again.encode(seq), ids)


def test_bpe_on_protein(tmp_path):
    recs = list(itertools.islice(read_fasta(resolve_source("bundled:ecoli_proteins"), "protein"), 200))
    tok = BPETokenizer.train([r.seq for r in recs], "protein", vocab_size=300)
    assert tok.decode(tok.encode(recs[0].seq)) == recs[0].seq
    assert [tok.vocab[i] for i in tok.unknown_ids] == ["X"]
