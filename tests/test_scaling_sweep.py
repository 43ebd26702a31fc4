"""`python sweeps/scaling.py --smoke` end to end on real Ray: every grid run trains to its own budget, the laws are
fitted and printed (intervals or "not identified"), the check trains at C* as a second sweep, and the record,
fits.json and report hold both stages; `raybio report` rebuilds the report without refitting."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pandas as pd
import pytest

from raybio.config import steps_for_flop_budget
from raybio.tune.record import SweepRecord

SCRIPT = Path(__file__).resolve().parents[1] / "sweeps" / "scaling.py"


@pytest.fixture(scope="module")
def smoke(ray_local, tmp_path_factory):
    import contextlib
    import io

    root = tmp_path_factory.mktemp("scaling")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        runpy.run_path(str(SCRIPT))["main"](["--smoke", "--storage", str(root), "--name", "scaling"])
    return root / "scaling", out.getvalue()


def test_every_grid_run_spends_its_own_budget_with_its_own_schedule(smoke):
    sweep, _ = smoke
    df = pd.read_parquet(sweep / "results.parquet")
    assert (df["status"] == "OK").all(), df["error"].tolist()
    grid = df[df["scaling_role"] == "grid"]
    assert len(grid) == 2 * 3 * 2  # budgets × sizes × designs
    record = SweepRecord.load(str(sweep))
    for trial in record.trials():
        exp, row = trial.experiment, df.set_index("trial_id").loc[trial.trial_id]
        vocab = exp.data.tokenizer.build().vocab_size
        assert exp.train.max_steps == steps_for_flop_budget(exp, vocab, exp.train.flop_budget) == row["step"]
        assert exp.train.warmup_steps <= max(1, exp.train.max_steps // 10 + 1) and exp.train.eval_every == 0
        per_step = row["train_flops_cum"] / row["step"]
        assert exp.train.flop_budget - per_step < row["train_flops_cum"] <= exp.train.flop_budget


def test_laws_are_printed_with_intervals_or_not_identified(smoke):
    _, console = smoke
    assert "L(N, D) by approach 3" in console and "Krajewski's L(N, D, G)" in console
    assert "not identified" in console or "]" in console.split("L(N, D) by approach 3")[1]
    assert "the predictive check" in console


def test_the_check_trains_at_c_star_as_a_second_stage_and_is_compared(smoke):
    sweep, _ = smoke
    df = pd.read_parquet(sweep / "results.parquet")
    check = df[df["scaling_role"] == "check"]
    laws = json.loads((sweep / "fits.json").read_text())["laws"]
    assert len(check) == 2 and sorted(check["train.seed"]) == [0, 1]
    assert (check["train.flop_budget"] == laws["check"]["compute"]).all()
    assert laws["check"]["compute"] == pytest.approx(4 * max(laws["budgets"]))
    measured = laws["check"]["measured"]
    assert measured["losses"] == pytest.approx(check.sort_values("train.seed")["val_loss"].tolist())
    assert measured["verdict"]
    md = (sweep / "report" / "report.md").read_text()
    assert "## Scaling laws" in md and "### Predictive check at" in md and "Extrapolation warning" in md
    assert (sweep / "report" / "isoflop.png").stat().st_size > 1000


def test_report_command_rebuilds_the_scaling_sections_without_refitting(smoke, monkeypatch):
    from raybio.analysis import scaling_study
    from raybio.cli import main

    sweep, _ = smoke
    md = (sweep / "report" / "report.md").read_text()
    (sweep / "report" / "report.md").unlink()
    monkeypatch.setattr(scaling_study, "fit_laws", lambda *a, **k: pytest.fail("the saved laws were refitted"))
    main(["report", str(sweep)])
    rebuilt = (sweep / "report" / "report.md").read_text()
    section = lambda text: text.split("## Scaling laws")[1].split("\n## ")[0]  # noqa: E731
    assert section(rebuilt) == section(md)
