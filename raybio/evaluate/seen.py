"""What a checkpoint saw in pretraining, and which downstream test rows it saw.

A checkpoint's `config.json` names its data config; the corpus manifest (`manifest.json`,
written by `raybio prepare`) lists every source file with its sha256. Two checks per
(checkpoint, task):

- **same file**: a file the task's sequences come from has the checksum of a pretraining source
  file. The task is refused for that checkpoint (unless `--allow-seen`).
- **same sequence**: a test row with at least half of its k-mers (31-mers for DNA, both strands;
  10-mers for protein) in the pretraining sources is "seen"; it is scored apart from the rest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from raybio.data import storage
from raybio.data.alphabet import ALPHABETS, guess_modality
from raybio.data.config import DataConfig
from raybio.data.fasta import read_fasta
from raybio.data.manifest import read_manifest
from raybio.data.prepare import default_shards_uri
from raybio.data.sources import expand, source_config
from raybio.data.tokenizers import reverse_complement
from raybio.models.pretrained import CONFIG_FILE

K = {"dna": 31, "protein": 10}  # len(alphabet)**k stays below 2**63
SEEN_FRACTION = 0.5


@dataclass(frozen=True)
class CorpusFile:
    uri: str
    sha256: str
    modality: str


@dataclass
class Corpus:
    """A checkpoint's pretraining source files and where that list came from."""

    files: list[CorpusFile]
    origin: str  # "manifest <uri>" or "config (no manifest found; checksums computed)"

    @property
    def sha256(self) -> frozenset[str]:
        return frozenset(f.sha256 for f in self.files)


def checkpoint_corpus(checkpoint: str) -> Corpus:
    """The pretraining sources of a checkpoint: from its corpus manifest, else from its config's source list."""
    # Only the data section: a checkpoint stays readable when other sections of the schema move on.
    meta = json.loads(storage.read_bytes(storage.join(checkpoint, CONFIG_FILE)))
    data = DataConfig.model_validate(meta["experiment"]["data"])
    # `raybio train` puts runs and the corpus under one storage root: <storage>/<run>/<checkpoint>. The
    # corpus id hashes the manifest version too, so a corpus prepared by an older raybio is found by its
    # recorded data config instead.
    corpus_root = Path(checkpoint).parent.parent / "corpus"
    candidates = [data.shards_dir, default_shards_uri(str(corpus_root.parent), data)]
    candidates += sorted(str(p) for p in corpus_root.glob("*")) if corpus_root.is_dir() else []
    wanted = data.model_dump(mode="json")
    for uri in dict.fromkeys(candidates):
        manifest = read_manifest(uri) if uri and not storage.is_remote(uri) and Path(uri).is_dir() else None
        same = manifest is not None and all(manifest.config.get(k) == wanted[k] for k in ("sources", "tokenizer"))
        if same:
            files = [CorpusFile(f.uri, f.sha256, f.modality) for s in manifest.sources for f in s.files]
            return Corpus(files, f"manifest {uri}")
    from raybio.evaluate.bundled import file_sha256

    files = []
    for src in data.sources:
        for uri in expand(source_config(src)):
            files.append(CorpusFile(uri, file_sha256(uri), "auto"))
    return Corpus(files, "config (no manifest found; checksums computed from the source files)")


def _codes(seq: str, modality: str) -> np.ndarray:
    lut = np.full(256, 255, dtype=np.uint8)
    for i, ch in enumerate(ALPHABETS[modality][:-1]):  # the unknown letter breaks k-mers
        lut[ord(ch)] = i
    return lut[np.frombuffer(seq.encode(), dtype=np.uint8)]


def kmer_codes(seq: str, modality: str) -> np.ndarray:
    """Integer codes of every k-mer of `seq` without an unknown residue (k = K[modality])."""
    k, base = K[modality], len(ALPHABETS[modality]) - 1
    codes = _codes(seq, modality)
    if len(codes) < k:
        return np.zeros(0, dtype=np.uint64)
    bad = np.convolve(codes == 255, np.ones(k, dtype=int), "valid") > 0
    c = codes.astype(np.uint64)
    value = np.zeros(len(codes) - k + 1, dtype=np.uint64)
    for j in range(k):
        value = value * np.uint64(base) + c[j : j + len(value)]
    return value[~bad]


@dataclass
class KmerIndex:
    """Sorted unique k-mer codes of a corpus, per modality (DNA on both strands)."""

    codes: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def build(cls, corpus: Corpus) -> KmerIndex:
        parts: dict[str, list[np.ndarray]] = {"dna": [], "protein": []}
        for f in corpus.files:
            if not Path(f.uri).is_file():
                continue  # a remote or moved source: the same-file check still applies
            for rec in read_fasta(f.uri, f.modality if f.modality != "auto" else _sniff(f.uri)):
                m = guess_modality(rec.seq[:4096])
                strands = [rec.seq, reverse_complement(rec.seq)] if m == "dna" else [rec.seq]
                parts[m] += [kmer_codes(s, m) for s in strands]
        return cls({m: np.unique(np.concatenate(p)) for m, p in parts.items() if p})

    def seen_fraction(self, seq: str, modality: str) -> float:
        """Fraction of the k-mers of `seq` present in the corpus."""
        index = self.codes.get(modality)
        query = kmer_codes(seq, modality)
        if index is None or not len(query):
            return 0.0
        pos = np.searchsorted(index, query).clip(max=len(index) - 1)
        return float((index[pos] == query).mean())

    def seen(self, sequences: list[str], modality: str) -> np.ndarray:
        return np.array([self.seen_fraction(s, modality) >= SEEN_FRACTION for s in sequences], dtype=bool)


def _sniff(uri: str) -> str:
    with storage.open_input(uri) as fh:
        return guess_modality(
            b"".join(line.strip() for line, _ in zip(fh, range(200), strict=False) if line[:1] != b">")
        )


@dataclass
class Overlap:
    """One (checkpoint, task): source files in common, and the test rows seen in pretraining."""

    same_files: list[str]
    seen_test: np.ndarray  # bool per test row (retrieval: per pair, gene or protein seen)

    @property
    def refused(self) -> bool:
        return bool(self.same_files) or bool(self.seen_test.mean() > SEEN_FRACTION if len(self.seen_test) else False)

    def reason(self) -> str:
        if self.same_files:
            return f"its sequences come from {', '.join(Path(f).name for f in self.same_files)}, a pretraining source"
        return f"{int(self.seen_test.sum())} of {len(self.seen_test)} test rows are in the pretraining corpus"


def overlap(task, corpus: Corpus, index: KmerIndex) -> Overlap:
    """Same-file and same-sequence overlap of `task` (a ClassificationTask or RetrievalTask) with a corpus."""
    from raybio.evaluate.bundled import file_sha256

    same = [s for s in task.sources if Path(s).is_file() and file_sha256(s) in corpus.sha256]
    if hasattr(task, "genes"):
        seen = index.seen(task.genes, "dna") | index.seen(task.proteins, "protein")
    else:
        seen = index.seen(task.test.sequences, task.modality)
    return Overlap(same, seen)
