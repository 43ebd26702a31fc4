"""The report of a `raybio evaluate` run, as a `Document` of sections (downstream_report.{md,html}).

Per task: every model's scores on the clean test slice as mean [hierarchical-bootstrap 95 % CI]
(min–max over seeds), the paired comparisons that answer "does pretraining help here, and does it
beat the baselines" in words taken from the test, per-class metrics and confusion matrices; then
what each checkpoint pretrained on, which tasks overlap it, the leakage counts and the tuning grids.
"""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from raybio.analysis.document import Bullets, Document, Figure, Section, Table, Text, png, write_document
from raybio.data import storage
from raybio.data.config import DataConfig
from raybio.evaluate.protocols import EvalConfig
from raybio.evaluate.runner import Evaluation
from raybio.evaluate.summary import label
from raybio.models.blocks import has_experts
from raybio.models.config import ModelConfig
from raybio.models.pretrained import CONFIG_FILE
from raybio.train.checkpoint import read_train_state

CLASSIFICATION_COLUMNS = ("accuracy", "mcc", "macro_f1", "auroc", "auprc")
RETRIEVAL_COLUMNS = ("recall_at_1", "recall_at_10", "mrr")
GB_CAVEAT = (
    "The Genomic Benchmarks copies bundled here are the official *test* split re-split 80/20 "
    "(train 5,558 / 7,227 rows before any cap): the published numbers beside them were trained on the official "
    "20,843 / 27,097-row train splits with another protocol (5-fold CV); they are context, not like-for-like."
)
# Top-1 accuracy, Caduceus paper's table as reproduced in JanusDNA (Duan et al. 2025) Table 1.
PUBLISHED = {
    "gb_nontata_promoters": {"CNN 264k": 0.861, "HyenaDNA 436k": 0.944, "Caduceus-Ph 470k": 0.946},
    "gb_enhancers_cohn": {"CNN 264k": 0.702, "HyenaDNA 436k": 0.729, "Caduceus-Ph 470k": 0.747},
}
PUBLISHED_COLUMN = "published (official split, different protocol)"


def pretraining(checkpoint: str) -> str:
    """One line on what a checkpoint is and how it was pretrained (from its config and train state).

    Reads the model and data sections only, so a checkpoint stays describable when other sections
    of the experiment schema move on.
    """
    exp = json.loads(storage.read_bytes(storage.join(checkpoint, CONFIG_FILE)))["experiment"]
    m, d, t = ModelConfig.model_validate(exp["model"]), DataConfig.model_validate(exp["data"]), exp["train"]
    experts = f", {m.moe.num_experts} experts top-{m.moe.top_k} ({m.moe.router})" if has_experts(m.pattern) else ""
    what = f"pattern {m.pattern}, {m.n_layers} layers × d_model {m.d_model}{experts}, {m.objective}"
    try:
        state = read_train_state(checkpoint)
    except FileNotFoundError:
        return f"{checkpoint}: {what}; no train state (not trained by raybio train)"
    tokens = state.step * t["batch_size"] * t.get("num_workers", 1) * d.seq_len
    val, init = state.metrics["latest_val"].get("val_loss"), state.metrics["initial"].get("init_val_loss")
    return (
        f"{checkpoint}: {what}; pretrained {state.step:,} steps ({tokens / 1e6:.1f} M tokens) on "
        f"{', '.join(map(str, d.sources))} ({d.tokenizer.kind} tokenizer, k={d.tokenizer.k}); "
        f"val loss {val:.4f} (untrained {init:.4f})"
    )


def _cell(row, m: str) -> str:
    if m not in row or pd.isna(row[m]):
        return ""
    ci = f" [{row[f'{m}_ci_low']:.3f}, {row[f'{m}_ci_high']:.3f}]" if pd.notna(row.get(f"{m}_ci_low")) else ""
    return f"{row[m]:.3f}{ci} ({row[f'{m}_min']:.3f}–{row[f'{m}_max']:.3f})"


def _who(row) -> str:
    name = label(row["model"], row["protocol"])
    hp = f" ({row['hp_name']}={row['hp']:g})" if row.get("hp_name") and pd.notna(row.get("hp")) else ""
    return name + hp


