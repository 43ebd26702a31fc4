"""Tokenizers for DNA and protein: k-mer, single nucleotide, protein residue, joint multi-omic.

Every tokenizer starts its vocabulary with `SPECIAL_TOKENS` (ids 0..6); the joint
multi-omic vocabulary adds one modality token per modality right after them. Each
tokenizer's `spec` (stored in the manifest) carries `n_special` (ids below it are never
masked or predicted as content) and `mask_id`, so training never has to guess the layout.

Encoding works on bytes with numpy lookup tables and strided views (no per-character
Python loop, no int64 temporaries): tens of millions of bases per second per core.
BPE (HF `tokenizers`) lives in `raybio.data.bpe`; `raybio.data.tokenizer_io` builds any kind
from its config or its saved JSON.
"""

from __future__ import annotations

import hashlib
import itertools
import json

import numpy as np

# MODALITIES: the `modality` column of the shards stores the index into it.
from raybio.data.alphabet import DNA_BASES, MODALITIES, PROTEIN_RESIDUES, UNKNOWN, looks_like_protein

SPECIAL_TOKENS = ("<pad>", "<unk>", "<cls>", "<sep>", "<mask>", "<bos>", "<eos>")
PAD_ID, UNK_ID, MASK_ID, EOS_ID = 0, 1, 4, 6
IGNORE = -100  # the label of a position the loss skips (PyTorch's default ignore_index)
_INVALID = 0xFFFF


def _ascii(seq: str | bytes) -> bytes:
    return seq if isinstance(seq, bytes) else seq.encode("ascii", errors="replace")


def _invalid(seq: bytes, ids: np.ndarray, what: str, allowed: str) -> ValueError:
    pos = int(np.argmax(ids == _INVALID))
    return ValueError(f"invalid {what} character {chr(seq[pos])!r} at position {pos}; allowed: {allowed}")


