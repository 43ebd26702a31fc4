"""The expert-count sweep end to end on real Ray Tune over Ray Train."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"


def scalar_tags(run_dir: Path) -> dict[str, list]:
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def smoke_sweep(ray_local, tmp_path_factory):
    import runpy

    root = tmp_path_factory.mktemp("runs")
    mod = runpy.run_path(str(SWEEPS / "expert_count.py"))
    mod["main"](["--smoke", "--storage", str(root), "--name", "smoke"])
    return root / "smoke"


def test_results_table_has_one_row_per_trial_with_metrics_and_config(smoke_sweep):
    df = pd.read_parquet(smoke_sweep / "results.parquet")
    assert sorted(df["experts"]) == [1, 2]
    assert (df["status"] == "OK").all()
    for col in (
        "val_loss",
        "init_val_loss",
        "tokens_per_s",
        "peak_memory_bytes",
        "flops_per_token_train",
        "params_total",
        "params_active",
        "step_time_s",
        "data_wait_fraction",
    ):
        assert df[col].notna().all(), col
    dense, moe = df.sort_values("experts").to_dict("records")
    assert dense["config.model.pattern"] == "D" and moe["config.model.pattern"] == "A"
    assert moe["params_total"] > dense["params_total"]
    assert pd.read_csv(smoke_sweep / "results.csv").shape == df.shape
    meta = json.loads((smoke_sweep / "sweep.json").read_text())
    assert meta["axes"] == {"experts": [1, 2]} and "--smoke" in meta["command"]


def test_tensorboard_holds_per_trial_and_sweep_level_curves(smoke_sweep):
    trials = sorted((smoke_sweep / "tensorboard" / "trials").iterdir())
    assert [t.name.split("_")[0] for t in trials] == ["experts=1", "experts=2"]
    for run in trials:
        tags = scalar_tags(run)
        for tag in (
            "loss/train",
            "loss/val",
            "efficiency/train_loss_vs_gflops",
            "throughput/tokens_per_s",
            "memory/peak_gib",
        ):
            assert tag in tags, (run.name, tag)
        assert [e.step for e in tags["loss/train"]] == [5, 10, 15, 20]
        gflops = [e.step for e in tags["efficiency/train_loss_vs_gflops"]]
        assert gflops == sorted(gflops) and gflops[-1] > 0
    moe_tags = scalar_tags(trials[1])
    assert any(t.startswith("router/layer0/") for t in moe_tags)
    # The sweep run holds the report's answer and figures, never per-config values as a smoothed scalar curve.
    acc = EventAccumulator(str(smoke_sweep / "tensorboard" / "sweep"))
    acc.Reload()
    assert acc.Tags()["scalars"] == []
    assert {"sweep/answer/text_summary", "sweep/results/text_summary"} <= set(acc.Tags()["tensors"])
    assert "sweep/loss_vs_flops" in acc.Tags()["images"]
    answer = acc.Tensors("sweep/answer/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "one seed: no verdict" in answer


def test_no_tensorboard_scalar_is_nan(smoke_sweep):
    for run in (smoke_sweep / "tensorboard").rglob("events.out.tfevents.*"):
        for tag, events in scalar_tags(run.parent).items():
            assert all(e.value == e.value for e in events), (run.parent.name, tag)