def scores_table(group: pd.DataFrame, task: str, metrics: tuple[str, ...]) -> pd.DataFrame:
    """One row per model (best first); GB tasks gain the published column and rows."""
    group = group.sort_values(metrics[0], ascending=False)
    rows = [
        {"model": _who(r), "seeds": str(int(r["seeds"])), **{m: _cell(r, m) for m in metrics}}
        for _, r in group.iterrows()
    ]
    if task in PUBLISHED:
        for row in rows:
            row[PUBLISHED_COLUMN] = (
                f"CNN 264k: {PUBLISHED[task]['CNN 264k']:.3f}" if row["model"].startswith("gb_cnn") else ""
            )
        rows += [
            {"model": f"{name} (published)", PUBLISHED_COLUMN: f"{acc:.3f}"} for name, acc in PUBLISHED[task].items()
        ]
    return pd.DataFrame(rows).fillna("")


def forest(group: pd.DataFrame, task: str, metric: str) -> Figure:
    """Each model's clean-slice score with its 95 % CI (hierarchical bootstrap)."""
    g = group.sort_values(metric)
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(g) + 1.2))
    y = range(len(g))
    lo = g[metric] - g.get(f"{metric}_ci_low", g[metric])
    hi = g.get(f"{metric}_ci_high", g[metric]) - g[metric]
    ax.errorbar(g[metric], y, xerr=[lo.fillna(0), hi.fillna(0)], fmt="o", capsize=3)
    ax.set_yticks(list(y), [label(m, p) for m, p in zip(g["model"], g["protocol"], strict=True)])
    ax.set(xlabel=f"{metric} (clean test slice)", title=task)
    ax.grid(axis="x", alpha=0.3)
    return Figure(f"downstream_{task}_{metric}.png", png(fig), f"{task}: {metric} with 95 % CI")


def task_section(name: str, result: Evaluation) -> Section:
    s = result.summary
    task = result.tasks[name]
    scores = s.scores[s.scores["task"] == task.name]
    retrieval = "recall_at_1" in scores and scores["recall_at_1"].notna().any()
    metrics = RETRIEVAL_COLUMNS if retrieval else CLASSIFICATION_COLUMNS
    main = scores[scores["slice"].isin(["clean", "all"])]
    blocks: list = [Text(task.note)] if task.note else []
    comp = s.comparisons[s.comparisons["task"] == task.name] if len(s.comparisons) else pd.DataFrame()
    if len(comp):
        blocks.append(Bullets([f"**{r.a}**: {r.verdict}" for r in comp.itertuples()]))
    n_test = int(main["n_test"].iloc[0])
    caption = (
        f"{n_test:,} held-out pairs per seed (a new split per seed); mean (min–max over seeds)"
        if retrieval
        else f"{main['slice'].iloc[0]} test slice ({n_test:,} rows); mean [95 % CI] (min–max over seeds)"
    )
    blocks.append(Table(scores_table(main, name, metrics), caption))
    blocks.append(forest(main, task.name, metrics[0]))
    if len(comp):
        cols = ["a", "b", "difference", "ci_low", "ci_high", "p_bootstrap", "p_holm", "p_mcnemar_median", "seeds"]
        blocks.append(Table(comp[cols].round(4), "paired comparisons (accuracy, clean slice)", collapsed=True))
    other = scores[~scores["slice"].isin(["clean", "all"])]
    if len(other):
        table = pd.DataFrame(
            [
                {"slice": r["slice"], "n_test": r["n_test"], "model": _who(r)} | {"accuracy": _cell(r, "accuracy")}
                for _, r in other.iterrows()
            ]
        )
        blocks.append(Table(table, "test rows scored apart (near duplicates of train, seen in pretraining)"))
    if not retrieval:
        pc = s.per_class[s.per_class["task"] == task.name].drop(columns=["task", "checkpoint"]).round(3)
        cm = s.confusion[s.confusion["task"] == task.name].drop(columns=["task", "checkpoint"])
        blocks += [Table(pc, "per-class precision / recall / F1 (clean slice, seeds pooled)", collapsed=True)]
        blocks += [Table(cm, "confusion matrices (rows: true class; mean counts over seeds)", collapsed=True)]
    return Section(task.name, blocks)


