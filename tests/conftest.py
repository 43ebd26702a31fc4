"""Shared fixtures: one local Ray cluster per test session, small prepared corpora."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray cluster with one logical CPU more than the machine (room for data reads)."""
    import ray

    from raybio.cluster import init_ray

    init_ray(num_cpus=3)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def lambda_corpus(tmp_path_factory):
    """The bundled phage lambda genome prepared into 64-token windows: (shards_uri, manifest, config)."""
    from raybio.config import load_config
    from raybio.data.prepare import prepare
    from raybio.tune.args import SMOKE

    exp = load_config("tiny", overrides=list(SMOKE))
    uri = str(tmp_path_factory.mktemp("corpus") / "lambda")
    return uri, prepare(exp.data, uri, progress=False), exp
