"""Build a tokenizer from its config, or rebuild any kind (a trained BPE too) from its saved JSON."""

from __future__ import annotations

import json

from raybio.data.bpe import BPETokenizer
from raybio.data.tokenizers import KmerTokenizer, MultiOmicTokenizer, NucleotideTokenizer, ProteinTokenizer, Tokenizer


def build_tokenizer(cfg) -> Tokenizer:
    """The tokenizer a `TokenizerConfig` names (BPE is trained on the corpus: see `raybio.data.bpe`)."""
    if cfg.kind == "kmer":
        return KmerTokenizer(cfg.k)
    if cfg.kind == "nucleotide":
        return NucleotideTokenizer()
    if cfg.kind == "protein":
        return ProteinTokenizer()
    if cfg.kind == "multiomic":
        return MultiOmicTokenizer(cfg.k)
    raise ValueError(f"tokenizer kind {cfg.kind!r} is trained on the corpus; build it with raybio.data.bpe.train_bpe")


def tokenizer_from_json(text: str):
    """Rebuild a tokenizer from the `tokenizer.json` saved beside the shards."""
    obj = json.loads(text)
    spec = obj["spec"]
    if spec["kind"] == "bpe":
        return BPETokenizer.from_dict(obj)
    kinds = {
        "kmer": lambda: KmerTokenizer(spec["k"]),
        "nucleotide": NucleotideTokenizer,
        "protein": ProteinTokenizer,
        "multiomic": lambda: MultiOmicTokenizer(spec["k"]),
    }
    tok = kinds[spec["kind"]]()
    if tok.vocab != obj["vocab"]:
        raise ValueError(f"saved {spec['kind']} tokenizer vocabulary differs from this raybio version's")
    return tok
