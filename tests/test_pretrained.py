"""A checkpoint alone rebuilds model and tokenizer, for every tokenizer kind (a trained BPE too)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import write_inference_checkpoint

from raybio.config import load_config
from raybio.data.bpe import BPETokenizer
from raybio.data.fasta import read_fasta
from raybio.data.sources import resolve_source
from raybio.models.model import BioLM
from raybio.models.pretrained import CONFIG_FILE, TOKENIZER_FILE, load_pretrained

LAMBDA = next(read_fasta(resolve_source("bundled:lambda"))).seq


def tokenizer_of(kind: str):
    if kind == "bpe":
        return BPETokenizer.train([LAMBDA[i : i + 1000] for i in range(0, 20000, 1000)], "dna", vocab_size=300)
    return load_config("tiny", overrides=[f"data.tokenizer.kind={kind}"]).data.tokenizer.build()


@pytest.mark.parametrize("kind", ["kmer", "nucleotide", "protein", "multiomic", "bpe"])
def test_checkpoint_round_trip_gives_the_same_tokens_and_logits(tmp_path, kind):
    exp = load_config("tiny", overrides=["model.d_model=32", "model.n_heads=2", "model.n_layers=2",
                                         f"data.tokenizer.kind={kind}"])  # fmt: skip
    tok = tokenizer_of(kind)
    torch.manual_seed(0)
    model = BioLM(exp.model, tok.vocab_size).eval()
    ckpt = write_inference_checkpoint(tmp_path / kind, exp, model, tok)
    loaded = load_pretrained(ckpt)
    seq, modality = ("MKTAYIAKQRQISFVKSHFSRQ", "protein") if kind == "protein" else (LAMBDA[:600], "dna")
    ids = tok.encode(seq, modality)
    assert loaded.tokenizer.encode(seq, modality).tolist() == ids.tolist()
    assert loaded.tokenizer.to_json() == tok.to_json()
    x = torch.from_numpy(ids.astype("int64"))[None, :256]
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x).logits, model(x).logits)
    assert json.loads((ckpt / CONFIG_FILE).read_text())["tokenizer"]["kind"] == kind


def test_a_directory_that_is_not_a_checkpoint_says_what_is_missing(tmp_path):
    (tmp_path / CONFIG_FILE).write_text("{}")
    with pytest.raises(FileNotFoundError, match=rf"not a raybio checkpoint: {TOKENIZER_FILE}, model.pt missing"):
        load_pretrained(tmp_path)
