"""`ray job submit` of the sweep script to a separately started Ray head reaches SUCCEEDED."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_of(temp_dir: str) -> list[psutil.Process]:
    """Every process whose command line names this head's temp dir (and their children)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(temp_dir in arg for arg in p.info["cmdline"] or []):
                found += [p, *p.children(recursive=True)]
        except psutil.Error:
            continue
    return found


@pytest.fixture
def ray_head():
    """A Ray head with its own temp dir and ports, stopped by PID (not `ray stop`, which stops every cluster)."""
    temp_dir = tempfile.mkdtemp(prefix="rbjob")  # short: Ray's socket paths have a length limit
    gcs, dash = free_port(), free_port()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    cmd = [str(bin_dir / "ray"), "start", "--head", f"--port={gcs}", f"--temp-dir={temp_dir}", "--num-cpus=3",
           "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
           "--disable-usage-stats"]  # fmt: skip
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=120)
    try:
        yield f"http://127.0.0.1:{dash}", env
    finally:
        procs = processes_of(temp_dir)
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(procs, timeout=30)


def test_sweep_script_runs_as_a_ray_job(ray_head, tmp_path):
    address, env = ray_head
    bin_dir = Path(sys.executable).parent
    submit = [str(bin_dir / "ray"), "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
              "python", "sweeps/expert_count.py", "--smoke", "--experts", "2", "--storage", str(tmp_path)]  # fmt: skip
    t0 = time.time()
    out = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert "SUCCEEDED" in log, log[-4000:]
    assert (tmp_path / "expert_count" / "results.csv").exists()
    assert time.time() - t0 < 600
