"""The sweep report's Downstream section: score ± CI vs the swept variable and vs pretraining FLOPs,
and the pretrained / untrained / baselines table when `raybio evaluate` ran on the sweep.

`downstream_section` returns a `document.Section`, which the sweep report adds after its own.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from raybio.analysis.document import Figure, Section, Table, Text, png
from raybio.data import storage

NOTE = (
    "Scores are means over seeds of the test split (validation carved from train, never test); error bars "
    "are bootstrap 95 % CIs over test examples. The Genomic Benchmarks copies are the official test split "
    "re-split 80/20: published numbers are context only."
)


def _read_csv(uri: str) -> pd.DataFrame | None:
    return pd.read_csv(io.BytesIO(storage.read_bytes(uri))) if storage.exists(uri) else None


def headline_columns(df: pd.DataFrame) -> list[str]:
    """`downstream/<task>/<metric>` mean columns (not their CI bounds)."""
    return [c for c in df if c.startswith("downstream/") and not c.endswith(("_ci_low", "_ci_high"))]


def plot_score(ok: pd.DataFrame, x: str, col: str) -> bytes:
    d = ok.sort_values(x)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    lo, hi = d.get(f"{col}_ci_low"), d.get(f"{col}_ci_high")
    xs = d[x] if pd.api.types.is_numeric_dtype(d[x]) else d[x].astype(str)
    err = None if lo is None else [d[col] - lo, hi - d[col]]
    ax.errorbar(xs, d[col], yerr=err, fmt="o-", capsize=3)
    ax.set(xlabel=x, ylabel=col.removeprefix("downstream/"), title=f"{col.removeprefix('downstream/')} vs {x}")
    if x == "train_flops_cum":
        ax.set_xscale("log")
    return png(fig)


def _evaluate_tables(sweep_uri: str) -> list:
    blocks = []
    summary = _read_csv(storage.join(sweep_uri, "downstream", "downstream_summary.csv"))
    if summary is not None:
        if "slice" in summary:
            summary = summary[summary["slice"].isin(["clean", "all"])]
        wanted = ("task", "model", "protocol", "seeds", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "mcc")
        keep = [c for c in (*wanted, "recall_at_1", "mrr") if c in summary]
        blocks.append(Table(summary[keep], "Pretrained vs untrained vs baselines (`raybio evaluate`)"))
    routing = _read_csv(storage.join(sweep_uri, "downstream", "routing_change.csv"))
    if routing is not None:
        text = (
            "Routing change by fine-tuning (OmniGene-4): per MoE layer, mean pairwise JS divergence (nats) "
            "between tasks' expert usage, pretrained vs each task's fine-tuned backbone."
        )
        blocks += [Text(text), Table(routing)]
    return blocks


def downstream_section(df: pd.DataFrame, axes: list[str], sweep_uri: str) -> Section | None:
    """The Downstream section of a sweep report; None when nothing was evaluated."""
    ok = df[df["status"] == "OK"] if "status" in df else df
    cols = [c for c in headline_columns(ok) if ok[c].notna().any()]
    tables = _evaluate_tables(sweep_uri)
    if not cols and not tables:
        return None
    blocks: list = [Text(NOTE)]
    if cols:
        blocks.append(Table(ok[[*(a for a in axes if a in ok), *cols]]))
    blocks += tables
    for col in cols:
        stem = col.removeprefix("downstream/").replace("/", "_")
        for x in [*axes, "train_flops_cum"]:
            if x in ok and ok[x].notna().any():
                name = f"downstream_{stem}_vs_{x}.png"
                blocks.append(Figure(name, plot_score(ok, x, col), name))
    return Section("Downstream", blocks)
