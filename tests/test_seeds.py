"""Seeds are replicates: configs are compared by their mean over seeds and by paired, seed-by-seed gaps."""

import pandas as pd
import pytest

from raybio.analysis.seeds import config_axes, over_seeds, seed_lines

AXES = ["experts", "train.seed"]


def _results(losses: dict[tuple[int, int], float], failed=()) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"experts": e, "train.seed": s, "val_loss": v, "status": "ERROR" if (e, s) in failed else "OK"}
            for (e, s), v in losses.items()
        ]
    )


def test_the_seed_axis_is_not_a_config_axis():
    assert config_axes(["experts", "train.seed", "model.d_ffn"]) == ["experts", "model.d_ffn"]


def test_gaps_are_paired_by_seed_not_differences_of_means():
    # Seed 2 is a hard seed for both configs: paired gaps are exactly +0.01, the means' gap is not.
    losses = {(1, 0): 3.70, (1, 1): 3.72, (1, 2): 3.90, (8, 0): 3.71, (8, 1): 3.73}
    table = over_seeds(_results(losses), AXES).set_index("config")
    assert table.loc["experts=8", "paired gap"] == pytest.approx(0.01)
    assert table.loc["experts=8", ["gap min", "gap max"]].tolist() == pytest.approx([0.01, 0.01])
    assert table.loc["experts=1", "seeds"] == 3 and table.loc["experts=8", "seeds"] == 2
    assert table.loc["experts=1", "mean"] == pytest.approx(3.7733, abs=1e-4)
    assert "minus experts=1, seed by seed: +0.0100 mean (+0.0100 to +0.0100)" in seed_lines(table.reset_index())[1]


def test_failed_trials_and_sweeps_without_seeds_have_no_seed_table():
    losses = {(1, 0): 3.70, (1, 1): 3.72, (8, 0): 3.71, (8, 1): 3.60}
    table = over_seeds(_results(losses, failed={(8, 1)}), AXES).set_index("config")
    assert table.loc["experts=8", "seeds"] == 1 and table.loc["experts=8", "max"] == pytest.approx(3.71)
    assert over_seeds(_results(losses), ["experts"]) is None
