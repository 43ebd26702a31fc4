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
from raybio.analysis.report_tables import ReportTables, has_probe
from raybio.tune.record import SweepRecord

EMA_HALF_LIFE_REPORTS = 3  # smoothing of the training-loss curves, in reports
Z95 = 1.96


def log_axis(ax, axis: str = "x", unit: str = "") -> None:
    """Log scale with labels at 1-2-5 steps in engineering notation (2 G, 5 G), none on minor ticks."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=12))
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
        figs.append(Figure("pareto.png", plot_pareto(rows, tables.front), "Pareto front"))
    titles = dict(zip(record.results["trial_id"], record.results["trial_config"], strict=True))
    for trial_id, trial in record.anatomy.items():
        title = titles.get(trial_id, trial_id)
        figs.append(Figure(f"anatomy_{trial_id}.png", plot_anatomy(trial, title), f"router anatomy: {title}"))
    return {f.name: f for f in figs}


def plot_loss_curves(hist: pd.DataFrame, tables: ReportTables) -> bytes:
    """Validation loss vs cumulative training compute per config (mean over seeds), train loss faint."""
    fig, ax = plt.subplots(figsize=(8, 4.6))
    hist = hist.assign(config=hist["trial_id"].map(tables.labels))
    at_eval = hist[(hist["step"] == hist["val_step"]) & (hist["train_flops_cum"] > 0)]
    for i, (label, h) in enumerate(hist.groupby("config", sort=False)):
        color = f"C{i % 10}"
        for _, trial in h.groupby("trial_id"):
            t = trial.sort_values("step")
            ax.plot(t["train_flops_cum"], t["loss"].ewm(halflife=EMA_HALF_LIFE_REPORTS).mean(), color=color, lw=0.8,
                    alpha=0.3)  # fmt: skip
        v = at_eval[at_eval["trial_id"].isin(h["trial_id"])].groupby("step")
        mean, sd, n = v["val_loss"].mean(), v["val_loss"].std(), v["val_loss"].count()
        err = Z95 * (sd / np.sqrt(n)).where(n > 1, 0.0)
        ax.errorbar(v["train_flops_cum"].mean(), mean, yerr=err, fmt="o-", color=color, ms=4, lw=1.4, capsize=3,
                    label=label)  # fmt: skip
    if tables.rows["val_unigram_loss"].notna().any():
        unigram = tables.rows["val_unigram_loss"].mean()
        ax.axhline(unigram, color="0.4", ls=":", lw=1, label="unigram loss, same positions")
    log_axis(ax, "x", "FLOP")
    ax.set(xlabel="cumulative training compute", ylabel="loss (nats)",
           title="validation loss (headline metric) vs compute; bars: 95 % CI over seeds")  # fmt: skip
    ax.plot([], [], color="0.5", lw=0.8, alpha=0.5, label="train loss (80/10/10), EMA")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(alpha=0.3, which="both")
    return png(fig)


def plot_per_config(rows: pd.DataFrame, values, errors, ylabel: str, title: str, from_zero: bool) -> bytes:
    """One dot per config in design order with its 95 % error bar."""
    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(rows) + 2), 3.6))
    x = np.arange(len(rows))
    ax.errorbar(x, values, yerr=errors, fmt="o", ms=6, capsize=4, color="C0")
    ax.set_xticks(x)
    ax.set_xticklabels(rows["config"], rotation=30 if len(rows) > 3 else 0, ha="right" if len(rows) > 3 else "center",
                       fontsize=8)  # fmt: skip
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
    return plot_per_config(rows, m, np.nan_to_num(err), "tokens/s per worker (probe, alone)",
                           "throughput, 95 % CI over probe rounds", from_zero=True)  # fmt: skip


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
