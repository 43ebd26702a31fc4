"""`raybio evaluate` fans runs out on Ray and writes one row per run, a summary and leakage counts."""

from __future__ import annotations

import pandas as pd
from helpers import save_tiny_checkpoint, write_inference_checkpoint

from raybio.cli import main


def test_evaluate_cli_runs_checkpoint_and_baselines_on_ray_and_writes_tables(tmp_path, ray_local, capsys):
    ckpt = save_tiny_checkpoint(tmp_path / "sweep" / "trial_a" / "checkpoint_000001")
    task = tmp_path / "motif.csv"
    rows = [f"{'ACGT' * 4 + ('GATTACA' if i % 2 else 'CCCCCCC') + 'TGCA' * 4},{i % 2}" for i in range(80)]
    task.write_text("sequence,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    args = ["evaluate", str(tmp_path / "sweep"), "--tasks", str(task), "--seeds", "2", "--epochs", "2"]
    main([*args, "--out", str(out)])
    runs = pd.read_parquet(out / "downstream.parquet")
    assert len(runs) == len(pd.read_csv(out / "downstream.csv"))
    # per task: (pretrained, scratch) x 2 seeds + (kmer_logreg, gb_cnn) x 2 seeds
    assert runs.groupby("task").size().to_dict() == {"motif": 8}
    assert set(runs["checkpoint"].unique()) == {str(ckpt), ""}
    assert {"accuracy", "mcc", "macro_f1", "seed", "protocol", "pooling", "epochs", "lr"} <= set(runs.columns)
    summary = pd.read_csv(out / "downstream_summary.csv")
    kmer = summary[(summary["task"] == "motif") & (summary["model"] == "kmer_logreg")].iloc[0]
    assert kmer["accuracy"] == 1.0 and kmer["accuracy_ci_low"] <= 1.0  # the motif is a 7-mer: trivially separable
    leaks = pd.read_csv(out / "downstream_leakage.csv")
    assert leaks.set_index("task").loc["motif", "exact"] > 0  # 80 rows of two sequences: test repeats train
    report = (out / "downstream_report.md").read_text()
    assert "## motif" in report and "**Answer:** pretrained fine-tune" in report and "re-split 80/20" in report
    assert "## Checkpoints" in report and "CPU cores, torch" in report
    assert (out / "downstream_report.html").read_text().startswith("<!doctype html>")
    printed = capsys.readouterr().out
    assert "[8/8]" in printed and "kmer_logreg baseline" in printed and "near-duplicate" in printed


def test_report_says_how_each_checkpoint_was_pretrained(tmp_path):
    import json

    from raybio.analysis.evaluation_report import pretraining
    from raybio.config import load_config
    from raybio.models.model import BioLM
    from raybio.train.checkpoint import TRAIN_STATE

    exp = load_config("tiny", overrides=["model.pattern=A", "model.moe.num_experts=4", "model.moe.top_k=1"])
    ckpt = tmp_path / "checkpoint_step00001500"
    write_inference_checkpoint(ckpt, exp, BioLM(exp.model, exp.data.tokenizer.build().vocab_size))
    assert pretraining(str(ckpt)).endswith("no train state (not trained by raybio train)")
    state = {"step": 1500, "metrics": {"initial": {"init_val_loss": 4.479}, "latest_val": {"val_loss": 3.7214}}}
    (ckpt / TRAIN_STATE).write_text(json.dumps(state))
    line = pretraining(str(ckpt))
    # 1,500 steps x 16 sequences x 256 tokens = 6.1 M tokens
    assert "pattern A, 4 layers × d_model 128, 4 experts top-1 (softmax), mlm" in line
    assert "pretrained 1,500 steps (6.1 M tokens) on bundled:ecoli (kmer tokenizer, k=3)" in line
    assert line.endswith("val loss 3.7214 (untrained 4.4790)")
