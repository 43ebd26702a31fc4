"""`raybio report <sweep dir>`: one self-contained HTML (and Markdown) report per sweep, PNGs beside it.

Reads sweep.json, results.parquet, history.parquet and (when present) anatomy.json from a
local directory or an s3:// URI, and writes report.html, report.md and the plots to
<sweep>/report/.
"""

from __future__ import annotations

import base64
import html
import io
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from raybio.analysis.downstream import add_section as add_downstream_section
from raybio.data import storage

TABLE_COLUMNS = [
    "val_loss",
    "val_loss_mask_only",
    "tokens_per_s",
    "peak_memory_bytes",
    "params_total",
    "params_active",
    "flops_per_token_train",
    "train_flops_cum",
]


def pareto_front(df: pd.DataFrame, objectives: dict[str, str]) -> pd.Series:
    """True for rows no other row beats on every objective (`{"val_loss": "min", "tokens_per_s": "max"}`)."""
    vals = np.stack([df[c].to_numpy(float) * (1 if m == "min" else -1) for c, m in objectives.items()], axis=1)
    front = []
    for i in range(len(vals)):
        dominated = np.any(np.all(vals <= vals[i], axis=1) & np.any(vals < vals[i], axis=1))
        front.append(not dominated)
    return pd.Series(front, index=df.index)


def _read_bytes(uri: str) -> bytes | None:
    fs, path = storage.filesystem(uri)
    if fs.get_file_info(path).type.name == "NotFound":
        return None
    with fs.open_input_stream(path) as f:
        return f.read()


def _read_parquet(uri: str) -> pd.DataFrame:
    data = _read_bytes(uri)
    return pd.read_parquet(io.BytesIO(data)) if data else pd.DataFrame()


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _label(row: pd.Series, axes: list[str]) -> str:
    return ", ".join(f"{a}={row[a]}" for a in axes)


def plot_loss_vs_flops(history: pd.DataFrame, axes: list[str]) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for _, h in history.groupby("trial_id", sort=False):
        h = h.sort_values("step")
        label = _label(h.iloc[0], axes)
        ax.plot(h["train_flops_cum"], h["loss"], label=label, alpha=0.8)
    ax.set(xscale="log", xlabel="cumulative training FLOPs", ylabel="train loss (nats)", title="loss vs compute")
    ax.legend(fontsize=7)
    return _png(fig)


def plot_vs_axis(df: pd.DataFrame, axis: str, col: str, ylabel: str, scale: float = 1.0) -> bytes:
    ok = df[df["status"] == "OK"].sort_values(axis)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    x = ok[axis].astype(str) if not pd.api.types.is_numeric_dtype(ok[axis]) else ok[axis]
    if pd.api.types.is_numeric_dtype(ok[axis]):
        ax.plot(x, ok[col] * scale, "o-")
    else:
        ax.bar(x, ok[col] * scale)
        ax.tick_params(axis="x", rotation=30)
    ax.set(xlabel=axis, ylabel=ylabel, title=f"{ylabel} vs {axis}")
    return _png(fig)


def plot_pareto(df: pd.DataFrame, front: pd.Series, x: str, y: str, axes: list[str]) -> bytes:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(df[x], df[y], c=np.where(front, "tab:red", "tab:gray"))
    f = df[front].sort_values(x)
    ax.plot(f[x], f[y], "r--", lw=1)
    for _, row in df.iterrows():
        ax.annotate(_label(row, axes), (row[x], row[y]), fontsize=6)
    ax.set(xlabel=x, ylabel=y, title="Pareto front (red)")
    return _png(fig)


def plot_anatomy(trial: dict, title: str) -> bytes:
    from raybio.analysis.anatomy import usage_heatmap

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
    im = a1.imshow(usage_heatmap(trial["usage"]), aspect="auto", cmap="viridis")
    a1.set(xlabel="expert", ylabel="layer", title="expert usage (share of slots)")
    fig.colorbar(im, ax=a1)
    layers = sorted(trial["js_by_layer"], key=int)
    a2.plot([int(k) for k in layers], [trial["init_js_by_layer"][k] for k in layers], "o--", label="init")
    a2.plot([int(k) for k in layers], [trial["js_by_layer"][k] for k in layers], "o-", label="trained")
    a2.set(xlabel="layer", ylabel="mean pairwise JS (nats)", title="routing divergence between tags")
    a2.legend()
    fig.suptitle(title, fontsize=9)
    return _png(fig)


