"""Sweep utilisation: the slot time of a sweep split into the phases of its trials."""

import pandas as pd
import pytest

from raybio.analysis.utilisation import sweep_utilisation


def test_utilisation_splits_slot_time_into_steps_evaluation_checkpoints_start_up_and_idle():
    # Two trials, 2 concurrent, 100 s wall = 200 slot seconds.
    history = pd.DataFrame(
        {
            "trial_id": ["a", "a", "b"],
            "step": [10, 20, 10],
            "step_time_s": [2.0, 3.0, 4.0],  # a: 10·2 + 10·3 = 50 s of steps; b: 40 s
            "data_wait_fraction": [0.0, 0.0, 0.2],  # b waited 40·0.2/0.8 = 10 s
        }
    )
    results = pd.DataFrame(
        {
            "time_total_s": [80.0, 90.0],
            "eval_time_s": [10.0, 6.0],
            "checkpoint_time_s": [4.0, 4.0],
            "setup_time_s": [3.0, 3.0],
        }
    )
    u = sweep_utilisation(results, history, wall_s=100.0, concurrency=2)
    shares = u.breakdown()
    assert u.training == pytest.approx(90 / 200)
    assert shares["waiting for data"] == pytest.approx(10 / 200)
    assert shares["evaluation"] == pytest.approx(16 / 200)
    assert shares["checkpoints"] == pytest.approx(8 / 200)
    assert shares["model and data set-up"] == pytest.approx(6 / 200)
    assert shares["worker start-up and reporting"] == pytest.approx((170 - 90 - 10 - 16 - 8 - 6) / 200)
    assert shares["no trial running (scheduling, idle slots)"] == pytest.approx(30 / 200)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert u.line().startswith("sweep utilisation 0.45 = Σ trial training s 90 / (wall 100 s × 2 concurrent)")


def test_utilisation_of_results_without_phase_columns_counts_them_as_start_up():
    history = pd.DataFrame({"trial_id": ["a"], "step": [10], "step_time_s": [1.0]})
    results = pd.DataFrame({"time_total_s": [20.0]})
    shares = sweep_utilisation(results, history, wall_s=20.0, concurrency=1).breakdown()
    assert shares["evaluation"] == 0 and shares["worker start-up and reporting"] == pytest.approx(0.5)
