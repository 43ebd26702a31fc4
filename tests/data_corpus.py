"""Pytest fixture: a small two-modality corpus (phage lambda genome + 400 E. coli proteins), prepared once.

Import it in a test module: `from data_corpus import multiomic_corpus  # noqa: F401`.
"""

from __future__ import annotations

import gzip
import itertools
from dataclasses import dataclass

import pytest

from raybio.config import DataConfig
from raybio.data.fasta import read_fasta
from raybio.data.prepare import prepare
from raybio.data.sources import resolve_source

N_PROTEINS = 400


@dataclass(frozen=True)
class Corpus:
    uri: str
    manifest: dict
    cfg: DataConfig
    proteins: dict[str, str]  # id -> sequence
    genome: str


def write_proteins(path, n: int = N_PROTEINS) -> dict[str, str]:
    recs = list(itertools.islice(read_fasta(resolve_source("bundled:ecoli_proteins"), "protein"), n))
    with gzip.open(path, "wt") as f:
        f.writelines(f">{r.id}\n{r.seq}\n" for r in recs)
    return {r.id: r.seq for r in recs}


@pytest.fixture(scope="session")
def multiomic_corpus(tmp_path_factory, ray_local) -> Corpus:
    root = tmp_path_factory.mktemp("multiomic")
    proteins = write_proteins(root / "proteins.faa.gz")
    cfg = DataConfig(
        sources=["bundled:lambda", str(root / "proteins.faa.gz")],
        tokenizer={"kind": "multiomic", "k": 3},
        seq_len=64,
        rows_per_shard=256,
    )
    uri = str(root / "corpus")
    genome = next(read_fasta(resolve_source("bundled:lambda"))).seq
    return Corpus(uri, prepare(cfg, uri, progress=False), cfg, proteins, genome)
