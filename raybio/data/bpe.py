"""Byte-pair-encoding tokenizer trained on the corpus with HF `tokenizers` (Omni-DNA uses 4,096).

BPE merges never cross an unknown-residue token (`N` for DNA, `X` for protein), which is
always a token of its own, and never cross a chunk boundary every `CHUNK` residues (long
genomes become many training "words"). Special tokens come first, with the same ids as
in every other raybio tokenizer. One BPE vocabulary covers one modality; use the
`multiomic` tokenizer to mix DNA and protein.
"""

from __future__ import annotations

import json

import numpy as np
import tokenizers as hf_tokenizers
from tokenizers import Regex, models, pre_tokenizers, trainers

from raybio.data.alphabet import RESIDUES, UNKNOWN
from raybio.data.tokenizers import EOS_ID, MASK_ID, PAD_ID, SPECIAL_TOKENS, Tokenizer, token_dtype

CHUNK = 1000


def _pre_tokenizer(modality: str) -> pre_tokenizers.PreTokenizer:
    unknown = UNKNOWN[modality]
    return pre_tokenizers.Split(Regex(f"{unknown}|[^{unknown}]{{1,{CHUNK}}}"), behavior="isolated")


class BPETokenizer(Tokenizer):
    """A trained HF BPE model with raybio's special-token layout."""

    kind = "bpe"

    def __init__(self, hf: hf_tokenizers.Tokenizer, modality: str, residues_per_token: float):
        self.hf = hf
        self.modalities = (modality,)
        self._residues_per_token = residues_per_token
        size = hf.get_vocab_size()
        self.vocab = [hf.id_to_token(i) for i in range(size)]
        if tuple(self.vocab[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError("BPE vocabulary does not start with raybio's special tokens")
        self.mask_id, self.pad_id, self.eos_id = MASK_ID, PAD_ID, EOS_ID
        self._dtype = token_dtype(size)

    @classmethod
    def train(cls, texts: list[str], modality: str, vocab_size: int = 4096) -> BPETokenizer:
        """Train on `texts` (validated sequences of one modality); deterministic for equal input."""
        letters, unknown = RESIDUES[modality], UNKNOWN[modality]
        hf = hf_tokenizers.Tokenizer(models.BPE(unk_token="<unk>"))
        hf.pre_tokenizer = _pre_tokenizer(modality)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=[*letters, unknown],
            limit_alphabet=len(letters) + 1,
            show_progress=False,
        )
        hf.train_from_iterator(texts, trainer=trainer)
        sample = texts[:64]
        n_tokens = sum(len(e.ids) for e in hf.encode_batch(sample, add_special_tokens=False))
        return cls(hf, modality, round(sum(map(len, sample)) / max(1, n_tokens), 4))

    @classmethod
    def from_dict(cls, obj: dict) -> BPETokenizer:
        spec = obj["spec"]
        hf = hf_tokenizers.Tokenizer.from_str(json.dumps(obj["hf"]))
        return cls(hf, spec["modality"], spec["residues_per_token"])

    def _params(self) -> dict:
        return {"modality": self.modalities[0], "residues_per_token": self._residues_per_token}

    def to_json(self) -> str:
        return json.dumps({"spec": self.spec, "hf": json.loads(self.hf.to_str())}, sort_keys=True)

    def encode(self, seq: str | bytes, modality: str | None = None) -> np.ndarray:
        self.check_modality(modality or self.modalities[0])
        text = seq.decode("ascii") if isinstance(seq, bytes) else seq
        return np.asarray(self.hf.encode(text, add_special_tokens=False).ids, dtype=self._dtype)

    def encode_batch(self, seqs: list[str]) -> list[np.ndarray]:
        """Encode many sequences at once (HF runs them in parallel threads)."""
        out = self.hf.encode_batch(seqs, add_special_tokens=False)
        return [np.asarray(e.ids, dtype=self._dtype) for e in out]

    @property
    def unknown_ids(self) -> list[int]:
        return [self.hf.token_to_id(UNKNOWN[self.modalities[0]])]
