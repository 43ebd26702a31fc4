"""`raybio report <sweep dir>`: one self-contained HTML (and Markdown) report per sweep, PNGs beside it.

Reads sweep.json, results.parquet, history.parquet and (when present) anatomy.json from a
local directory or an s3:// URI, and writes report.html, report.md and the plots to
<sweep>/report/. Throughput and memory come from the isolated probe (`probe/*` columns)
when the sweep ran it; in-training figures are labelled with the concurrency they ran under.
The scaling-law fits and the compute-optimal pick (raybio/analysis/study_fits.py) get their
own section, and their numbers and plot also go to TensorBoard (`<sweep>/tensorboard/scaling`).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import EngFormatter, LogLocator, MaxNLocator, NullFormatter

from raybio.analysis.downstream import add_section as add_downstream_section
from raybio.analysis.seeds import config_axes, over_seeds, seed_lines
from raybio.analysis.study_fits import StudyFits, fit_study
from raybio.data import storage

EMA_HALF_LIFE_REPORTS = 3  # smoothing of the training-loss curves, in reports
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
LINESTYLES = ["-", "--", "-.", ":"]
# Router metric -> (how layers combine into one number per model, column header).
ROUTER_SUMMARY = {
    "load_cv": ("mean", "router load CV (mean)"),
    "max_over_mean_load": ("max", "router max/mean load (max)"),
    "dead_experts": ("sum", "dead experts (all layers)"),
    "routing_entropy": ("mean", "routing entropy (mean)"),
}


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


def _log_axis(ax, axis: str = "x", unit: str = "") -> None:
    """Log scale with labels at 1-2-5 steps in engineering notation (2 G, 5 G), none on minor ticks."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=12))
    target.set_major_formatter(EngFormatter(unit=unit, places=0, sep=" "))
    target.set_minor_formatter(NullFormatter())


