"""Every study's smoke mode runs to completion on real Ray, and its report renders."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"
REPORT_SECTIONS = ["## Study", "## Answer", "## Results", "## Loss, throughput and memory", "## Router anatomy",
                   "## Reproduce"]  # fmt: skip


def run_smoke(study: str, root: Path, *extra: str) -> Path:
    main = runpy.run_path(str(SWEEPS / f"{study}.py"))["main"]
    main(["--smoke", "--storage", str(root), "--name", study, *extra])
    return root / study


@pytest.fixture(scope="module")
def routing_sweep(ray_local, tmp_path_factory):
    return run_smoke("routing", tmp_path_factory.mktemp("routing"))


def test_routing_smoke_reports_router_anatomy_per_trial(routing_sweep):
    df = pd.read_parquet(routing_sweep / "results.parquet")
    assert sorted(df["router"]) == ["sigmoid", "softmax"] and (df["status"] == "OK").all()
    anatomy = json.loads((routing_sweep / "anatomy.json").read_text())
    assert set(anatomy) == set(df["trial_id"])
    for trial in anatomy.values():
        # Two genomes tag the inputs, so the divergence between them is defined in every layer.
        assert set(next(iter(trial["usage"].values()))) == {"NC_001416.1", "NC_001422.1"}
        assert len(trial["js_by_layer"]) == 2 and all(v >= 0 for v in trial["js_by_layer"].values())
        assert "js_change" in trial and "dead_experts_by_layer" in trial


def test_report_renders_every_section_with_plots(routing_sweep):
    report = routing_sweep / "report"
    md = (report / "report.md").read_text()
    for section in REPORT_SECTIONS:
        assert section in md, section
    assert "sweeps/routing.py" in md or "--smoke" in md
    html = (report / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3  # self-contained: plots embedded
    assert (report / "loss_vs_flops.png").stat().st_size > 1000
    assert any(p.name.startswith("anatomy_") for p in report.iterdir())


def test_hparams_summary_reads_back_with_tensorboard(routing_sweep):
    runs = sorted((routing_sweep / "tensorboard" / "hparams").iterdir())
    assert len(runs) == 2
    acc = EventAccumulator(str(runs[0]))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    assert set(session.session_start_info.hparams) == {"router", "top_k"}
    assert "hparams/val_loss" in acc.Tags()["scalars"]


def test_report_command_rebuilds_from_the_directory(routing_sweep, capsys):
    from raybio.cli import main

    (routing_sweep / "report" / "report.html").unlink()
    main(["report", str(routing_sweep)])
    assert (routing_sweep / "report" / "report.html").exists()
    assert "report.html" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("study", "axis", "values"),
    [
        ("granularity", "granularity", [1, 2]),
        ("model_size", "d_model", None),
        ("hybrid_ratio", "variant_equal_params", ["dense", "fast"]),
        ("seq_len", "seq_len", [32, 64]),
    ],
)
def test_study_smoke_runs_to_completion(ray_local, tmp_path, study, axis, values):
    extra = ["--num-samples", "2"] if study == "model_size" else []
    out = run_smoke(study, tmp_path, *extra)
    df = pd.read_parquet(out / "results.parquet")
    assert (df["status"] == "OK").all(), df["error"].tolist()
    if values is not None:
        assert sorted(df[axis]) == values
    else:
        assert len(df) == 2
    assert (out / "report" / "report.html").exists()
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["budget"].startswith("equal")


def test_granularity_keeps_active_compute_and_parameters(ray_local, tmp_path):
    df = pd.read_parquet(run_smoke("granularity", tmp_path) / "results.parquet").sort_values("granularity")
    coarse, fine = df.to_dict("records")
    assert fine["config.model.moe.num_experts"] == 2 * coarse["config.model.moe.num_experts"]
    # Expert weights are the same in total; only the router grows (d_model weights per extra expert).
    extra_router = (
        coarse["config.model.n_layers"]
        * coarse["config.model.d_model"]
        * (fine["config.model.moe.num_experts"] - coarse["config.model.moe.num_experts"])
    )
    assert fine["params_total"] - coarse["params_total"] == extra_router
    assert fine["flops_per_token_train"] == pytest.approx(coarse["flops_per_token_train"], rel=0.01)


def test_hybrid_variants_match_the_dense_parameter_count():
    from raybio.config import load_config
    from raybio.tune.args import SMOKE
    from raybio.tune.space import count_params, trial_experiment

    base = load_config("tiny", overrides=[*SMOKE, "model.n_layers=4", "model.moe.num_experts=4", "model.moe.top_k=1"])
    target = count_params(base)
    for variant in ("moe", "striped", "fast", "standard", "expressive", "pure_hyena"):
        exp = trial_experiment(base, {"variant_equal_params": variant})
        assert abs(count_params(exp) - target) / target < 0.02, variant


def test_probe_only_times_every_config_without_training(ray_local, tmp_path):
    out = run_smoke("seq_len", tmp_path, "--probe-only", "--probe-steps", "2", "--probe-rounds", "2")
    df = pd.read_parquet(out / "results.parquet")
    assert sorted(df["seq_len"]) == [32, 64] and df["probe/tokens_per_s"].gt(0).all()
    assert set(df["probe/window"]) == {32, 64}  # ranked within a window length, never across
    assert not (out / "train_runs").exists() and "val_loss" not in df
    md = (out / "report" / "report.md").read_text()
    assert "probe only: no training" in md and "at 32-token windows" in md
