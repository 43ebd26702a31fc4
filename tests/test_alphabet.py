"""One alphabet module: every reader, tokenizer and task tells DNA from protein by the same rule."""

from __future__ import annotations

import gzip

import pytest

from raybio.data.alphabet import ALPHABETS, guess_modality
from raybio.data.sources import sniff_modality, source_config
from raybio.data.tokenizers import KmerTokenizer, MultiOmicTokenizer, ProteinTokenizer
from raybio.data.validate import InputError
from raybio.evaluate.tasks import load_task

CASES = {
    "ACGTNACGTTGCA": "dna",
    "ACGTRYACGTACGTACGTACGT": "dna",  # two IUPAC codes in 22 letters: DNA with ambiguity codes
    "MKVLAAGIVG": "protein",  # L, I: letters only amino acids use
    "MKVWYHMKVWYH": "protein",  # only letters that are also IUPAC codes, but all of them outside ACGTN
    "acgtacgt": "dna",
}


@pytest.mark.parametrize("seq", list(CASES))
def test_guess_modality_follows_the_documented_rule(seq):
    assert guess_modality(seq) == CASES[seq] == guess_modality(seq.encode())


@pytest.mark.parametrize("seq", list(CASES))
def test_corpus_sniffer_and_task_loader_agree_with_guess_modality(tmp_path, seq):
    fasta = tmp_path / "one.fa"
    fasta.write_text(f">a\n{seq.upper()}\n")
    assert sniff_modality(str(fasta), "fasta", source_config(str(fasta))) == CASES[seq]
    rows = "".join(f">r{i} label={i % 2}\n{seq.upper()}\n" for i in range(10))
    path = tmp_path / "task.fa.gz"
    path.write_bytes(gzip.compress(rows.encode()))
    if "R" in seq:  # read as DNA, so the ambiguity code is reported rather than the file re-typed as protein
        with pytest.raises(InputError, match=r"invalid character 'R'.*IUPAC ambiguity code"):
            load_task(str(path))
    else:
        assert load_task(str(path)).modality == CASES[seq]


def test_tokenizers_take_their_letters_from_the_alphabet():
    assert "".join(ProteinTokenizer().protein_tokens) == ALPHABETS["protein"]
    assert KmerTokenizer(1).dna_tokens == list(ALPHABETS["dna"])
    multi = MultiOmicTokenizer(1)
    assert set(multi.vocab) >= set(ALPHABETS["protein"]) and multi.modalities == ("dna", "protein")
