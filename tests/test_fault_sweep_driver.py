"""A sweep driver killed after its short trial finished, while its long trial was still training, is
restarted with `resume=True`: the finished trial is kept as it was, the unfinished one continues
from its own Train checkpoint, and the results table holds both."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from raybio.train.local import REGISTRY

pytestmark = pytest.mark.integration  # starts Ray in subprocesses

SHORT, LONG = 10, 60
DRIVER = f"""
import sys
from raybio.config import load_config
from raybio.tune.args import SMOKE
from raybio.tune.runner import SweepSpec, run_sweep

# One worker per trial: both trials run at once on this 3-CPU cluster.
base = load_config("tiny", overrides=SMOKE + ["train.checkpoint_every=5", "model.pattern=D"])
spec = SweepSpec(name="restart", axes={{"train.max_steps": [{SHORT}, {LONG}]}}, base=base, storage=sys.argv[1],
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


def _interruptible(sweep: Path) -> bool:
    """One trial finished (as far as a restore will know) and the other has a registered Train checkpoint."""
    states = _trial_states(sweep)
    running = [t for t, s in states.items() if s != "TERMINATED"]
    if len(states) != 2 or len(running) != 1:
        return False
    run = sweep / "train_runs" / f"trial_{running[0]}"
    # Ray Train's checkpoint list, or raybio's where the trial trains in its own process (one CPU worker).
    registries = [run / "checkpoint_manager_snapshot.json", run / REGISTRY]
    return any(f.exists() and "checkpoint_step" in f.read_text() for f in registries)


def _last_result(sweep: Path, trial_id: str) -> dict:
    return json.loads(next(sweep.glob(f"*{trial_id}*/result.json")).read_text().splitlines()[-1])


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
    while not _interruptible(sweep):
        assert first.poll() is None, "the sweep ended before it could be interrupted"
        assert time.time() < deadline, "the sweep never reached one finished and one checkpointed trial"
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)  # the driver and nothing else: the cluster belongs to the session
    first.wait()
    states = _trial_states(sweep)
    (finished,) = [t for t, s in states.items() if s == "TERMINATED"]
    (unfinished,) = [t for t, s in states.items() if s != "TERMINATED"]
    finished_results = next(sweep.glob(f"*{finished}*/result.json")).read_text()
    assert not (sweep / "results.csv").exists()  # the table is written once, at the end, never half

    second = _driver(script, storage, "resume", env)
    assert second.wait(timeout=600) == 0

    df = pd.read_csv(sweep / "results.csv")
    assert sorted(df["train.max_steps"]) == [SHORT, LONG]
    assert (df["status"] == "OK").all() and (df["step"] == df["train.max_steps"]).all(), df[["status", "step"]]
    # The finished trial was not run again: its Tune results are byte for byte what they were.
    assert next(sweep.glob(f"*{finished}*/result.json")).read_text() == finished_results
    # The unfinished one went on from its Train run's last checkpoint rather than from scratch.
    last = _last_result(sweep, unfinished)
    assert last["step"] == LONG and 0 < last["resumed_from_step"] < LONG
    assert set(_trial_states(sweep).values()) == {"TERMINATED"}
    # One history row per step, though the steps since the checkpoint were reported twice.
    history = pd.read_csv(sweep / "history.csv")
    assert history.loc[history["trial_id"] == unfinished, "step"].is_unique
