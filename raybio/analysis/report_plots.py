"""The sweep report's plots: each returns PNG bytes. Configs sit on a categorical axis in design order,
as dots with error bars (never a line through categories); seeds are replicates of their config."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import EngFormatter, LogLocator, MaxNLocator, NullFormatter

from raybio.analysis.document import Figure, png
from raybio.analysis.report_tables import ReportTables, has_front, has_probe, probe_ranked
from raybio.tune.record import SweepRecord

EMA_HALF_LIFE_REPORTS = 3  # smoothing of the training-loss curves, in reports
Z95 = 1.96


def log_axis(ax, axis: str = "x", unit: str = "") -> None:
    """Log scale with labels at 1-2-5 steps in engineering notation (2 G, 5 G), 1-3 or decades only where the data
    span more decades (labels with a unit would run into each other), none on minor ticks."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    low, high = ax.get_xlim() if axis == "x" else ax.get_ylim()
    decades = np.log10(high / low) if low > 0 else 0.0
    subs = (1.0, 2.0, 5.0) if decades < 1.3 else (1.0, 3.0) if decades < 2.5 else (1.0,)
    target.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
    target.set_major_formatter(EngFormatter(unit=unit, places=0, sep=" "))
    target.set_minor_formatter(NullFormatter())


def loss_error(rows: pd.DataFrame) -> np.ndarray:
    """95 % half-widths of each config's headline loss: over seeds when it has several, else the eval SE."""
    over_seeds = rows["seed_sd"] / np.sqrt(rows["seeds"])
    return Z95 * np.where(rows["seeds"] > 1, over_seeds, rows["val_loss_se"])


def draw_figures(record: SweepRecord, tables: ReportTables) -> dict[str, Figure]:
    """Every figure of a sweep report, by file name (only those the sweep has data for)."""
    rows, figs = tables.rows, []
    if not record.history.empty:
        figs.append(Figure("loss_vs_flops.png", plot_loss_curves(record.history, tables), "validation loss vs compute"))
    if len(rows) > 1 and rows["val_unigram_loss"].notna().any():
        figs.append(Figure("learning_per_config.png", plot_learning(rows), "nats below unigram per config"))
    if len(rows) > 1 and has_probe(rows):
        figs.append(Figure("throughput_per_config.png", plot_throughput(rows), "probe tokens/s per config"))
        figs.append(Figure("memory_per_config.png", plot_memory(rows), "probe peak memory per config"))
        if has_front(rows):
            figs.append(Figure("pareto.png", plot_pareto(rows, tables.front), "Pareto front"))
    # One heatmap per config (its first seed); the anatomy table lists every trial.
    first = record.results[record.results["trial_id"].isin(record.anatomy)].drop_duplicates("config")
    for trial_id, title in zip(first["trial_id"], first["trial_config"], strict=True):
        trial = record.anatomy[trial_id]
        figs.append(Figure(f"anatomy_{trial_id}.png", plot_anatomy(trial, title), f"router anatomy: {title}"))
    return {f.name: f for f in figs}


def plot_loss_curves(hist: pd.DataFrame, tables: ReportTables) -> bytes:
    """Two panels against cumulative training compute, per config (mean over seeds): the training objective
    (80/10/10 MLM, EMA-smoothed) and the validation headline at each evaluation with 95 % bars over seeds.
    They are different quantities, so they do not share an axis."""
    hist = hist.assign(config=hist["trial_id"].map(tables.labels))
    at_eval = hist[(hist["step"] == hist["val_step"]) & (hist["train_flops_cum"] > 0)]
    curve = at_eval["step"].nunique() > 1  # validated at the end only: the per-config figure shows it
    fig, axs = plt.subplots(1, 2 if curve else 1, figsize=(11 if curve else 6.5, 4.2), squeeze=False)
    a1, a2 = axs[0, 0], axs[0, -1]
    for i, (label, h) in enumerate(hist.groupby("config", sort=False)):
        color = f"C{i % 10}"
        train = h.sort_values("step").groupby("step")
        smooth = train["loss"].mean().ewm(halflife=EMA_HALF_LIFE_REPORTS).mean()
        a1.plot(train["train_flops_cum"].mean(), smooth, color=color, lw=1.2, label=label)
        if not curve:
            continue
        v = at_eval[at_eval["trial_id"].isin(h["trial_id"])].groupby("step")
        mean, sd, n = v["val_loss"].mean(), v["val_loss"].std(), v["val_loss"].count()
        err = Z95 * (sd / np.sqrt(n)).where(n > 1, 0.0)
        a2.errorbar(v["train_flops_cum"].mean(), mean, yerr=err, fmt="o-", color=color, ms=4, lw=1.2, capsize=3,
                    label=label)  # fmt: skip
    a1.set(ylabel="training loss (80/10/10, EMA; nats)", title="training objective")
    if curve:
        if tables.rows["val_unigram_loss"].notna().any():
            unigram = tables.rows["val_unigram_loss"].mean()
            a2.axhline(unigram, color="0.4", ls=":", lw=1, label="unigram, same positions")
        a2.set(ylabel="validation loss, headline (nats)", title="validation (95 % CI over seeds)")
    for ax in axs[0]:
        log_axis(ax, "x", "FLOP")
        ax.set_xlabel("cumulative training compute")
        ax.grid(alpha=0.3, which="both")
    a2.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return png(fig)