def _ragged(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For counts [2, 0, 3]: owners [0, 0, 2, 2, 2] and indices [0, 1, 0, 1, 2]."""
    owner = np.repeat(np.arange(counts.size), counts)
    index = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, index


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else uint32 (the shards store tokens in this type)."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


class Tokenizer:
    """The tokenizer interface every kind implements (BPE too): vocabulary list, spec, JSON form,
    decode, and `encode(seq, modality) -> ids`."""

    kind: str
    vocab: list[str]
    n_special: int = len(SPECIAL_TOKENS)
    mask_id, pad_id, eos_id = MASK_ID, PAD_ID, EOS_ID
    modalities: tuple[str, ...] = ("dna",)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def _params(self) -> dict:
        return {}

    @property
    def spec(self) -> dict:
        return {
            "kind": self.kind,
            **self._params(),
            "vocab_size": self.vocab_size,
            "n_special": self.n_special,
            "mask_id": self.mask_id,
            "pad_id": self.pad_id,
            "eos_id": self.eos_id,
            "modalities": list(self.modalities),
            "modality_token_ids": self.modality_token_ids,
            "dtype": token_dtype(self.vocab_size).name,
        }

    @property
    def modality_token_ids(self) -> dict[str, int]:
        return {}

    @property
    def unknown_ids(self) -> list[int]:
        """Ids of the unknown-residue tokens (N for DNA, X for protein)."""
        raise NotImplementedError

    def to_json(self) -> str:
        """Canonical JSON of the tokenizer (saved beside the shards; its sha256 identifies it)."""
        return json.dumps({"spec": self.spec, "vocab": self.vocab}, sort_keys=True)

    def sha256(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def decode(self, ids) -> str:
        """Concatenate token strings; special tokens are dropped."""
        return "".join(self.vocab[int(i)] for i in ids if int(i) >= self.n_special)

    def check_modality(self, modality: str) -> None:
        if modality not in self.modalities:
            raise ValueError(
                f"tokenizer {self.kind!r} encodes {'/'.join(self.modalities)} only, not {modality}; "
                f"use tokenizer kind 'protein' (protein only), 'multiomic' (DNA + protein) or 'bpe'"
            )


class KmerTokenizer(Tokenizer):
    """Nucleotide Transformer–style non-overlapping k-mers over A/C/G/T.

    A sequence is split at every `N`; each N-free run is cut into k-mers from its start and
    the remainder (fewer than k bases) is emitted as single nucleotides. Each `N` is its own
    token, so decode(encode(s)) == s. `first_id` places the DNA tokens after other tokens
    (the multi-omic vocabulary uses it).
    """

    kind = "kmer"

    def __init__(self, k: int = 3, first_id: int = len(SPECIAL_TOKENS)):
        if not 1 <= k <= 6:
            raise ValueError(f"k-mer size k={k} not supported; choose 1..6")
        self.k = k
        kmers = ["".join(p) for p in itertools.product(DNA_BASES, repeat=k)]
        singles = list(DNA_BASES) if k > 1 else []
        self.dna_tokens = [*kmers, *singles, "N"]
        self.vocab = [*SPECIAL_TOKENS, *self.dna_tokens]
        self.token_to_id = {t: i for i, t in enumerate(self.vocab)}
        self._kmer0 = first_id
        self._single0 = first_id + 4**k if k > 1 else first_id
        self.n_id = first_id + len(self.dna_tokens) - 1
        # Byte -> base code (A0 C1 G2 T3 N4; 255 = invalid); lower case is accepted.
        lut = np.full(256, 255, dtype=np.uint8)
        for i, ch in enumerate("ACGTN"):
            lut[ord(ch)] = lut[ord(ch.lower())] = i
        self._lut = lut

    def _params(self) -> dict:
        return {"k": self.k}

    @property
    def unknown_ids(self) -> list[int]:
        return [self.n_id]

    def encode(self, seq: str | bytes, modality: str = "dna") -> np.ndarray:
        """Token ids (uint16) for a DNA string; raises ValueError naming the first bad character."""
        self.check_modality(modality)
        raw = _ascii(seq)
        codes = self._lut[np.frombuffer(raw, dtype=np.uint8)]
        if codes.size and codes.max() == 255:
            pos = int(np.argmax(codes == 255))
            hint = " (this looks like protein: use a protein-capable tokenizer)" if looks_like_protein(raw) else ""
            raise ValueError(f"invalid DNA character {chr(raw[pos])!r} at position {pos}; allowed: ACGTN{hint}")
        is_n = codes == 4
        if not is_n.any():
            return self._encode_run(codes)
        return self._encode_segments(codes, is_n)

    def _encode_run(self, codes_R: np.ndarray) -> np.ndarray:
        """k-mers of an N-free run via a (m, k) strided view, then the remainder as singles."""
        k = self.k
        m = codes_R.size // k
        full_MK = codes_R[: m * k].reshape(m, k)
        ids = full_MK[:, 0].astype(np.uint16)
        for j in range(1, k):
            ids <<= 2
            ids |= full_MK[:, j]
        ids += self._kmer0
        rem = codes_R[m * k :]
        if rem.size == 0:
            return ids
        return np.concatenate([ids, rem.astype(np.uint16) + self._single0])

    def _encode_segments(self, codes: np.ndarray, is_n: np.ndarray) -> np.ndarray:
        """Sequences with N: every N-run and N-free run is a segment; all segments at once.

        A segment emits `m` k-mers then `r` single tokens (for an N-run: m = 0, r = its
        length). Output offsets are a cumulative sum, so k-mers and singles are scattered
        straight into place with ragged aranges; the work is O(tokens) in numpy.
        """
        k, n = self.k, codes.size
        change = np.flatnonzero(is_n[1:] != is_n[:-1]) + 1
        seg_start = np.concatenate([[0], change])
        seg_len = np.diff(np.concatenate([seg_start, [n]]))
        seg_n = is_n[seg_start]
        m = np.where(seg_n, 0, seg_len // k)
        r = seg_len - m * k
        off = np.cumsum(m + r) - (m + r)
        out = np.empty(int((m + r).sum()), dtype=np.uint16)

        seg, i = _ragged(m)  # k-mer i of segment seg starts at seg_start + k * i
        pos = seg_start[seg] + k * i
        value = codes[pos].astype(np.uint16)
        for j in range(1, k):
            value <<= 2
            value |= codes[pos + j]
        out[off[seg] + i] = value + self._kmer0

        seg, i = _ragged(r)  # single j of segment seg sits at seg_start + k * m + j
        src = seg_start[seg] + k * m[seg] + i
        out[off[seg] + m[seg] + i] = np.where(is_n[src], self.n_id, codes[src].astype(np.uint16) + self._single0)
        return out


class NucleotideTokenizer(KmerTokenizer):
    """One token per base (A, C, G, T, N): the k = 1 case under its own name."""

    kind = "nucleotide"

    def __init__(self, first_id: int = len(SPECIAL_TOKENS)):
        super().__init__(1, first_id)

    def _params(self) -> dict:
        return {}


class ProteinTokenizer(Tokenizer):
    """One token per residue: the 20 standard amino acids and X (unknown)."""

    kind = "protein"
    modalities = ("protein",)

    def __init__(self, first_id: int = len(SPECIAL_TOKENS)):
        self.protein_tokens = [*PROTEIN_RESIDUES, UNKNOWN["protein"]]
        self.vocab = [*SPECIAL_TOKENS, *self.protein_tokens]
        lut = np.full(256, _INVALID, dtype=np.uint16)
        for i, ch in enumerate(self.protein_tokens):
            lut[ord(ch)] = lut[ord(ch.lower())] = first_id + i
        self._lut = lut
        self.x_id = first_id + len(PROTEIN_RESIDUES)

    @property
    def unknown_ids(self) -> list[int]:
        return [self.x_id]

    def encode(self, seq: str | bytes, modality: str = "protein") -> np.ndarray:
        """Token ids (uint16) for a protein string; raises ValueError naming the first bad character."""
        self.check_modality(modality)
        raw = _ascii(seq)
        ids = self._lut[np.frombuffer(raw, dtype=np.uint8)]
        if ids.size and ids.max() == _INVALID:
            raise _invalid(raw, ids, "protein", "".join(self.protein_tokens))
        return ids


class MultiOmicTokenizer(Tokenizer):
    """Joint DNA + protein vocabulary: specials, modality tokens, DNA k-mers, protein residues.

    DNA and protein tokens get disjoint ids even where letters coincide (A, C, G, T), and
    each window the shards hold starts with its modality token (`<dna>` or `<protein>`).
    """

    kind = "multiomic"
    modalities = MODALITIES

    def __init__(self, k: int = 3):
        self.k = k
        self.modality_tokens = [f"<{m}>" for m in MODALITIES]
        self.n_special = len(SPECIAL_TOKENS) + len(MODALITIES)
        self.dna = KmerTokenizer(k, first_id=self.n_special)
        self.protein = ProteinTokenizer(first_id=self.n_special + len(self.dna.dna_tokens))
        self.vocab = [*SPECIAL_TOKENS, *self.modality_tokens, *self.dna.dna_tokens, *self.protein.protein_tokens]

    def _params(self) -> dict:
        return {"k": self.k}

    @property
    def modality_token_ids(self) -> dict[str, int]:
        return {m: len(SPECIAL_TOKENS) + i for i, m in enumerate(MODALITIES)}

    @property
    def unknown_ids(self) -> list[int]:
        return [self.dna.n_id, self.protein.x_id]

    def encode(self, seq: str | bytes, modality: str = "dna") -> np.ndarray:
        self.check_modality(modality)
        return (self.dna if modality == "dna" else self.protein).encode(seq, modality)


_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


def reverse_complement(seq: str) -> str:
    """Reverse complement of a DNA string over A/C/G/T/N."""
    return seq.translate(_COMPLEMENT)[::-1]
