"""A sweep with --eval-tasks: every trial's final checkpoint is evaluated; results and report gain downstream."""

from __future__ import annotations

import runpy
from pathlib import Path

import pandas as pd
import pytest

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"


@pytest.mark.slow
def test_sweep_with_eval_tasks_adds_downstream_columns_and_report_section(ray_local, tmp_path):
    task = tmp_path / "motif.csv"
    rows = [f"{'ACGT' * 4 + ('GATTACA' if i % 2 else 'CCCCCCC') + 'TGCA' * 4},{i % 2}" for i in range(60)]
    task.write_text("sequence,label\n" + "\n".join(rows) + "\n")
    main = runpy.run_path(str(SWEEPS / "routing.py"))["main"]
    main(["--smoke", "--storage", str(tmp_path), "--name", "r", "--eval-tasks", str(task), "--eval-seeds", "2"])
    df = pd.read_csv(tmp_path / "r" / "results.csv")
    for col in ("downstream/motif/accuracy", "downstream/motif/accuracy_ci_low", "downstream/motif/mcc"):
        assert df[col].notna().all(), col
    assert df["val_loss"].notna().all()  # the last report keeps the training metrics
    md = (tmp_path / "r" / "report" / "report.md").read_text()
    assert "## Downstream" in md and "downstream_motif_accuracy_vs_" in md
