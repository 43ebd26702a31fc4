"""The report of a `raybio evaluate` run: per task, pretrained vs from-scratch vs baselines, with CIs.

Written beside downstream.csv as downstream_report.{md,html}. Each task's table gives every
model × protocol its metrics as mean [bootstrap 95 % CI] (min–max over seeds); one sentence per
task answers "does pretraining beat from-scratch and the best baseline here, and by how much",
saying when the intervals overlap (then the data cannot tell them apart).
"""

from __future__ import annotations

import html

import pandas as pd

from raybio.data import storage
from raybio.models.blocks import has_experts
from raybio.train.checkpoint import read_experiment, read_train_state

METRICS = ("accuracy", "mcc", "macro_f1", "auroc", "recall_at_1", "recall_at_10", "mrr")
CAVEAT = (
    "The Genomic Benchmarks copies bundled here are the official *test* split re-split 80/20 "
    "(5,558/1,390 and 7,227/1,807 rows): published numbers (GB CNN 69.5 / 84.6 %, HyenaDNA 74.2 / 96.6 %, "
    "Caduceus-Ph 74.7 / 94.6 % on enhancers_cohn / nontata_promoters) are context, not like-for-like."
)


def _cell(row: pd.Series, m: str) -> str:
    if m not in row or pd.isna(row[m]):
        return ""
    ci = f" [{row[f'{m}_ci_low']:.3f}, {row[f'{m}_ci_high']:.3f}]" if pd.notna(row.get(f"{m}_ci_low")) else ""
    return f"{row[m]:.3f}{ci} ({row[f'{m}_min']:.3f}–{row[f'{m}_max']:.3f})"


def _who(row: pd.Series) -> str:
    return row["model"] if row["model"] in ("kmer_logreg", "gb_cnn") else f"{row['model']} {row['protocol']}"


def answer(group: pd.DataFrame, metric: str) -> str:
    """Pretrained fine-tune against from-scratch and the best baseline on `metric`, in words."""
    pick = {_who(r): r for _, r in group.iterrows()}
    pre, scratch = pick.get("pretrained finetune"), pick.get("scratch finetune")
    bases = [r for k, r in pick.items() if k in ("kmer_logreg", "gb_cnn") and pd.notna(r.get(metric))]
    if pre is None:
        return "no pretrained fine-tune on this task"
    parts = []
    for name, other in [("from-scratch", scratch), *[(f"the best baseline ({_who(b)})",
                        b) for b in sorted(bases, key=lambda b: -b[metric])[:1]]]:  # fmt: skip
        if other is None:
            continue
        diff = pre[metric] - other[metric]
        overlap = (f"{metric}_ci_low" in pre and pd.notna(pre[f"{metric}_ci_low"])
                   and pre[f"{metric}_ci_low"] <= other[f"{metric}_ci_high"]
                   and other[f"{metric}_ci_low"] <= pre[f"{metric}_ci_high"])  # fmt: skip
        verdict = "beats" if diff > 0 else "trails"
        parts.append(f"{verdict} {name} by {abs(diff):.3f}" + (" (95 % CIs overlap)" if overlap else ""))
    return f"pretrained fine-tune {', and '.join(parts)} in {metric}" if parts else "nothing to compare with"


def pretraining(checkpoint: str) -> str:
    """One line on what a checkpoint is and how it was pretrained (from its config and train state)."""
    exp = read_experiment(checkpoint)
    m, d, t = exp.model, exp.data, exp.train
    experts = f", {m.moe.num_experts} experts top-{m.moe.top_k} ({m.moe.router})" if has_experts(m.pattern) else ""
    what = f"pattern {m.pattern}, {m.n_layers} layers × d_model {m.d_model}{experts}, {m.objective}"
    try:
        state = read_train_state(checkpoint)
    except FileNotFoundError:
        return f"{checkpoint}: {what}; no train state (not trained by raybio train)"
    tokens = state.step * t.batch_size * t.num_workers * d.seq_len
    val, init = state.metrics["latest_val"].get("val_loss"), state.metrics["initial"].get("init_val_loss")
    return (
        f"{checkpoint}: {what}; pretrained {state.step:,} steps ({tokens / 1e6:.1f} M tokens) on "
        f"{', '.join(map(str, d.sources))} ({d.tokenizer.kind} tokenizer, k={d.tokenizer.k}); "
        f"val loss {val:.4f} (untrained {init:.4f})"
    )


def write_evaluation_report(
    out_dir: str,
    summary: pd.DataFrame,
    leakage: pd.DataFrame,
    conditions: str,
    checkpoints: list[str] = (),
    routing: pd.DataFrame | None = None,
) -> str:
    """downstream_report.md and .html under `out_dir`; returns the HTML's URI."""
    md = ["# raybio downstream evaluation", "", conditions, "", CAVEAT, ""]
    body = [f"<h1>raybio downstream evaluation</h1><p>{html.escape(conditions)}</p><p>{html.escape(CAVEAT)}</p>"]
    if checkpoints:
        lines = [pretraining(c) for c in checkpoints]
        md += ["## Checkpoints", "", *[f"- {line}" for line in lines], ""]
        body += ["<h2>Checkpoints</h2><ul>", *[f"<li>{html.escape(line)}</li>" for line in lines], "</ul>"]
    for task, group in summary.groupby("task", sort=False):
        metrics = [m for m in METRICS if m in group and group[m].notna().any()]
        headline = "recall_at_1" if "recall_at_1" in metrics else "accuracy"
        table = pd.DataFrame([{"model": _who(r), "seeds": r["seeds"], **{m: _cell(r, m) for m in metrics}}
                              for _, r in group.iterrows()])  # fmt: skip
        says = answer(group, headline) if headline == "accuracy" else "retrieval: projector vs its controls"
        md += [f"## {task}", "", f"**Answer:** {says}.", "", table.to_markdown(index=False), ""]
        body += [f"<h2>{html.escape(task)}</h2><p><b>Answer:</b> {html.escape(says)}.</p>", table.to_html(index=False)]
    if not leakage.empty:
        md += ["## Train/test leakage", "", leakage.to_markdown(index=False), ""]
        body += ["<h2>Train/test leakage</h2>", leakage.to_html(index=False)]
    if routing is not None and not routing.empty:
        about = (
            "Per MoE layer, the mean pairwise Jensen–Shannon divergence between the classification tasks' "
            "expert-usage distributions, through the pretrained backbone (before) and through each task's own "
            "fine-tuned backbone (after; seed 0)."
        )
        table = routing.round(5)
        md += ["## Routing change by fine-tuning", "", about, "", table.to_markdown(index=False), ""]
        body += [f"<h2>Routing change by fine-tuning</h2><p>{html.escape(about)}</p>", table.to_html(index=False)]
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse;font-size:13px}"
    )
    style += "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
    head = f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head>"
    page = f"{head}<body>{''.join(body)}</body></html>"
    storage.write_bytes_atomic(storage.join(out_dir, "downstream_report.md"), "\n".join(md).encode())
    storage.write_bytes_atomic(storage.join(out_dir, "downstream_report.html"), page.encode())
    return storage.join(out_dir, "downstream_report.html")
