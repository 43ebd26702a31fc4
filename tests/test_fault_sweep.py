"""A sweep driver killed after its first trial finished is restarted with `resume=True`: the finished
trial is kept as it was, only the unfinished one runs, and the results table holds both."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

DRIVER = """
import sys
from raybio.config import load_config
from raybio.tune.args import SMOKE
from raybio.tune.runner import SweepSpec, run_sweep

base = load_config("tiny", overrides=SMOKE + ["train.num_workers=2", "train.checkpoint_every=5", "model.pattern=D"])
spec = SweepSpec(name="restart", axes={"train.lr": [0.001, 0.003]}, base=base, storage=sys.argv[1],
                 resume=sys.argv[2] == "resume", command=["test"])
run_sweep(spec)
"""


def _trial_states(sweep: Path) -> dict[str, str]:
    """trial_id -> status from Tune's latest saved experiment state (what a restore will read)."""
    files = sorted(sweep.glob("experiment_state-*.json"))
    try:
        state = json.loads(files[-1].read_text()) if files else {"trial_data": []}
    except json.JSONDecodeError:  # caught mid-write
        return {}
    trials = (json.loads(t) for t, _ in state["trial_data"])
    return {t["trial_id"]: t["status"] for t in trials}


def _one_finished_one_not(states: dict[str, str]) -> bool:
    return len(states) == 2 and list(states.values()).count("TERMINATED") == 1


def _driver(script: Path, storage: Path, mode: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), str(storage), mode], env=env, start_new_session=True)


def test_restarted_sweep_driver_skips_finished_trials(ray_local, tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    storage, sweep = tmp_path / "runs", tmp_path / "runs" / "restart"
    # Attach to this session's cluster; save Tune's experiment state at every step so the kill is
    # taken exactly after the first trial's completion was recorded.
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address, "TUNE_GLOBAL_CHECKPOINT_S": "0"}

    first = _driver(script, storage, "fresh", env)
    deadline = time.time() + 600
    # Trials start one at a time (2 workers each): wait until the first finished and the second exists.
    while not _one_finished_one_not(_trial_states(sweep)):
        assert first.poll() is None, "the sweep ended before it could be interrupted"
        assert time.time() < deadline, "no trial finished in time"
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)  # the driver and nothing else: the cluster belongs to the session
    first.wait()
    states = _trial_states(sweep)
    done = [t for t, s in states.items() if s == "TERMINATED"]
    assert len(states) == 2 and len(done) == 1, states
    (finished,) = done
    finished_results = next(sweep.glob(f"*{finished}*/result.json")).read_text()
    assert not (sweep / "results.csv").exists()  # the table is written once, at the end, never half

    second = _driver(script, storage, "resume", env)
    assert second.wait(timeout=600) == 0

    df = pd.read_csv(sweep / "results.csv")
    assert sorted(df["train.lr"]) == [0.001, 0.003]
    assert (df["status"] == "OK").all() and (df["step"] == 20).all(), df[["trial_id", "status", "step"]]
    # The finished trial was not run again: its Tune results are byte for byte what they were.
    assert next(sweep.glob(f"*{finished}*/result.json")).read_text() == finished_results
    # Its Train run was started once; the other trial's Train run finished (resumed or restarted).
    assert set(_trial_states(sweep).values()) == {"TERMINATED"}
