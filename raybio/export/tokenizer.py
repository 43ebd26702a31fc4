"""raybio tokenizers as HF `tokenizers.Tokenizer` objects that give exactly raybio's ids.

k-mer / nucleotide: a `Split` pre-tokenizer whose regex `N|[ACGT]{k}|[ACGT]`, matched left to
right, cuts each N-free run into k-mers from its start, then the remainder into single bases,
with every N on its own; a `WordLevel` model maps each piece to its raybio id. Protein: one
piece per residue. Lower case is upper-cased first, as raybio accepts it. The multi-omic
vocabulary encodes by modality, so it becomes two tokenizers over one id space: DNA (the root
folder) and protein (subfolder `protein`); in each, the other modality's tokens keep their ids
under a `dna:`/`protein:` prefix that raw text never produces. BPE tokenizers are HF
tokenizers already and are copied. Characters raybio would reject become `<unk>`.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

from raybio.data.tokenizers import (
    DNA_BASES,
    PROTEIN_RESIDUES,
    SPECIAL_TOKENS,
    KmerTokenizer,
    MultiOmicTokenizer,
    ProteinTokenizer,
)

_DNA_PIECES = "N|[{bases}]{{{k}}}|[{bases}]"


def _word_level(vocab: list[str], letters: str, pattern: str, specials: list[str]) -> Tokenizer:
    hf = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token="<unk>"))
    hf.normalizer = normalizers.Sequence([normalizers.Replace(c.lower(), c) for c in letters])
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    hf.add_special_tokens(specials)
    return hf


def _dna_pattern(k: int) -> str:
    return _DNA_PIECES.format(bases=DNA_BASES, k=k)


def hf_tokenizers(tok) -> dict[str, Tokenizer]:
    """{subfolder ('' = root): HF tokenizer} reproducing `tok.encode` id for id."""
    specials = list(SPECIAL_TOKENS)
    if isinstance(tok, MultiOmicTokenizer):
        specials += tok.modality_tokens
        head = tok.vocab[: tok.n_special]
        dna, protein = tok.dna.dna_tokens, tok.protein.protein_tokens
        return {
            "": _word_level(
                [*head, *dna, *(f"protein:{t}" for t in protein)], DNA_BASES + "N", _dna_pattern(tok.k), specials
            ),
            "protein": _word_level(
                [*head, *(f"dna:{t}" for t in dna), *protein], PROTEIN_RESIDUES + "X", ".", specials
            ),
        }
    if isinstance(tok, KmerTokenizer):  # also NucleotideTokenizer (k = 1)
        return {"": _word_level(tok.vocab, DNA_BASES + "N", _dna_pattern(tok.k), specials)}
    if isinstance(tok, ProteinTokenizer):
        return {"": _word_level(tok.vocab, PROTEIN_RESIDUES + "X", ".", specials)}
    if tok.kind == "bpe":
        return {"": Tokenizer.from_str(tok.hf.to_str())}
    raise ValueError(f"no Hugging Face form for tokenizer kind {tok.kind!r}")
