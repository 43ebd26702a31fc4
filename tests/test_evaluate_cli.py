"""`raybio evaluate` fans runs out on Ray and writes one row per run, a summary and leakage counts."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import save_tiny_checkpoint, write_inference_checkpoint

from raybio.cli import main


def motif_task(path, n: int = 80):
    rows = [f"{'ACGT' * 4 + ('GATTACA' if i % 2 else 'CCCCCCC') + 'TGCA' * 4},{i % 2}" for i in range(n)]
    path.write_text("sequence,label\n" + "\n".join(rows) + "\n")
    return path


def test_evaluate_cli_runs_units_on_ray_and_writes_tables_and_report(tmp_path, ray_local, capsys):
    save_tiny_checkpoint(tmp_path / "sweep" / "trial_a" / "checkpoint_000001")
    task = motif_task(tmp_path / "motif.csv")
    out = tmp_path / "out"
    args = ["evaluate", str(tmp_path / "sweep"), "--tasks", str(task), "--seeds", "2", "--epochs", "2"]
    main([*args, "--lrs", "3e-4", "--max-train", "50", "--out", str(out)])
    runs = pd.read_parquet(out / "downstream.parquet")
    assert len(runs) == len(pd.read_csv(out / "downstream.csv"))
    # pretrained / untrained fine-tune: 1 lr x 2 seeds; majority / length-only: 2 seeds;
    # k-mer LR and the CNN: a 3-value grid on seed 0, then the chosen value on seed 1.
    sizes = runs.groupby("model").size().to_dict()
    assert sizes == {"pretrained": 2, "untrained": 2, "majority": 2, "length_only": 2, "kmer_logreg": 4, "gb_cnn": 4}
    assert runs[runs["model"] == "kmer_logreg"]["selected"].sum() == 2
    assert (runs["n_train"] + runs["n_val"] == 50).all()  # --max-train caps every model alike
    summary = pd.read_csv(out / "downstream_summary.csv")
    # Every test row repeats a train row: no clean slice, so the headline is all rows (said in the table).
    assert set(summary["slice"]) == {"all", "near_duplicate"}
    kmer = summary[(summary["model"] == "kmer_logreg") & (summary["slice"] == "all")].iloc[0]
    assert kmer["accuracy"] == 1.0 and kmer["accuracy_ci_low"] <= 1.0  # the motif is a 7-mer: trivially separable
    leaks = pd.read_csv(out / "downstream_leakage.csv")
    assert leaks.set_index("task").loc["motif", "exact"] > 0  # 80 rows of two sequences: test repeats train
    comparisons = pd.read_csv(out / "downstream_comparisons.csv")
    assert {"untrained finetune", "majority"} <= set(comparisons["b"]) and comparisons["p_holm"].between(0, 1).all()
    report = (out / "downstream_report.md").read_text()
    assert "## motif" in report and "pretrained finetune**:" in report and "train-row cap (`--max-train`): 50" in report
    assert "## Checkpoints, pretraining overlap, leakage" in report and "CPU cores, torch" in report
    assert (out / "downstream_report.html").read_text().startswith("<!doctype html>")
    assert "motif untrained finetune lr=0.0003 seed 1" in capsys.readouterr().out


def test_a_rerun_reuses_the_rows_a_failed_run_finished(tmp_path, monkeypatch):
    from raybio.evaluate import units
    from raybio.evaluate.protocols import EvalConfig
    from raybio.evaluate.runner import evaluate

    ckpt = str(save_tiny_checkpoint(tmp_path / "ckpt", steps=2))
    task, out = str(motif_task(tmp_path / "motif.csv", 40)), str(tmp_path / "out")
    cfg = EvalConfig(epochs=1, finetune_lrs=[3e-4, 1e-3])
    real, calls = units.finetune, []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("injected crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(units, "finetune", crash_on_third)
    with pytest.raises(RuntimeError, match="injected crash"):
        evaluate([ckpt], [task], cfg, seeds=2, out_dir=out, use_ray=False, log=lambda _: None)
    assert len(list((tmp_path / "out" / "journal").glob("*.json"))) == 2  # the two finished fine-tunes
    monkeypatch.setattr(units, "finetune", real)
    said = []
    again = evaluate([ckpt], [task], cfg, seeds=2, out_dir=out, use_ray=False, log=said.append)
    assert again.reused == 2 and any("2 finished rows from an earlier run will be reused" in s for s in said)
    assert len(again.runs) == 3 + 3 + 2 + 2 + 4 + 4  # every row, reused or new
    different = evaluate([ckpt], [task], cfg.model_copy(update={"epochs": 2}), seeds=2, out_dir=out, use_ray=False)
    assert different.reused == 0  # other arguments never reuse a row


def test_report_says_how_each_checkpoint_was_pretrained(tmp_path):
    import json

    from raybio.analysis.downstream_report import pretraining
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