def plot_per_config(rows: pd.DataFrame, values, errors, ylabel: str, title: str, from_zero: bool) -> bytes:
    """One dot per config in design order with its 95 % error bar."""
    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(rows) + 2), 3.6))
    x = np.arange(len(rows))
    ax.errorbar(x, values, yerr=errors, fmt="o", ms=6, capsize=4, color="C0")
    ax.set_xticks(x)
    tilt = len(rows) > 3 or rows["config"].str.len().max() > 16  # long labels run into each other level
    ax.set_xticklabels(rows["config"], rotation=30 if tilt else 0, ha="right" if tilt else "center", fontsize=8)
    if from_zero:
        upper = 0.0 if errors is None else np.nan_to_num(np.atleast_2d(errors)[-1])
        ax.set_ylim(bottom=0, top=max(float(np.nanmax(np.asarray(values, float) + upper)) * 1.15, 1e-9))
    ax.set(ylabel=ylabel, title=title)
    ax.grid(alpha=0.3, axis="y")
    return png(fig)


def plot_learning(rows: pd.DataFrame) -> bytes:
    """Nats learned beyond the unigram loss of the same positions, from zero: the scale on which a
    difference the test calls noise also looks small."""
    return plot_per_config(rows, rows["nats_below_unigram"], loss_error(rows), "nats below unigram (headline loss)",
                           "what each config learned beyond letter frequencies (95 % CI)", from_zero=True)  # fmt: skip


def plot_throughput(rows: pd.DataFrame) -> bytes:
    m, lo, hi = (rows[f"probe/tokens_per_s{s}"] for s in ("", "_low", "_high"))
    err = np.stack([m - lo, hi - m]).clip(min=0)
    title = "throughput, 95 % CI over probe rounds" if probe_ranked(rows) else "throughput (probe: no interval kept)"
    return plot_per_config(rows, m, np.nan_to_num(err), "tokens/s per worker (probe, alone)", title, from_zero=True)


def plot_memory(rows: pd.DataFrame) -> bytes:
    return plot_per_config(rows, rows["probe/peak_memory_MiB"], None, "peak memory (MiB, probe)",
                           "peak memory of one training worker", from_zero=True)  # fmt: skip


def plot_pareto(rows: pd.DataFrame, front: pd.Series) -> bytes:
    """Headline loss vs probe tokens/s per config, both with 95 % error bars; the front in red."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    m, lo, hi = (rows[f"probe/tokens_per_s{s}"] for s in ("", "_low", "_high"))
    xerr = np.nan_to_num(np.stack([m - lo, hi - m]).clip(min=0))
    colors = np.where(front, "tab:red", "tab:gray")
    for i in range(len(rows)):
        ax.errorbar(m.iloc[i], rows["val_loss"].iloc[i], xerr=xerr[:, i : i + 1], yerr=loss_error(rows)[i], fmt="o",
                    color=colors[i], capsize=3)  # fmt: skip
        ax.annotate(rows["config"].iloc[i], (m.iloc[i], rows["val_loss"].iloc[i]), fontsize=7,
                    xytext=(5, 6 if i % 2 else -10), textcoords="offset points")  # fmt: skip
    ax.xaxis.set_major_formatter(EngFormatter(sep=" "))
    ax.set(xlabel="tokens/s per worker (probe)", ylabel="validation loss (headline, nats)",
           title="Pareto front (red): no other config is both faster and lower")  # fmt: skip
    ax.grid(alpha=0.3)
    return png(fig)


def plot_anatomy(trial: dict, title: str) -> bytes:
    """Expert load relative to uniform (layer × expert; 1 = balanced) and, with ≥ 2 tags, the JS panel."""
    js = trial["divergence"]
    fig, axs = plt.subplots(1, 2 if js else 1, figsize=(11 if js else 5.5, 3.4), squeeze=False)
    a1 = axs[0, 0]
    load = np.asarray(trial["expert_load"])  # share of routed slots × E: 1 everywhere when perfectly balanced
    im = a1.imshow(load, aspect="auto", cmap="RdBu_r", vmin=0, vmax=max(2.0, float(load.max())))
    a1.set_xticks(range(0, load.shape[1], max(1, load.shape[1] // 16)))  # ≤ 16 labels: 32+ experts stay legible
    a1.set_yticks(range(load.shape[0]))
    a1.set(xlabel="expert", ylabel="layer", title="expert load (1 = uniform)")
    fig.colorbar(im, ax=a1, pad=0.02).set_label("routed slots / uniform share", fontsize=8)
    if js:
        a2 = axs[0, 1]
        layers = sorted(trial["js_by_layer"], key=int)
        xs = [int(k) for k in layers]
        a2.plot(xs, [trial["init_js_by_layer"][k] for k in layers], "o--", label="init")
        a2.plot(xs, [trial["js_by_layer"][k] for k in layers], "s-", label="trained")
        if "null_js_by_layer" in trial:
            null = [trial["null_js_by_layer"][k] for k in layers]
            a2.plot(xs, null, "x:", color="0.4", label="trained, tags permuted")
        a2.xaxis.set_major_locator(MaxNLocator(integer=True))
        a2.set(xlabel="layer", ylabel="mean pairwise JS (nats)", title="routing divergence between tags")
        a2.legend(fontsize=7)
        a2.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return png(fig)