def setup_section(result: Evaluation, cfg: EvalConfig, seeds: int, protocols, wall: str) -> Section:
    cap = f"{cfg.max_train:,} rows per task (stratified, every model alike)" if cfg.max_train else "none (full splits)"
    items = [
        f"seeds {seeds}; protocols {', '.join(protocols)}; pooling {cfg.pooling}; batch {cfg.batch_size}",
        f"**train-row cap (`--max-train`): {cap}**; validation: {cfg.val_fraction:.0%} carved from train, never test",
        f"grids, chosen by validation loss on seed 0 and kept for all seeds: fine-tune lr {cfg.finetune_lrs}, "
        f"probe lr {cfg.probe_lrs}, GB CNN lr {cfg.cnn_lrs}, k-mer LR C {cfg.kmer_cs}; epochs by early stopping on "
        f"validation (fine-tune ≤ {cfg.epochs}, patience {cfg.patience}; probe ≤ {10 * cfg.epochs}; CNN ≤ 10)",
        "untrained = the checkpoint's architecture from a seeded random init (new init per seed), probed and fine-tuned"
        " exactly like the pretrained weights",
        f"CIs: hierarchical bootstrap ({cfg.bootstrap} resamples) over seeds and test examples; comparisons: paired "
        "bootstrap of the accuracy difference and exact McNemar per seed (median p), Holm-adjusted over all "
        "comparisons; verdicts say 'helps' / 'beats' only when the adjusted p < 0.05 and the interval excludes 0",
        f"{len(result.runs)} rows ({result.reused} reused from an earlier run's journal), "
        f"{result.runs['seconds'].sum():,.0f} s of run time summed over rows (one CPU each); this invocation: {wall}",
    ]
    return Section("How this was run", [Bullets(items), Text(GB_CAVEAT, callout=True)])


def data_section(result: Evaluation, checkpoints) -> Section:
    blocks: list = [Bullets([pretraining(c) for c in checkpoints])] if checkpoints else []
    if len(result.overlap):
        cols = ["checkpoint", "task", "corpus", "same_files", "seen", "n_test", "refused", "reason"]
        about = (
            "Each task against each checkpoint's pretraining corpus (its manifest's source files and checksums): a "
            "task drawn from a pretraining source file is refused; test rows with ≥ 50 % of their k-mers (31-mers DNA, "
            "both strands; 10-mers protein) in the corpus are 'seen' and scored apart."
        )
        blocks += [Text(about), Table(result.overlap[cols], "pretraining overlap")]
    if len(result.leakage):
        blocks.append(
            Table(
                result.leakage.drop(columns="note"),
                "test rows duplicating train rows (near: k-mer Jaccard ≥ 0.9; scored apart)",
            )
        )
    return Section("Checkpoints, pretraining overlap, leakage", blocks)


def tuning_section(result: Evaluation) -> Section:
    runs = result.runs
    grid = runs[(runs["seed"] == 0) & (runs["hp_name"].astype(str) != "")]
    cols = [c for c in ("task", "model", "protocol", "hp_name", "hp", "val_loss", "selected", "accuracy") if c in grid]
    return Section(
        "Tuning (seed 0 grids)", [Table(grid[cols].round(4), "validation loss per grid value", collapsed=True)]
    )


def write_downstream_report(
    out_dir: str,
    result: Evaluation,
    cfg: EvalConfig,
    seeds: int,
    protocols,
    wall: str,
    checkpoints=(),
    routing: pd.DataFrame | None = None,
) -> str:
    """downstream_report.md and .html (and the figures) under `out_dir`; returns the HTML's URI."""
    sections = [setup_section(result, cfg, seeds, protocols, wall)]
    scored = set(result.summary.scores["task"])
    sections += [task_section(key, result) for key, task in result.tasks.items() if task.name in scored]
    sections.append(data_section(result, checkpoints))
    if "hp_name" in result.runs:
        sections.append(tuning_section(result))
    if routing is not None and not routing.empty:
        about = (
            "Per MoE layer, the mean pairwise Jensen–Shannon divergence between the classification tasks' "
            "expert-usage distributions, through the pretrained backbone (before) and through each task's own "
            "fine-tuned backbone (after; seed 0, one fine-tune per task)."
        )
        sections.append(Section("Routing change by fine-tuning", [Text(about), Table(routing.round(5))]))
    doc = Document("raybio downstream evaluation", sections)
    return write_document(doc, out_dir, "downstream_report")["html"]
