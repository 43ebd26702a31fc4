"""Each benchmark's `--quick` mode runs to the end and prints, as its last line, the JSON summary
with the ratios its issue names, every one a finite positive number and its goal recorded.

The MoE layer and training-step benchmarks run in the default suite; the others start their own Ray
cluster or time 32k-token blocks for over a minute, so they are `slow` (`make test-all`)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # starts Ray in subprocesses

ROOT = Path(__file__).resolve().parents[1]


def run_quick(script: str, *args: str, timeout: int) -> dict:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        # The suite's environment less RAY_ADDRESS (its own cluster) and any AWS variables:
        # each benchmark starts the Ray cluster and S3 server it measures.
        env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("AWS_")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["conditions"]["quick"] is True
    return summary


def assert_ratios(summary: dict, benchmark: str, names: list[str]) -> None:
    assert summary["benchmark"] == benchmark
    for name in names:
        value = summary["ratios"][name]
        assert math.isfinite(value) and value > 0, (name, value)


def test_moe_layer_quick_reports_both_headline_ratios():
    summary = run_quick("moe_layer.py", timeout=300)
    names = ["grouped_over_loop_e64_k2", "moe_over_dense_equal_active_e64_k2"]
    assert_ratios(summary, "moe_layer", names)
    assert summary["conditions"]["goals"] == dict(zip(names, [3.0, 0.7], strict=True))


def test_train_step_quick_reports_its_ratios_and_every_contenders_throughput():
    summary = run_quick("train_step.py", timeout=900)
    assert_ratios(
        summary, "train_step", ["compiled_over_eager", "raybio_over_hf_moe", "raybio_over_hf_dense", "mfu_cpu"]
    )
    contenders = ["raybio_eager", "raybio_compiled", "bare_eager", "bare_compiled", "hf_eager", "hf_compiled"]
    want = {f"{c}_{family}_micro" for c in contenders for family in ("dense", "moe")}
    assert set(summary["tokens_per_s"]) == want
    assert all(math.isfinite(v) and v > 0 for v in summary["tokens_per_s"].values())
    assert summary["conditions"]["gemm_peak_flops"] > 0 and summary["conditions"]["load_1m_at_end"] >= 0
    # The headline is raybio's step as a long run takes it (compiled); a short run's eager step is given beside it.
    assert (summary["conditions"]["raybio_default"], summary["conditions"]["raybio_default_short_run"]) == (
        "raybio_compiled",
        "raybio_eager",
    )
    # One round gives no interval, so no goal is judged from it.
    assert summary["intervals"]["raybio_over_hf_moe"] is None
    assert summary["verdicts"]["raybio_over_hf_moe"] == "one round: not judged"
    assert summary["ratios"]["raybio_over_hf_dense_micro"] == pytest.approx(
        summary["tokens_per_s"]["raybio_compiled_dense_micro"] / summary["tokens_per_s"]["hf_eager_dense_micro"],
        rel=1e-3,
    )


def test_step_ceiling_quick_splits_raybios_step_and_puts_both_ceilings_above_what_it_reaches():
    summary = run_quick("step_ceiling.py", timeout=600)
    assert summary["benchmark"] == "step_ceiling" and summary["conditions"]["gemm_peak_flops"] > 0
    assert [(r["config"], r["family"]) for r in summary["rows"]] == [("micro", "dense"), ("micro", "moe")]
    for row in summary["rows"]:
        shares = row["shares"]
        assert sum(shares.values()) == pytest.approx(1.0) and shares["gemm"] > 0 and shares["attention"] > 0
        # A ceiling drops time from the measured step, so it can only lie above the ratio the step reaches.
        assert row["measured_ceiling_over_hf"] >= row["raybio_over_hf"] > 0


@pytest.mark.slow
def test_hyena_vs_attention_quick_reports_its_three_ratios(tmp_path):
    summary = run_quick("hyena_vs_attention.py", "--out", str(tmp_path), timeout=600)
    names = ["attention_over_hyena_time_8k", "hyena_time_32k_over_2k", "implicit_over_modal_inference"]
    assert_ratios(summary, "hyena_vs_attention", names)
    assert set(summary["conditions"]["goals_met"]) == set(names)
    assert (tmp_path / "hyena_flops_per_token.png").stat().st_size > 0


@pytest.mark.slow
def test_ingest_quick_reports_loader_wait_and_tokenizer_figures():
    summary = run_quick("ingest.py", timeout=600)
    names = ["loader_over_raw_local", "loader_over_raw_s3", "data_wait_fraction_tiny", "kmer_bases_per_s_per_core"]
    assert_ratios(summary, "ingest", names)
    assert set(summary["conditions"]["goals"]) == set(names)


@pytest.mark.slow
def test_finetune_quick_reports_throughput_ratio_and_evaluate_wall_time():
    summary = run_quick("finetune.py", timeout=600)
    names = ["finetune_over_bare_torch", "evaluate_tiny_all_tasks_s"]
    assert_ratios(summary, "finetune", names)
    assert summary["conditions"]["goals"] == dict(zip(names, [0.9, 600.0], strict=True))


@pytest.mark.slow
def test_sweep_pair_quick_reports_sweep_over_bare_with_both_measurements():
    summary = run_quick("sweep_pair.py", timeout=600)
    assert_ratios(summary, "sweep_pair", ["sweep_over_bare"])
    c = summary["conditions"]
    assert c["goals"] == {"sweep_over_bare": 0.8} and len(c["sweep_per_trial"]) == 2
    assert len(c["bare_pair_before"]) == len(c["bare_pair_after"]) == 2
    assert c["sweep_over_bare"] == pytest.approx(c["sweep_tokens_per_s"] / c["bare_pair_tokens_per_s"])
