"""Sweep-level efficiency curves (final metrics vs the swept variable) and the printed summary."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table
from torch.utils.tensorboard import SummaryWriter

from raybio.analysis.seeds import config_axes, over_seeds, seed_lines

# (column, TensorBoard name, scale) of the sweep-level curves.
CURVES = [
    ("val_loss", "final_val_loss", 1.0),
    ("tokens_per_s", "tokens_per_s", 1.0),
    ("probe/tokens_per_s", "probe_tokens_per_s", 1.0),
    ("probe/peak_memory_MiB", "probe_peak_memory_mib", 1.0),
    ("peak_memory_bytes", "peak_memory_gib", 1 / 2**30),
    ("train_flops_cum", "train_gflops", 1e-9),
    ("params_total", "params_total", 1.0),
    ("params_active", "params_active", 1.0),
]


def write_sweep_curves(df: pd.DataFrame, axes: list[str], logdir: str | Path) -> list[str]:
    """`sweep/<metric>_vs_<axis>` scalars, with the axis value as the x-axis (numeric axes only)."""
    ok = df[df["status"] == "OK"]
    tags = []
    with SummaryWriter(str(Path(logdir) / "sweep")) as writer:
        for axis in config_axes(axes):
            if axis not in ok or not pd.api.types.is_numeric_dtype(ok[axis]):
                continue
            for _, row in ok.sort_values(axis).iterrows():
                for col, name, scale in CURVES:
                    if pd.notna(row.get(col)):
                        tag = f"sweep/{name}_vs_{axis}"
                        writer.add_scalar(tag, float(row[col]) * scale, int(row[axis]))
                        tags.append(tag)
    return sorted(set(tags))


def print_summary(df: pd.DataFrame, axes: list[str], console: Console | None = None) -> None:
    """A readable table of the trials, with the loss references that make it meaningful."""
    console = console or Console(width=160)
    table = Table(title="raybio sweep summary", show_lines=False)
    cols = [
        *axes,
        "status",
        "val_loss",
        "val_loss_mask_only",
        "init_val_loss",
        *[c for c in ("probe/tokens_per_s", "probe/tokens_per_s_spread", "probe/peak_memory_MiB") if c in df],
        "tokens_per_s",
        "peak_memory_bytes",
        "params_total",
        "params_active",
        "flops_per_token_train",
    ]
    for c in cols:
        table.add_column(HEADERS.get(c, c), justify="right")
    for _, row in df.sort_values(axes).iterrows():
        table.add_row(*[_fmt(c, row.get(c)) for c in cols])
    console.print(table)
    ok = df[df["status"] == "OK"]
    if len(ok):
        console.print(
            f"references: 3-mer unigram entropy of the training corpus = "
            f"{ok['unigram_entropy_nats'].iloc[0]:.4f} nats; untrained model val loss = "
            f"{ok['init_val_loss'].min():.4f}-{ok['init_val_loss'].max():.4f} nats"
        )
        beat = ok[(ok["val_loss"] < ok["init_val_loss"]) & (ok["val_loss"] < ok["unigram_entropy_nats"])]
        console.print(f"{len(beat)}/{len(ok)} trials end below both references")
        if (seeds := over_seeds(df, axes)) is not None:
            for line in seed_lines(seeds):
                console.print(f"over training seeds: {line}")
    for _, row in df[df["status"] != "OK"].iterrows():
        console.print(f"[red]trial {row['trial_id']} failed:[/red] {row['error']}")


# Probe figures compare trials; in-training ones depend on which trials shared the machine.
HEADERS = {
    "val_loss": "val loss",
    "val_loss_mask_only": "val loss (mask only)",
    "init_val_loss": "untrained val loss",
    "params_total": "params",
    "params_active": "active params",
    "flops_per_token_train": "train FLOPs/token",
    "probe/tokens_per_s": "probe tokens/s",
    "probe/tokens_per_s_spread": "probe spread",
    "probe/peak_memory_MiB": "probe peak MiB",
    "tokens_per_s": "in-training tokens/s",
    "peak_memory_bytes": "in-training peak MiB",
}


def _fmt(col: str, val) -> str:
    if val is None or (isinstance(val, float) and pd.isna(val)):
        return "-"
    if col == "probe/tokens_per_s_spread":
        return f"{val:.0%}"
    if col == "probe/peak_memory_MiB":
        return f"{val:,.0f}"
    if col == "peak_memory_bytes":
        return f"{val / 2**20:.0f}"
    if col.startswith("params") or col == "flops_per_token_train":
        return f"{val / 1e6:.2f}M"
    if col in ("tokens_per_s", "probe/tokens_per_s"):
        return f"{val:,.0f}"
    if isinstance(val, float):
        return f"{val:.4f}"
    return str(val)
