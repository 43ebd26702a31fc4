"""`ray job submit` of the sweep script to a separately started Ray head reaches SUCCEEDED."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration  # starts Ray in subprocesses

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
    gcs, dash, *agent = (free_port() for _ in range(6))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    cmd = [str(bin_dir / "ray"), "start", "--head", f"--port={gcs}", f"--temp-dir={temp_dir}", "--num-cpus=3",
           "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
           "--disable-usage-stats",
           # Own agent ports: the defaults are taken by any other Ray instance on this machine.
           f"--dashboard-agent-listen-port={agent[0]}", f"--dashboard-agent-grpc-port={agent[1]}",
           f"--runtime-env-agent-port={agent[2]}", f"--metrics-export-port={agent[3]}"]  # fmt: skip
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=120)
    try:
        yield f"http://127.0.0.1:{dash}", env
    finally:
        procs = processes_of(temp_dir)
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(procs, timeout=30)


def test_sweep_script_runs_as_a_ray_job(ray_head, tmp_path, monkeypatch):
    address, env = ray_head
    bin_dir = Path(sys.executable).parent
    submit = [str(bin_dir / "ray"), "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
              "python", "sweeps/expert_count.py", "--smoke", "--experts", "2", "--storage", str(tmp_path)]  # fmt: skip
    t0 = time.time()
    for _ in range(30):  # the head's job agent registers a few seconds after `ray start` returns
        out = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=600)
        log = out.stdout + out.stderr
        if "No available agent to submit job" not in log:
            break
        time.sleep(2)
    assert out.returncode == 0, log[-4000:]
    job_id = re.search(r"raysubmit_\w+", log).group(0)
    from ray.job_submission import JobStatus, JobSubmissionClient

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # as the head was started

    assert JobSubmissionClient(address).get_job_status(job_id) == JobStatus.SUCCEEDED
    assert (tmp_path / "expert_count" / "results.csv").exists()
    assert time.time() - t0 < 600