def build_report(sweep_uri: str) -> dict[str, str]:
    """Write report.html, report.md and PNGs under <sweep>/report/; return their URIs."""
    meta_bytes = _read_bytes(storage.join(sweep_uri, "sweep.json"))
    if meta_bytes is None:
        raise FileNotFoundError(f"{sweep_uri} has no sweep.json: is it a finished raybio sweep directory?")
    meta = json.loads(meta_bytes)
    df = _read_parquet(storage.join(sweep_uri, "results.parquet"))
    history = _read_parquet(storage.join(sweep_uri, "history.parquet"))
    anatomy_bytes = _read_bytes(storage.join(sweep_uri, "anatomy.json"))
    anatomy = json.loads(anatomy_bytes) if anatomy_bytes else {}
    axes = list(meta["axes"])
    ok = df[df["status"] == "OK"]

    images: dict[str, bytes] = {}
    if not history.empty:
        images["loss_vs_flops.png"] = plot_loss_vs_flops(history, axes)
    for axis in axes:
        images[f"val_loss_vs_{axis}.png"] = plot_vs_axis(df, axis, "val_loss", "final val loss")
        images[f"tokens_per_s_vs_{axis}.png"] = plot_vs_axis(df, axis, "tokens_per_s", "tokens/s")
        images[f"peak_memory_vs_{axis}.png"] = plot_vs_axis(df, axis, "peak_memory_bytes", "peak memory (GiB)", 2**-30)
    objectives = _objectives(meta)
    front = pareto_front(ok, objectives) if len(ok) else pd.Series(dtype=bool)
    if len(ok):
        y, x = list(objectives)[:2]
        images["pareto.png"] = plot_pareto(ok, front, x, y, axes)
    for trial_id, trial in anatomy.items():
        images[f"anatomy_{trial_id}.png"] = plot_anatomy(trial, _label(pd.Series(trial["params"]), axes))

    out_dir = storage.join(sweep_uri, "report")
    for name, data in images.items():
        storage.write_bytes_atomic(storage.join(out_dir, name), data)
    md, html_doc = _render(meta, df, ok, front, objectives, anatomy, images, axes)
    md, html_doc = add_downstream_section(md, html_doc, df, axes, sweep_uri, out_dir)
    storage.write_bytes_atomic(storage.join(out_dir, "report.md"), md.encode())
    storage.write_bytes_atomic(storage.join(out_dir, "report.html"), html_doc.encode())
    return {"html": storage.join(out_dir, "report.html"), "markdown": storage.join(out_dir, "report.md")}


def _objectives(meta: dict) -> dict[str, str]:
    metric, mode = meta.get("metric", "val_loss"), meta.get("mode", "min")
    if isinstance(metric, list) and len(metric) >= 2:
        return dict(zip(metric, mode, strict=True))
    return {"val_loss": "min", "tokens_per_s": "max"}


def _results_table(df: pd.DataFrame, axes: list[str], front: pd.Series) -> pd.DataFrame:
    cols = [c for c in [*axes, "status", *TABLE_COLUMNS] if c in df]
    table = df[cols].copy()
    table["pareto"] = ["yes" if front.get(i, False) else "" for i in df.index]
    if "peak_memory_bytes" in table:
        table["peak_memory_bytes"] = (table["peak_memory_bytes"] / 2**20).round(0)
        table = table.rename(columns={"peak_memory_bytes": "peak_memory_MiB"})
    router_cols = [c for c in df if c.startswith("router/") and c.split("/")[-1] in ("dead_experts", "load_cv")]
    return pd.concat([table, df[router_cols]], axis=1).round(4)


