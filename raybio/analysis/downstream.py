"""The report's Downstream section: score ± CI vs the swept variable and vs pretraining FLOPs,
and the pretrained / from-scratch / baselines table when `raybio evaluate` ran on the sweep."""

from __future__ import annotations

import base64
import html
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from raybio.data import storage

NOTE = (
    "Scores are means over seeds of the test split (validation carved from train, never test); error bars "
    "are bootstrap 95 % CIs over test examples. The Genomic Benchmarks copies are the official test split "
    "re-split 80/20: published numbers (e.g. GB CNN 69.5 / 84.6 % on the full splits) are context only."
)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _maybe_read(uri: str) -> bytes | None:
    fs, path = storage.filesystem(uri)
    return storage.read_bytes(uri) if fs.get_file_info(path).type.name != "NotFound" else None


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
    return _png(fig)


def section(df: pd.DataFrame, axes: list[str], sweep_uri: str) -> tuple[list[str], list[str], dict[str, bytes]]:
    """(markdown lines, html parts, images) of the Downstream section; a one-line note when nothing was evaluated."""
    ok = df[df["status"] == "OK"] if "status" in df else df
    cols = [c for c in headline_columns(ok) if ok[c].notna().any()]
    summary_bytes = _maybe_read(storage.join(sweep_uri, "downstream", "downstream_summary.csv"))
    if not cols and summary_bytes is None:
        text = "No downstream evaluation in this sweep (run it with --eval-tasks, or `raybio evaluate <sweep dir>`)."
        return ["## Downstream", "", text, ""], [f"<h2>Downstream</h2><p>{text}</p>"], {}
    images = {}
    for col in cols:
        stem = col.removeprefix("downstream/").replace("/", "_")
        for x in [*axes, "train_flops_cum"]:
            if x in ok and ok[x].notna().any():
                images[f"downstream_{stem}_vs_{x}.png"] = plot_score(ok, x, col)
    table = ok[[*(a for a in axes if a in ok), *cols]] if cols else pd.DataFrame()
    md, h = ["## Downstream", "", NOTE, ""], [f"<h2>Downstream</h2><p>{html.escape(NOTE)}</p>"]
    if cols:
        md += [table.to_markdown(index=False), ""]
        h.append(table.to_html(index=False))
    if summary_bytes is not None:
        summary = pd.read_csv(io.BytesIO(summary_bytes))
        wanted = ("task", "model", "protocol", "seeds", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "mcc")
        keep = [c for c in (*wanted, "recall_at_1", "mrr") if c in summary]
        table = summary[keep].to_markdown(index=False)
        md += ["Pretrained vs from-scratch vs baselines (`raybio evaluate`):", "", table, ""]
        h.append("<p>Pretrained vs from-scratch vs baselines:</p>" + summary[keep].to_html(index=False))
    routing_bytes = _maybe_read(storage.join(sweep_uri, "downstream", "routing_change.csv"))
    if routing_bytes is not None:
        routing = pd.read_csv(io.BytesIO(routing_bytes))
        text = (
            "Routing change by fine-tuning (OmniGene-4): per MoE layer, mean pairwise JS divergence (nats) "
            "between tasks' expert usage, pretrained vs each task's fine-tuned backbone."
        )
        md += [text, "", routing.to_markdown(index=False), ""]
        h.append(f"<p>{html.escape(text)}</p>" + routing.to_html(index=False))
    for name, data in images.items():
        md.append(f"![{name}]({name})")
        h.append(f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(data).decode()}">')
    return md, h, images


def add_section(
    md: str, html_doc: str, df: pd.DataFrame, axes: list[str], sweep_uri: str, out_dir: str
) -> tuple[str, str]:
    """Insert the Downstream section before "Reproduce" in both documents and write its PNGs."""
    md_lines, html_parts, images = section(df, axes, sweep_uri)
    for name, data in images.items():
        storage.write_bytes_atomic(storage.join(out_dir, name), data)
    md = md.replace("## Reproduce", "\n".join(md_lines) + "\n## Reproduce", 1)
    html_doc = html_doc.replace("<h2>Reproduce</h2>", "\n".join(html_parts) + "\n<h2>Reproduce</h2>", 1)
    return md, html_doc


def downstream_section(df: pd.DataFrame, axes: list[str], sweep_uri: str):
    """The Downstream section as a `Section` of the report document."""
    from raybio.analysis.document import Figure, Section, Table, Text

    ok = df[df["status"] == "OK"] if "status" in df else df
    cols = [c for c in headline_columns(ok) if ok[c].notna().any()]
    summary_bytes = _maybe_read(storage.join(sweep_uri, "downstream", "downstream_summary.csv"))
    if not cols and summary_bytes is None:
        text = "No downstream evaluation in this sweep (run it with --eval-tasks, or `raybio evaluate <sweep dir>`)."
        return Section("Downstream", [Text(text)])
    blocks: list = [Text(NOTE)]
    if cols:
        blocks.append(Table(ok[[*(a for a in axes if a in ok), *cols]]))
        for col in cols:
            stem = col.removeprefix("downstream/").replace("/", "_")
            for x in [*axes, "train_flops_cum"]:
                if x in ok and ok[x].notna().any():
                    blocks.append(Figure(f"downstream_{stem}_vs_{x}.png", plot_score(ok, x, col)))
    if summary_bytes is not None:
        blocks.append(Table(pd.read_csv(io.BytesIO(summary_bytes)), caption="`raybio evaluate` summary"))
    return Section("Downstream", blocks)
