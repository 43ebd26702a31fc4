"""The sweep console reads as raybio's own lines: one per trial start, validation and end, Tune's
configuration table, and every error in full; no periodic status tables and no per-trial box of every
metric."""

from __future__ import annotations

import re
from pathlib import Path

from raybio.config import load_config
from raybio.tune.args import SMOKE
from raybio.tune.runner import SweepSpec, run_sweep


def test_sweep_console_has_one_line_per_trial_event_and_keeps_errors(ray_local, tmp_path, capfd):
    base = load_config("tiny", overrides=[*SMOKE, "train.max_steps=10", "model.pattern=D", "train.max_failures=0"])
    # Both trials train to the end, then fail: the downstream task they are evaluated on does not exist.
    spec = SweepSpec(name="console", axes={"train.seed": [0, 1]}, base=base, storage=str(tmp_path), eval_tasks=["nope"])
    record = run_sweep(spec)
    out = capfd.readouterr()
    console = out.out + out.err
    for seed in (0, 1):
        assert f"(train.seed={seed}): started" in console
        assert f"(train.seed={seed}): step 10/10: train loss" in console
    assert "completed after" not in console and "Trial status:" not in console  # Tune's boxes and tables
    # Each failure is on the console: Tune's error line naming the error file, which holds the error.
    assert console.count("errored after") >= 2
    error_files = re.findall(r"Error file: (\S+)", console)
    assert error_files and all("unknown task 'nope'" in Path(f).read_text() for f in error_files)
    assert list(record.results["status"]) == ["ERROR", "ERROR"]
