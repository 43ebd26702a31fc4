"""The sweep report answers the study: fits with hold-out, a pick, human-unit tables, and it renders."""

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from raybio.analysis.report import build_report

ALPHA, FLOOR = 0.3, 1.5


def _sweep(tmp_path, experts=(1, 2, 4, 8), seeds=None):
    """A finished expert_count sweep whose validation curves follow L = E + A·C^-α (+ a per-expert offset);
    with `seeds`, every expert count once per training seed (a `train.seed` axis, seed offsets ±0.002)."""
    rng = np.random.default_rng(0)
    rows, hist = [], []
    configs = [(e, s) for e in experts for s in (seeds or [None])]
    for i, (e, seed) in enumerate(configs):
        tid = f"t{i}"
        axis_values = {"experts": e} | ({} if seed is None else {"train.seed": seed})
        steps = np.geomspace(10, 3000, 12).round()
        c = steps * 1e9 * (1 + 0.01 * i)
        val = FLOOR + 3000 * c**-ALPHA - 0.01 * np.log(e) + (0 if seed is None else 0.002 * (2 * seed - 1))
        val = val * (1 + 0.0005 * rng.standard_normal(len(val)))
        for s, cc, v in zip(steps, c, val, strict=True):
            hist.append(
                {"trial_id": tid, **axis_values, "step": s, "val_step": s, "val_loss": v, "loss": v - 0.05,
                 "train_flops_cum": cc, "tokens_per_s": 7788.3, "step_time_s": 0.2, "data_wait_fraction": 0.01}
            )  # fmt: skip
        rows.append(
            {"trial_id": tid, "status": "OK", **axis_values, "val_loss": val[-1], "val_loss_mask_only": np.nan,
             "init_val_loss": 4.3, "unigram_entropy_nats": 4.1, "tokens_per_s": 7788.319, "peak_memory_bytes": 5.5e8,
             "params_total": 1.4e5 * e, "params_active": 1.4e5, "flops_per_token_train": 9.1e5,
             "train_flops_cum": c[-1], "probe/tokens_per_s": 6000.0 - 100 * e, "probe/tokens_per_s_spread": 0.03,
             "probe/step_time_s": 0.68, "probe/peak_memory_MiB": 510.0 + e, "mfu": np.nan,
             "router/layer0/load_cv": 0.1 * e if e > 1 else np.nan,
             "router/layer0/dead_experts": 0 if e > 1 else np.nan}
        )  # fmt: skip
    root = tmp_path / "expert_count"
    root.mkdir()
    pd.DataFrame(rows).to_parquet(root / "results.parquet")
    pd.DataFrame(hist).to_parquet(root / "history.parquet")
    axes = {"experts": list(experts)} | ({"train.seed": list(seeds)} if seeds else {})
    meta = {
        "name": "expert_count", "question": "q", "axes": axes, "search": "grid",
        "metric": "val_loss", "mode": "min", "budget": "equal tokens", "command": "python sweeps/expert_count.py",
        "base": {"model": {"pattern": "D", "d_model": 64, "n_layers": 2, "objective": "mlm"}},
        "concurrent_trials": 2, "target_flops": None, "utilisation_line": "sweep utilisation 0.50 = …",
    }  # fmt: skip
    (root / "sweep.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One synthetic sweep and its report, shared by the tests that only read it."""
    root = _sweep(tmp_path_factory.mktemp("sweep"))
    build_report(str(root))
    return root


def test_report_gives_the_fitted_law_its_holdout_and_a_pick(report):
    root = report
    md = (root / "report" / "report.md").read_text()
    assert "## Answer" in md and "compute-optimal choice is **experts=8**" in md
    assert "**Run on:** not recorded" in md  # a sweep.json from before machines were recorded
    alpha = float(re.search(r"\| alpha\s+\|\s+([0-9.]+)", md).group(1))
    assert alpha == pytest.approx(ALPHA, abs=0.05)
    assert "Hold-out (refit without the 1 largest point(s)" in md and "relative error" in md
    assert "routed: log L" in md and "not identifiable" in md  # one model size: a, c cannot be fitted
    for name in ("scaling_compute.png", "scaling_routed.png", "loss_vs_flops.png", "pareto.png"):
        assert (root / "report" / name).stat().st_size > 5000


def test_report_tables_are_in_human_units_without_empty_columns(report):
    html = (report / "report" / "report.html").read_text()
    results = html[html.index("<h2>Results</h2>") : html.index("<h2>Pareto front</h2>")]
    assert "e+" not in results and "NaN" not in results and "nan" not in results
    assert "probe k tokens/s" in results and "5.90" in results  # 5,900 tokens/s as k tokens/s
    assert "in-training k tokens/s (2 concurrent)" in results and "7.79" in results
    assert "MFU" not in results and "mask only" not in results  # all-NaN columns are left out
    assert "<details><summary>router metrics per layer: experts=2" in results
    assert "router load CV (mean)" in results


def test_pareto_front_uses_the_probe_figures(report):
    md = (report / "report" / "report.md").read_text()
    assert "max probe/tokens_per_s" in md


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    from PIL import Image

    from raybio.analysis.render import screenshot

    png = screenshot(report / "report" / "report.html", tmp_path / "shot.png", height=3000)
    img = np.asarray(Image.open(png).convert("L"))
    assert img.shape == (3000, 1280)
    assert (img < 128).mean() > 0.01  # text and plots were drawn, not a blank page


def test_training_seeds_are_replicates_of_one_config_not_a_design_axis(tmp_path):
    root = _sweep(tmp_path, experts=(1, 8), seeds=(0, 1))
    build_report(str(root))
    md = (root / "report" / "report.md").read_text()
    # One candidate per expert count, fitted on both seeds' curves; the pick never names a seed.
    assert "| experts=1 (2 seeds) |" in md and "| experts=8 (2 seeds) |" in md
    assert "compute-optimal choice is **experts=8 (2 seeds)**" in md
    # Seed-by-seed gap to the first config: 8 experts sit 0.01·ln 8 = 0.0208 below dense at every seed.
    gap = float(re.search(r"minus experts=1, seed by seed: ([-+0-9.]+) mean", md).group(1))
    assert gap == pytest.approx(-0.01 * np.log(8), abs=4e-3)  # ± the curves’ 0.05 % noise
    assert not list((root / "report").glob("*_vs_train.seed.png"))


def test_an_axis_held_at_one_value_gets_no_curve(tmp_path):
    root = _sweep(tmp_path, experts=(1,), seeds=(0, 1))
    build_report(str(root))
    curves = {p.name for p in (root / "report").glob("*_vs_*.png")}
    assert curves == {"loss_vs_flops.png"}  # one expert count, and seeds are replicates