def _style(i: int) -> dict:
    return {"color": f"C{i % 10}", "marker": MARKERS[i % len(MARKERS)], "linestyle": LINESTYLES[(i // 10) % 4]}


def throughput_column(df: pd.DataFrame) -> tuple[str, str]:
    """(column, axis label) of the tokens/s to compare trials by: the probe's when it ran."""
    if "probe/tokens_per_s" in df and df["probe/tokens_per_s"].notna().any():
        return "probe/tokens_per_s", "tokens/s per worker (probe, alone)"
    return "tokens_per_s", "tokens/s (in training, trials concurrent)"


def plot_loss_vs_flops(history: pd.DataFrame, axes: list[str]) -> bytes:
    """Validation loss (markers) and EMA-smoothed training loss (thin line) vs cumulative training FLOPs."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for i, (_, h) in enumerate(history.groupby("trial_id", sort=False)):
        h = h.sort_values("step")
        st = _style(i)
        smooth = h["loss"].ewm(halflife=EMA_HALF_LIFE_REPORTS).mean()
        ax.plot(h["train_flops_cum"], smooth, color=st["color"], lw=1, alpha=0.45, linestyle=st["linestyle"])
        val = h[(h["step"] == h["val_step"]) & (h["train_flops_cum"] > 0)]
        ax.plot(val["train_flops_cum"], val["val_loss"], ms=5, lw=1.6, label=_label(h.iloc[0], axes), **st)
    _log_axis(ax, "x", "FLOP")
    ax.set(xlabel="cumulative training compute", ylabel="loss (nats)", title="validation loss vs compute")
    ax.plot([], [], color="gray", lw=1, alpha=0.45, label="train loss, EMA-smoothed")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(alpha=0.3, which="both")
    return _png(fig)


def plot_vs_axis(df: pd.DataFrame, axis: str, col: str, ylabel: str, scale: float = 1.0, from_zero=False) -> bytes:
    ok = df[df["status"] == "OK"].sort_values(axis)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    if pd.api.types.is_numeric_dtype(ok[axis]):
        # Every trial a dot (several per value with seeds or a second axis), the line through the means.
        mean = ok.groupby(axis)[col].mean()
        ax.plot(ok[axis], ok[col] * scale, "o", alpha=0.6 if len(mean) < len(ok) else 1.0)
        ax.plot(mean.index, mean * scale, "-", color="C0", label="mean" if len(mean) < len(ok) else None)
        if len(mean) < len(ok):
            ax.legend(fontsize=7)
        if from_zero:
            ax.set_ylim(bottom=0)
        values = sorted(ok[axis].unique())
        if len(values) <= 12:
            ax.set_xticks(values)
            ax.set_xticklabels([f"{v:g}" for v in values])
    elif from_zero:
        ax.bar(ok[axis].astype(str), ok[col] * scale)
        ax.tick_params(axis="x", rotation=30)
    else:  # losses differ in the 3rd decimal: bars from zero would hide them, dots on a tight axis do not
        ax.plot(ok[axis].astype(str), ok[col] * scale, "o")
        ax.tick_params(axis="x", rotation=30)
    ax.set(xlabel=axis, ylabel=ylabel, title=f"{ylabel} vs {axis}")
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_pareto(df: pd.DataFrame, front: pd.Series, x: str, y: str, axes: list[str], xlabel: str) -> bytes:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(df[x], df[y], c=np.where(front, "tab:red", "tab:gray"))
    f = df[front].sort_values(x)
    ax.plot(f[x], f[y], "r--", lw=1)
    for _, row in df.iterrows():
        ax.annotate(_label(row, axes), (row[x], row[y]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.xaxis.set_major_formatter(EngFormatter(sep=" "))
    ax.set(xlabel=xlabel, ylabel=y, title="Pareto front (red)")
    ax.grid(alpha=0.3)
    return _png(fig)


def _has_js(trial: dict) -> bool:
    return any(v is not None and not math.isnan(v) for v in trial["js_by_layer"].values())


def plot_anatomy(trial: dict, title: str) -> bytes:
    """Usage heatmap (layer × expert, integer ticks, one labelled colour bar) and, with ≥ 2 tags, the JS panel."""
    from raybio.analysis.anatomy import usage_heatmap

    js = _has_js(trial)
    fig, axs = plt.subplots(1, 2 if js else 1, figsize=(10 if js else 5.5, 3.4), squeeze=False)
    a1 = axs[0, 0]
    heat = usage_heatmap(trial["usage"])
    im = a1.imshow(heat, aspect="auto", cmap="viridis", vmin=0)
    a1.set_xticks(range(0, heat.shape[1], max(1, heat.shape[1] // 16)))  # ≤ 16 labels: 32+ experts stay legible
    a1.set_yticks(range(heat.shape[0]))
    a1.set(xlabel="expert", ylabel="layer", title="expert usage")
    fig.colorbar(im, ax=a1, label="routed slots (busiest expert = 1)")
    if js:
        a2 = axs[0, 1]
        layers = sorted(trial["js_by_layer"], key=int)
        a2.plot([int(k) for k in layers], [trial["init_js_by_layer"][k] for k in layers], "o--", label="init")
        a2.plot([int(k) for k in layers], [trial["js_by_layer"][k] for k in layers], "s-", label="trained")
        a2.xaxis.set_major_locator(MaxNLocator(integer=True))
        a2.set(xlabel="layer", ylabel="mean pairwise JS (nats)", title="routing divergence between tags")
        a2.legend()
        a2.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    return _png(fig)


def plot_compute_fit(fits: StudyFits, points: pd.DataFrame) -> bytes:
    """Validation points, the compute frontier, the fitted L(C) with its band out to the target compute."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    ax.scatter(points["train_flops_cum"], points["val_loss"], s=12, color="0.7", label="all validation points")
    fr = fits.frontier
    ax.scatter(fr["train_flops_cum"], fr["val_loss"], s=24, color="C0", zorder=3, label="compute frontier (fitted)")
    target = fits.pick.target_flops
    lo_c, hi_c = float(points["train_flops_cum"].min()), float(points["train_flops_cum"].max())
    c = np.geomspace(lo_c, max(target, hi_c), 200)
    fit = fits.compute
    ax.plot(c, fit.predict(c), color="C1", label=f"fit: α = {fit.params['alpha']:.3g}, E = {fit.params['E']:.3g}")
    band = fit.band(c)
    if band is not None:
        ax.fill_between(c, band[0], band[1], color="C1", alpha=0.2, label="95 % bootstrap band")
    ax.axvspan(hi_c, c[-1], color="0.9", zorder=0, label="extrapolation")
    if fits.pick.best:
        b = fits.pick.best
        err = None if b.ci is None else [[b.loss - b.ci[0]], [b.ci[1] - b.loss]]
        ax.errorbar([target], [b.loss], yerr=err, fmt="*", ms=12, color="C3", label=f"pick: {b.label}")
    _log_axis(ax, "x", "FLOP")
    ax.set(xlabel="cumulative training compute", ylabel="validation loss (nats)", title=fit.law)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(alpha=0.3, which="both")
    return _png(fig)


def plot_routed_fit(fits: StudyFits, ok: pd.DataFrame, experts: pd.Series) -> bytes:
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.scatter(experts, ok["val_loss"], color="C0", zorder=3, label="trials (final val loss)")
    e = np.geomspace(experts.min(), experts.max() * 4, 100)
    # One curve per model size; at a single size (a and c not identifiable) one curve at that size.
    sizes = [ok["params_active"].median()]
    if fits.routed.params["a"] is not None:
        sizes = sorted(ok["params_active"].unique())
    for n in sizes:
        ax.plot(e, fits.routed.predict(np.stack([np.full_like(e, n), e], 1)), label=f"fit, N = {n / 1e6:.2f} M")
    ax.axvspan(experts.max(), e[-1], color="0.9", zorder=0, label="extrapolation")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(EngFormatter(places=0, sep=""))
    ax.set(xlabel="experts Ê", ylabel="validation loss (nats)", title="routed law (Clark et al. 2022)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    return _png(fig)


def plot_chinchilla_fit(fits: StudyFits, ok: pd.DataFrame) -> bytes:
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    tokens = ok["train_flops_cum"] / ok["flops_per_token_train"]
    pred = fits.chinchilla.predict(np.stack([ok["params_active"], tokens], 1))
    ax.scatter(ok["val_loss"], pred)
    lims = [min(ok["val_loss"].min(), pred.min()), max(ok["val_loss"].max(), pred.max())]
    ax.plot(lims, lims, "k--", lw=1)
    ax.set(xlabel="measured val loss", ylabel="fitted L(N, D)", title="Chinchilla fit")
    ax.grid(alpha=0.3)
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
    tput, tput_label = throughput_column(df)
    memory = "probe/peak_memory_MiB" if tput.startswith("probe/") else "peak_memory_bytes"

    images: dict[str, bytes] = {}
    if not history.empty:
        images["loss_vs_flops.png"] = plot_loss_vs_flops(history, axes)
    # Seeds are replicates (each plot shows them at their config's x); an axis held at one value has no curve.
    for axis in [a for a in config_axes(axes) if ok[a].nunique() > 1]:
        images[f"val_loss_vs_{axis}.png"] = plot_vs_axis(df, axis, "val_loss", "final val loss (nats)")
        images[f"tokens_per_s_vs_{axis}.png"] = plot_vs_axis(df, axis, tput, tput_label, from_zero=True)
        scale = 1.0 if memory.startswith("probe/") else 2**-20
        images[f"peak_memory_vs_{axis}.png"] = plot_vs_axis(df, axis, memory, "peak memory (MiB)", scale, True)
    objectives = _objectives(meta, tput)
    front = pareto_front(ok, objectives) if len(ok) else pd.Series(dtype=bool)
    if len(ok):
        y, x = list(objectives)[:2]
        images["pareto.png"] = plot_pareto(ok, front, x, y, axes, tput_label if x == tput else x)
    fits = fit_study(df, history, axes, meta.get("target_flops")) if len(ok) else None
    if fits and fits.compute:
        from raybio.analysis.study_fits import validation_points

        images["scaling_compute.png"] = plot_compute_fit(fits, validation_points(history))
    if fits and fits.routed:
        from raybio.analysis.study_fits import experts_of

        images["scaling_routed.png"] = plot_routed_fit(fits, ok, experts_of(ok, axes))
    if fits and fits.chinchilla:
        images["scaling_chinchilla.png"] = plot_chinchilla_fit(fits, ok)
    for trial_id, trial in anatomy.items():
        images[f"anatomy_{trial_id}.png"] = plot_anatomy(trial, _label(pd.Series(trial["params"]), axes))

    out_dir = storage.join(sweep_uri, "report")
    for name, data in images.items():
        storage.write_bytes_atomic(storage.join(out_dir, name), data)
    md, html_doc = _render(meta, df, ok, front, objectives, anatomy, images, axes, fits)
    md, html_doc = add_downstream_section(md, html_doc, df, axes, sweep_uri, out_dir)
    storage.write_bytes_atomic(storage.join(out_dir, "report.md"), md.encode())
    storage.write_bytes_atomic(storage.join(out_dir, "report.html"), html_doc.encode())
    if fits and not storage.is_remote(sweep_uri):
        write_scaling_tensorboard(fits, images, storage.join(sweep_uri, "tensorboard", "scaling"))
    return {"html": storage.join(out_dir, "report.html"), "markdown": storage.join(out_dir, "report.md")}


def _objectives(meta: dict, tput: str) -> dict[str, str]:
    metric, mode = meta.get("metric", "val_loss"), meta.get("mode", "min")
    if isinstance(metric, list) and len(metric) >= 2:
        objectives = dict(zip(metric, mode, strict=True))
        # The searcher had to use in-training tokens/s; the front is drawn on the comparable figure.
        return {(tput if c == "tokens_per_s" else c): m for c, m in objectives.items()}
    return {"val_loss": "min", tput: "max"}


# ------------------------------------------------------------------------------------ tables


def _k(v):
    return f"{v / 1e3:,.2f}"


# (source column, header, formatter): the results table, in human units.
TABLE = [
    ("val_loss", "val loss", lambda v: f"{v:.4f}"),
    ("val_loss_mask_only", "val loss (mask only)", lambda v: f"{v:.4f}"),
    ("probe/tokens_per_s", "probe k tokens/s", _k),
    ("probe/tokens_per_s_spread", "probe spread", lambda v: f"{v:.0%}"),
    ("probe/step_time_s", "probe step ms", lambda v: f"{v * 1e3:.1f}"),
    ("probe/peak_memory_MiB", "probe peak MiB", lambda v: f"{v:,.0f}"),
    ("tokens_per_s", "in-training k tokens/s", _k),
    ("load_avg_1m", "load avg", lambda v: f"{v:.1f}"),
    ("peak_memory_bytes", "in-training peak MiB", lambda v: f"{v / 2**20:,.0f}"),
    ("mfu", "MFU", lambda v: f"{v:.1%}"),
    ("params_total", "params M", lambda v: f"{v / 1e6:.2f}"),
    ("params_active", "active params M", lambda v: f"{v / 1e6:.2f}"),
    ("flops_per_token_train", "train MFLOPs/token", lambda v: f"{v / 1e6:.2f}"),
    ("train_flops_cum", "training GFLOPs", lambda v: f"{v / 1e9:,.1f}"),
]


def results_table(df: pd.DataFrame, axes: list[str], front: pd.Series, concurrency: int | None) -> pd.DataFrame:
    """Rounded, human-unit columns; columns empty in every row are left out; router metrics per model."""
    out = pd.DataFrame({a: df[a] for a in axes} | {"status": df["status"]})
    for col, header, fmt in TABLE:
        if col in df and df[col].notna().any():
            if col == "tokens_per_s" and concurrency:
                header = f"in-training k tokens/s ({concurrency} concurrent)"
            out[header] = [fmt(v) if pd.notna(v) else "-" for v in df[col]]
    router = router_summary(df)
    for col in router:
        out[col] = [f"{v:.3g}" if pd.notna(v) else "-" for v in router[col]]
    out["pareto"] = ["yes" if front.get(i, False) else "" for i in df.index]
    return out


def router_summary(df: pd.DataFrame) -> pd.DataFrame:
    """One number per model for each router metric, over its layers (mean CV, max load, total dead)."""
    out = pd.DataFrame(index=df.index)
    for metric, (how, header) in ROUTER_SUMMARY.items():
        cols = [c for c in df if c.startswith("router/") and c.endswith(f"/{metric}")]
        if cols and df[cols].notna().any().any():
            out[header] = getattr(df[cols], how)(axis=1, skipna=True).where(df[cols].notna().any(axis=1))
    return out


def router_details(df: pd.DataFrame, axes: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """(trial label, layer × metric table) for every trial with router metrics."""
    out = []
    for _, row in df.iterrows():
        cols = {c: row[c] for c in df if c.startswith("router/") and pd.notna(row[c])}
        if not cols:
            continue
        rows: dict[str, dict] = {}
        for c, v in cols.items():
            _, layer, metric = c.split("/", 2)
            if not metric.startswith("tokens_e"):
                rows.setdefault(layer.removeprefix("layer"), {})[metric] = round(float(v), 4)
        table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("layer").reset_index()
        out.append((_label(row, axes), table))
    return out


def _anatomy_rows(anatomy: dict, axes: list[str]) -> pd.DataFrame:
    rows = []
    for trial_id, t in anatomy.items():
        row = {**{a: t["params"].get(a) for a in axes}, "trial_id": trial_id}
        if _has_js(t):
            row |= {
                "JS init": f"{t['init_js_mean']:.4f}",
                "JS trained": f"{t['js_mean']:.4f}",
                "JS change": f"{t['js_change']:+.4f}",
            }
        row["dead experts"] = sum(t["dead_experts_by_layer"].values())
        rows.append(row)
    return pd.DataFrame(rows)


def _ci_text(ci, value) -> str:
    if value is None:
        return "-"
    return "n/a (too few points)" if ci is None else f"[{ci[0]:.3g}, {ci[1]:.3g}]"


def scaling_tables(fits: StudyFits) -> list[tuple[str, pd.DataFrame, str]]:
    """(title, parameter table, hold-out sentence) per fitted law."""
    out = []
    for name, fit in (("loss vs compute", fits.compute), ("Chinchilla", fits.chinchilla), ("routed", fits.routed)):
        if fit is None:
            continue
        rows = [
            {
                "parameter": k,
                "value": "not identifiable" if v is None else f"{v:.4g}",
                "95 % CI": _ci_text(fit.ci[k], v),
            }
            for k, v in fit.params.items()
            if not (v is None and fit.ci[k] is None and name != "routed")
        ]
        h = fit.holdout
        if h is None:
            hold = "Hold-out: too few points to refit without the largest trial."
        else:
            pairs = "; ".join(
                f"predicted {p:.4f} vs measured {a:.4f}" for p, a in zip(h.predicted, h.actual, strict=True)
            )
            hold = (
                f"Hold-out (refit without the {len(h.actual)} largest point(s), which it then predicts): {pairs}; "
                f"relative error {h.max_rel_error:.2%}."
            )
        out.append((f"{name}: {fit.law} ({fit.n_points} points, RMSE {fit.rmse:.4f})", pd.DataFrame(rows), hold))
    return out


def pick_text(fits: StudyFits) -> str:
    p = fits.pick
    head = f"At a target of {p.target_flops:.3g} training FLOPs ({p.extrapolation:.1f}× the largest trial's compute)"
    if p.best is None:
        return f"{head}: no pick (see the caveat below)."
    b = p.best
    ci = "" if b.ci is None else f" (95 % CI {b.ci[0]:.4f}–{b.ci[1]:.4f})"
    text = f"{head}, the compute-optimal choice is **{b.label}**, predicted validation loss {b.loss:.4f}{ci}."
    if p.chinchilla_n_opt:
        text += f" The Chinchilla fit puts the optimal model at {p.chinchilla_n_opt / 1e6:.3g} M active parameters."
    return text


def write_scaling_tensorboard(fits: StudyFits, images: dict[str, bytes], logdir: str) -> None:
    """Fitted parameters as scalars, the fits as text, and the fit plots as images."""
    import matplotlib.image as mpimg
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(logdir) as w:
        for name, fit in (("compute", fits.compute), ("chinchilla", fits.chinchilla), ("routed", fits.routed)):
            if fit is None:
                continue
            for k, v in fit.params.items():
                if v is not None:
                    w.add_scalar(f"scaling/{name}/{k}", float(v), 0)
            if fit.holdout:
                w.add_scalar(f"scaling/{name}/holdout_rel_error", fit.holdout.max_rel_error, 0)
        if fits.pick.best:
            w.add_scalar("scaling/pick/predicted_loss", fits.pick.best.loss, 0)
        w.add_text(
            "scaling/pick", pick_text(fits) + (f"\n\n**Caveat:** {fits.pick.caveat}" if fits.pick.caveat else "")
        )
        for name, data in images.items():
            if name.startswith("scaling_"):
                w.add_image(f"scaling/{name.removesuffix('.png')}", mpimg.imread(io.BytesIO(data)), dataformats="HWC")


def _render(meta, df, ok, front, objectives, anatomy, images, axes, fits) -> tuple[str, str]:
    """Markdown (PNG links) and HTML (PNG embedded) of the same sections."""
    table = results_table(df, axes, front, meta.get("concurrent_trials"))
    study = [
        f"**Question:** {meta.get('question') or '-'}",
        f"**Swept:** {', '.join(f'{a} ∈ {v}' for a, v in meta['axes'].items())} ({meta['search']} search, "
        f"{len(df)} trials, {len(ok)} finished)",
        f"**Budget:** {meta.get('budget', '-')}",
        f"**Run on:** {meta.get('machine', 'not recorded')}; trials' wall time {meta.get('wall_time_s', '?')} s "
        "(before the probe and analysis)",
        f"**Base model:** pattern {meta['base']['model']['pattern']}, d_model {meta['base']['model']['d_model']}, "
        f"{meta['base']['model']['n_layers']} layers, objective {meta['base']['model']['objective']}",
    ]
    if len(ok) and "unigram_entropy_nats" in ok:
        study.append(
            f"**References:** unigram entropy {ok['unigram_entropy_nats'].iloc[0]:.4f} nats; "
            f"untrained val loss {ok['init_val_loss'].min():.4f} nats"
        )
    tput = throughput_column(df)[0]
    conditions = (
        "Throughput and memory: the **probe** timed each distinct config alone, one at a time on one training "
        "worker's resources, interleaved over rounds (median; spread = (max − min) / median). "
        if tput.startswith("probe/")
        else "Throughput and memory were measured **during training** only (probe off): "
    )
    conditions += (
        f"In-training figures ran {meta.get('concurrent_trials', '?')} trial(s) at a time on shared hardware "
        "(load average in the table)" + (": compare trials by the probe columns." if tput.startswith("probe/") else ".")
    )
    if meta.get("utilisation_line"):
        conditions += f" Sweep {meta['utilisation_line'].removeprefix('sweep ')}."
    pareto_text = (
        "Objectives: " + ", ".join(f"{m} {c}" for c, m in objectives.items()) + f". {int(front.sum())} trial(s) "
        "on the front (marked *pareto* in the table)."
    )
    curves = [n for n in images if not n.startswith(("pareto", "anatomy_", "scaling_"))]
    anatomy_table = _anatomy_rows(anatomy, axes)
    anatomy_text = (
        "Per-layer expert usage for inputs grouped by tag (modality, or source record), and the mean pairwise "
        "Jensen–Shannon divergence between tags' usage distributions, at init and after training."
        if anatomy
        else "No MoE trials in this sweep: nothing to route."
    )
    if anatomy and not any(_has_js(t) for t in anatomy.values()):
        anatomy_text += (
            " The divergence panel is absent: every input of this corpus carries the same tag, so there is no "
            "pair of routing distributions to compare (use a multi-record or multi-omic corpus)."
        )
    details = router_details(df, axes)
    seeds = over_seeds(df, axes)
    seeds_text = (
        "Over training seeds (the seed is a replicate, not a design choice; gaps are paired: the same seed's "
        "trials subtracted): " + "; ".join(seed_lines(seeds)) + "."
        if seeds is not None
        else ""
    )
    answer = [pick_text(fits)] if fits else ["No finished trials: no answer."]
    if fits and fits.pick.caveat:
        answer.append(f"**Caveat:** {fits.pick.caveat}")
    if fits and fits.pick.candidates:
        cand = pd.DataFrame(
            [
                {
                    "config": c.label,
                    "predicted val loss": f"{c.loss:.4f}",
                    "95 % CI": "n/a" if c.ci is None else f"{c.ci[0]:.4f}–{c.ci[1]:.4f}",
                }
                for c in fits.pick.candidates
            ]
        )
    else:
        cand = None
    scaling = scaling_tables(fits) if fits else []
    notes = fits.notes if fits else []
    command = meta.get("command", "")

    md = [f"# raybio sweep report: {meta['name']}", ""]
    md += ["## Study", "", *[f"- {s}" for s in study], ""]
    md += ["## Answer", "", *[f"{a}\n" for a in answer]]
    if cand is not None:
        md += [cand.to_markdown(index=False), ""]
    md += ["## Results", "", conditions, "", table.to_markdown(index=False), ""]
    if seeds_text:
        md += [seeds_text, ""]
    md += ["## Pareto front", "", pareto_text, "", "![pareto](pareto.png)" if "pareto.png" in images else "", ""]
    md += ["## Loss vs compute and efficiency curves", "", *[f"![{n}]({n})" for n in curves], ""]
    md += ["## Scaling fits", ""]
    for title, params, hold in scaling:
        md += [f"### {title}", "", params.to_markdown(index=False), "", hold, ""]
    md += [f"![{n}]({n})" for n in images if n.startswith("scaling_")]
    md += ["", *[f"- not fitted: {n}" for n in notes], ""]
    md += ["## Router anatomy", "", anatomy_text, ""]
    if anatomy:
        md += [anatomy_table.to_markdown(index=False), ""]
        md += [f"![{n}]({n})" for n in images if n.startswith("anatomy_")]
    md += ["", "## Reproduce", "", "```bash", command, "```", ""]

    def img(name: str) -> str:
        return f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(images[name]).decode()}">'

    def para(text: str) -> str:
        return "<p>" + html.escape(text).replace("**", "") + "</p>"

    h = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>raybio report: {html.escape(meta['name'])}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:11px;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;"
        "text-align:right}th{background:#f3f3f3}img{max-width:100%}.caveat{background:#fff4d6;border-left:4px "
        "solid #e0a000;padding:.4em .8em}.table-wrap{overflow-x:auto}details{margin:.3em 0}"
        "pre{white-space:pre-wrap;word-break:break-all;background:#f6f6f6;padding:.5em}</style></head><body>",
        f"<h1>raybio sweep report: {html.escape(meta['name'])}</h1>",
        "<h2>Study</h2><ul>" + "".join(f"<li>{html.escape(s).replace('**', '')}</li>" for s in study) + "</ul>",
        "<h2>Answer</h2>",
        para(answer[0]),
    ]
    h += [f"<p class='caveat'>{html.escape(a).replace('**', '')}</p>" for a in answer[1:]]
    if cand is not None:
        h.append(cand.to_html(index=False))
    h += ["<h2>Results</h2>", para(conditions), "<div class='table-wrap'>" + table.to_html(index=False) + "</div>"]
    if seeds_text:
        h.append(para(seeds_text))
    for label, t in details:
        h.append(f"<details><summary>router metrics per layer: {html.escape(label)}</summary>")
        h.append(t.to_html(index=False) + "</details>")
    h += [f"<h2>Pareto front</h2>{para(pareto_text)}", img("pareto.png") if "pareto.png" in images else ""]
    h += ["<h2>Loss vs compute and efficiency curves</h2>" + "".join(img(n) for n in curves)]
    h.append("<h2>Scaling fits</h2>")
    for title, params, hold in scaling:
        h += [f"<h3>{html.escape(title)}</h3>", params.to_html(index=False), para(hold)]
    h += [img(n) for n in images if n.startswith("scaling_")]
    if notes:
        h.append("<ul>" + "".join(f"<li>not fitted: {html.escape(n)}</li>" for n in notes) + "</ul>")
    h.append(f"<h2>Router anatomy</h2>{para(anatomy_text)}")
    if anatomy:
        h.append(anatomy_table.to_html(index=False) + "".join(img(n) for n in images if n.startswith("anatomy_")))
    h += [f"<h2>Reproduce</h2><pre>{html.escape(command)}</pre>", "</body></html>"]
    return "\n".join(md), "\n".join(h)
