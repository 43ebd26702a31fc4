"""Residue alphabets of DNA and protein, and the one rule that tells them apart.

Every reader, validator, tokenizer and downstream task takes its letters from here, so a
sequence is DNA or protein the same way everywhere (`guess_modality`).
"""

from __future__ import annotations

MODALITIES = ("dna", "protein")
RESIDUES = {"dna": "ACGT", "protein": "ACDEFGHIKLMNPQRSTVWY"}
UNKNOWN = {"dna": "N", "protein": "X"}  # the one unknown-residue letter of each alphabet
ALPHABETS = {m: RESIDUES[m] + UNKNOWN[m] for m in MODALITIES}
# IUPAC ambiguity codes and the unknown letter `data.iupac_to_n` maps them to.
IUPAC = {"dna": ("RYSWKMBDHV", "N"), "protein": ("BZJUO", "X")}
DNA_BASES, PROTEIN_RESIDUES = RESIDUES["dna"], RESIDUES["protein"]

# Letters only amino acids use: neither a base nor a DNA IUPAC code.
PROTEIN_ONLY = frozenset("EFILPQ")
# DNA with ambiguity codes has a few letters outside ACGTN; protein has mostly such letters.
NON_DNA_FRACTION = 0.1


def _text(seq: str | bytes) -> str:
    return (seq.decode("ascii", errors="replace") if isinstance(seq, bytes) else seq).upper()


def looks_like_protein(seq: str | bytes) -> bool:
    """True if `seq` holds a letter only amino acids use (E F I L P Q)."""
    return bool(set(_text(seq)) & PROTEIN_ONLY)


def guess_modality(seq: str | bytes) -> str:
    """'protein' if a letter only amino acids use (E F I L P Q) appears, or if more than 10 % of the
    letters lie outside A C G T N (IUPAC codes are rare in DNA); else 'dna'."""
    text = _text(seq)
    if set(text) & PROTEIN_ONLY:
        return "protein"
    outside = len(text) - sum(text.count(c) for c in ALPHABETS["dna"])
    return "protein" if outside > NON_DNA_FRACTION * max(len(text), 1) else "dna"
