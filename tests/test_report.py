"""The sweep report answers the study from its record: paired verdicts over seeds, the headline loss
against unigram, throughput ties, tables in human units; it renders, and it never reads the sweep back."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest

from raybio.analysis.report import build_report, sweep_document
from raybio.config import load_config
from raybio.tune.record import Claim, SweepMeta, SweepRecord

EFFECT = -0.010  # 8 experts minus dense, every seed
CLAIM = Claim(text="more experts lower the loss", source="Clark et al. 2022", baseline={"experts": 1})


def _record(tmp_path, experts=(1, 8), seeds=(0, 1, 2, 3, 4), probe=True, categorical=False) -> SweepRecord:
    """A finished sweep held in memory: each config once per seed, 8 experts EFFECT below dense at every seed."""
    rng = np.random.default_rng(0)
    rows, hist = [], []
    values = [f"v{e}" for e in experts] if categorical else list(experts)
    seed_effect = 0.004 * rng.standard_normal(max(seeds) + 1)  # what a seed does to both configs
    for i, (e, seed) in enumerate((e, s) for e in experts for s in seeds):
        tid = f"t{i}"
        loss = 4.05 + seed_effect[seed] + (EFFECT if e == 8 else 0.0) + 0.001 * rng.standard_normal()
        axis = values[experts.index(e)]
        for step in (0, 80, 160):
            hist.append(
                {
                    "trial_id": tid,
                    "experts": axis,
                    "train.seed": seed,
                    "step": step,
                    "val_step": step,
                    "val_loss": loss + 0.2 * (160 - step) / 160,
                    "loss": loss,
                    "train_flops_cum": step * 3e10,
                }
            )
        row = {
            "trial_id": tid,
            "status": "OK",
            "experts": axis,
            "train.seed": seed,
            "val_loss": loss,
            "val_loss_se": 0.0031,
            "val_unigram_loss": 4.1234,
            "val_loss_corrupted": loss - 0.25,
            "init_val_loss": 4.47,
            "tokens_per_s": 2783.4,
            "load_avg_1m": 3.9,
            "params_total": 1.06e6 * e,
            "params_active": 1.06e6,
            "flops_per_token_train": 7.9e6,
            "train_flops_cum": 5.2e12,
            "peak_memory_bytes": 5.5e8,
            "router/layer0/max_over_mean_load": 1.2 if e > 1 else np.nan,
            "router/layer0/dead_experts": 0 if e > 1 else np.nan,
        }
        if probe:  # dense ~6.0 k [5.8, 6.2] and 8 experts ~5.9 k [5.6, 6.2]: tied
            mean, half = (6000.0, 200.0) if e == 1 else (5900.0, 300.0)
            row |= {
                "probe/tokens_per_s": mean,
                "probe/tokens_per_s_low": mean - half,
                "probe/tokens_per_s_high": mean + half,
                "probe/tie_group": 1,
                "probe/peak_memory_MiB": 500.0 + e,
                "probe/window": 256,
            }
        rows.append(row)
    base = load_config("tiny").model_dump()
    meta = SweepMeta(
        name="expert_count",
        question="q?",
        claims=[CLAIM],
        axes={"experts": values, "train.seed": list(seeds)},
        base=base,
        command="python sweeps/expert_count.py --note '<sweep dir>'",
        probe="after" if probe else "off",
        machine="2026-12-06, test machine",
        concurrent_trials=2,
    )
    if categorical:
        meta.claims = [Claim(text="x", source="y", baseline={"experts": values[0]})]
    return SweepRecord(str(tmp_path / "expert_count"), meta, pd.DataFrame(rows), pd.DataFrame(hist))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    record = _record(tmp_path_factory.mktemp("sweep"))
    build_report(record)
    return record


def _md(record) -> str:
    with open(f"{record.uri}/report/report.md") as f:
        return f.read()


def _html(record) -> str:
    with open(f"{record.uri}/report/report.html") as f:
        return f.read()


def test_the_report_is_built_from_the_record_in_memory_without_reading_sweep_files_back(report):
    from pathlib import Path

    written = {p.name for p in Path(report.uri).rglob("*") if p.is_file()}
    assert "sweep.json" not in written and "results.parquet" not in written  # nothing was saved, nothing read
    assert {"report.md", "report.html", "loss_vs_flops.png", "learning_per_config.png", "pareto.png"} <= written


def test_the_answer_is_a_paired_verdict_over_five_seeds(report):
    md = _md(report)
    claim = report.fits["claims"][0]["comparisons"][0]
    assert claim["n_seeds"] == 5 and claim["label"] == "reproduced"
    assert claim["mean_diff"] == pytest.approx(EFFECT, abs=0.002)
    assert re.search(r"\| experts=8 +\| experts=1 +\|.*\| reproduced +\|", md)
    assert "p (paired t)" in md and "p (Wilcoxon)" in md


def test_one_seed_prints_no_verdict(tmp_path):
    record = _record(tmp_path, seeds=(0,))
    build_report(record)
    assert record.fits["claims"][0]["comparisons"][0]["label"] == "one seed: no verdict"


def test_the_headline_loss_is_set_against_the_unigram_loss_of_the_same_positions(report):
    md = _md(report)
    assert "unigram loss of the scored positions 4.1234 nats" in md
    assert "nats below unigram" in md and "80/10/10 loss (secondary)" in md
    assert "± eval SE" in md and "seed SD" in md


def test_throughput_inside_its_noise_is_printed_as_a_tie(report):
    md = _md(report)
    assert "[experts=1 (6.00 k) ≈ experts=8 (5.90 k)]" in md
    assert "6.00 [5.80, 6.20]" in md  # k tokens/s with its interval


def test_without_the_probe_there_is_no_throughput_comparison_and_no_pareto_front(tmp_path):
    record = _record(tmp_path, probe=False)
    build_report(record)
    assert "no comparable throughput" in _md(record)
    assert not (tmp_path / "expert_count" / "report" / "pareto.png").exists()


def test_html_is_escaped_and_tables_are_in_human_units(report):
    page = _html(report)
    assert "--note &#x27;&lt;sweep dir&gt;&#x27;" in page or "--note '&lt;sweep dir&gt;'" in page
    results = page[page.index("<h2>Results</h2>") : page.index("<h2>Loss, throughput")]
    assert "e+" not in results and "NaN" not in results and "nan" not in results
    assert "<summary>every trial (seeds separately)</summary>" in results


def test_categorical_configs_keep_the_studys_order(tmp_path):
    record = _record(tmp_path, experts=(8, 1), categorical=True)
    build_report(record)
    results = _md(record).split("## Results")[1]
    assert results.index("| experts=v8 ") < results.index("| experts=v1 ")  # v8 listed first by the study, not sorted


def test_a_saved_record_loads_back_equal_and_old_records_read_the_mask_only_loss_as_headline(tmp_path):
    record = _record(tmp_path)
    record.save()
    loaded = SweepRecord.load(record.uri)
    pd.testing.assert_frame_equal(loaded.results, record.results)
    assert loaded.meta == record.meta
    old = record.results.rename(columns={"val_loss": "val_loss_mask_only", "val_loss_corrupted": "val_loss"})
    old.to_parquet(f"{record.uri}/results.parquet")
    assert SweepRecord.load(record.uri).results["val_loss"].tolist() == record.results["val_loss"].tolist()


def test_a_probe_only_sweep_ranks_throughput_but_draws_no_loss_front(tmp_path):
    record = _record(tmp_path)
    record.results[["val_loss", "val_unigram_loss"]] = np.nan  # --probe-only: nothing trained
    record.history = pd.DataFrame()
    build_report(record)
    assert "pareto.png" not in {f.name for f in sweep_document(record).figures()}
    assert "Throughput (probe" in _md(record).split("## Answer")[1]


def test_an_old_probe_without_intervals_ranks_nothing_and_says_why(tmp_path):
    record = _record(tmp_path)
    record.save()
    old = record.results.drop(columns=["probe/tokens_per_s_low", "probe/tokens_per_s_high", "probe/tie_group"])
    old.to_parquet(f"{record.uri}/results.parquet")
    loaded = SweepRecord.load(record.uri)
    loaded.meta.probe_rounds = loaded.meta.probe_steps = None  # not kept by records of that time
    build_report(loaded)
    md = _md(loaded)
    assert "kept neither its rounds nor an interval per config, so nothing is ranked" in md
    assert "not ranked" in md.split("## Results")[1] and "faster" not in md.split("## Answer")[1].split("## ")[0]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    from PIL import Image

    from raybio.analysis.render import screenshot

    png = screenshot(f"{report.uri}/report/report.html", tmp_path / "shot.png", height=3000)
    img = np.asarray(Image.open(png).convert("L"))
    assert img.shape == (3000, 1280)
    assert (img < 128).mean() > 0.01  # text and plots were drawn, not a blank page


def test_router_metrics_of_every_moe_trial_fold_into_one_table(report):
    # One collapsed table with a row per (trial, layer), however many MoE trials; dense trials have none.
    md = _md(report)
    assert md.count("router metrics per layer") == 1
    moe_trials = report.results["router/layer0/max_over_mean_load"].notna().sum()
    section = md.split("*router metrics per layer, every MoE trial*", 1)[1].split("\n\n", 2)[1]
    assert len(section.strip().splitlines()) == 2 + moe_trials  # header, rule, one row per MoE trial's layer 0
