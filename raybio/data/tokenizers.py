"""Nucleotide Transformer–style non-overlapping k-mer tokenizer, vectorised with numpy.

A sequence is split at every `N`; each N-free run is cut into non-overlapping k-mers from
its start, and the remainder (fewer than k bases) is emitted as single nucleotides. Each
`N` is its own token. Decoding concatenates token strings, so decode(encode(s)) == s.
"""

from __future__ import annotations

import itertools

import numpy as np

SPECIAL_TOKENS = ("<pad>", "<unk>", "<cls>", "<sep>", "<mask>", "<bos>", "<eos>")
_BASES = "ACGT"


class KmerTokenizer:
    """Non-overlapping k-mer tokenizer over A/C/G/T with N and single-base fallbacks."""

    def __init__(self, k: int = 3):
        if not 1 <= k <= 6:
            raise ValueError(f"k-mer size k={k} not supported; choose 1..6")
        self.k = k
        kmers = ["".join(p) for p in itertools.product(_BASES, repeat=k)]
        singles = list(_BASES) if k > 1 else []
        self.vocab: list[str] = [*SPECIAL_TOKENS, *kmers, *singles, "N"]
        self.token_to_id = {t: i for i, t in enumerate(self.vocab)}
        self.pad_id, self.unk_id = 0, 1
        self.mask_id = self.token_to_id["<mask>"]
        self.n_special = len(SPECIAL_TOKENS)
        self._kmer0 = self.n_special
        self._single0 = self._kmer0 + 4**k if k > 1 else self._kmer0
        self.n_id = self.token_to_id["N"]
        # Byte -> base code (A0 C1 G2 T3 N4, 255 = invalid).
        lut = np.full(256, 255, dtype=np.uint8)
        for i, ch in enumerate("ACGTN"):
            lut[ord(ch)] = lut[ord(ch.lower())] = i
        self._lut = lut

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def spec(self) -> dict:
        return {"kind": "kmer", "k": self.k, "vocab_size": self.vocab_size}

    def encode(self, seq: str) -> np.ndarray:
        """Token ids (uint16) for a DNA string; raises ValueError naming the first bad character."""
        codes = self._lut[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]
        if codes.size and codes.max() == 255:
            pos = int(np.argmax(codes == 255))
            raise ValueError(f"invalid DNA character {seq[pos]!r} at position {pos}; allowed: ACGTN")
        n = codes.size
        if n == 0:
            return np.zeros(0, dtype=np.uint16)
        is_n = codes == 4
        idx = np.arange(n)
        # Start and end of the N-free (or N) run containing each position.
        change = np.ones(n, dtype=bool)
        change[1:] = is_n[1:] != is_n[:-1]
        run_start = np.maximum.accumulate(np.where(change, idx, 0))
        starts = np.flatnonzero(change)
        ends = np.append(starts[1:], n)
        run_end = np.repeat(ends, np.diff(np.append(starts, n)))
        offset = idx - run_start
        k = self.k
        full_end = run_start + (run_end - run_start) // k * k  # end of the last whole k-mer
        in_kmers = (~is_n) & (idx < full_end)
        kmer_start = in_kmers & (offset % k == 0)
        single = (~is_n) & ~in_kmers
        # k-mer value at every position (only read where kmer_start): base-4 number of codes[i:i+k].
        padded = np.concatenate([codes.astype(np.int64), np.zeros(k, dtype=np.int64)])
        value = np.zeros(n, dtype=np.int64)
        for j in range(k):
            value = value * 4 + np.minimum(padded[j : j + n], 3)
        ids = np.where(kmer_start, self._kmer0 + value, self._single0 + np.minimum(codes, 3).astype(np.int64))
        ids = np.where(is_n, self.n_id, ids)
        emit = kmer_start | single | is_n
        return ids[emit].astype(np.uint16)

    def decode(self, ids) -> str:
        """Concatenate token strings; special tokens are dropped."""
        return "".join(self.vocab[int(i)] for i in ids if int(i) >= self.n_special)

    def token_bases(self) -> np.ndarray:
        """Bases covered by each token id (0 for specials); for per-base metrics."""
        return np.array([0 if i < self.n_special else len(t) for i, t in enumerate(self.vocab)])