def _anatomy_rows(anatomy: dict, axes: list[str]) -> pd.DataFrame:
    rows = []
    for trial_id, t in anatomy.items():
        rows.append(
            {
                **{a: t["params"].get(a) for a in axes},
                "trial_id": trial_id,
                "js_init": round(t["init_js_mean"], 5),
                "js_trained": round(t["js_mean"], 5),
                "js_change": round(t["js_change"], 5),
                "dead_experts": sum(t["dead_experts_by_layer"].values()),
            }
        )
    return pd.DataFrame(rows)


def _render(meta, df, ok, front, objectives, anatomy, images, axes) -> tuple[str, str]:
    """Markdown (PNG links) and HTML (PNG embedded) of the same sections."""
    table = _results_table(df, axes, front)
    study = [
        f"**Question:** {meta.get('question') or '-'}",
        f"**Swept:** {', '.join(f'{a} ∈ {v}' for a, v in meta['axes'].items())} ({meta['search']} search, "
        f"{len(df)} trials, {len(ok)} finished)",
        f"**Budget:** {meta.get('budget', '-')}",
        f"**Base model:** pattern {meta['base']['model']['pattern']}, d_model {meta['base']['model']['d_model']}, "
        f"{meta['base']['model']['n_layers']} layers, objective {meta['base']['model']['objective']}",
    ]
    if len(ok) and "unigram_entropy_nats" in ok:
        study.append(
            f"**References:** unigram entropy {ok['unigram_entropy_nats'].iloc[0]:.4f} nats; "
            f"untrained val loss {ok['init_val_loss'].min():.4f} nats"
        )
    pareto_text = (
        "Objectives: " + ", ".join(f"{m} {c}" for c, m in objectives.items()) + f". {int(front.sum())} trial(s) "
        "on the front (marked *pareto* in the table)."
    )
    curves = [n for n in images if not n.startswith(("pareto", "anatomy_"))]
    anatomy_table = _anatomy_rows(anatomy, axes)
    anatomy_text = (
        "Per-layer expert usage for inputs grouped by tag (modality, or source record), and the mean pairwise "
        "Jensen–Shannon divergence between tags' usage distributions, at init and after training."
        if anatomy
        else "No MoE trials in this sweep: nothing to route."
    )
    command = meta.get("command", "")

    md = [f"# raybio sweep report: {meta['name']}", ""]
    md += ["## Study", "", *[f"- {s}" for s in study], ""]
    md += ["## Results", "", table.to_markdown(index=False), ""]
    md += ["## Pareto front", "", pareto_text, "", "![pareto](pareto.png)" if "pareto.png" in images else "", ""]
    md += ["## Efficiency curves", "", *[f"![{n}]({n})" for n in curves], ""]
    md += ["## Router anatomy", "", anatomy_text, ""]
    if anatomy:
        md += [anatomy_table.to_markdown(index=False), ""]
        md += [f"![{n}]({n})" for n in images if n.startswith("anatomy_")]
    md += ["", "## Reproduce", "", "```bash", command, "```", ""]

    def img(name: str) -> str:
        return f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(images[name]).decode()}">'

    h = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>raybio report: {html.escape(meta['name'])}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
        "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}</style></head><body>",
        f"<h1>raybio sweep report: {html.escape(meta['name'])}</h1>",
        "<h2>Study</h2><ul>" + "".join(f"<li>{html.escape(s).replace('**', '')}</li>" for s in study) + "</ul>",
        "<h2>Results</h2>" + table.to_html(index=False),
        f"<h2>Pareto front</h2><p>{html.escape(pareto_text)}</p>",
        img("pareto.png") if "pareto.png" in images else "",
        "<h2>Efficiency curves</h2>" + "".join(img(n) for n in curves),
        f"<h2>Router anatomy</h2><p>{html.escape(anatomy_text)}</p>",
    ]
    if anatomy:
        h.append(anatomy_table.to_html(index=False) + "".join(img(n) for n in images if n.startswith("anatomy_")))
    h += [f"<h2>Reproduce</h2><pre>{html.escape(command)}</pre>", "</body></html>"]
    return "\n".join(md), "\n".join(h)
