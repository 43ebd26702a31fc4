"""The sweep report's tables, in human units: configs over seeds, trials, claims, router metrics, anatomy."""

from __future__ import annotations

import numpy as np
import pandas as pd

from raybio.analysis.anatomy import has_divergence
from raybio.analysis.verdict import fmt_p
from raybio.tune.record import SEED_AXIS, SweepRecord, axis_label, config_axes, config_label

# Router metric -> (how layers combine into one number per model, column header).
ROUTER_SUMMARY = {
    "load_cv": ("mean", "router load CV (mean)"),
    "max_over_mean_load": ("max", "router max/mean load (max)"),
    "dead_experts": ("sum", "dead experts in training (all layers)"),
}


def design_order(record: SweepRecord, df: pd.DataFrame) -> pd.DataFrame:
    """`df` sorted in the order the study listed its axis values (design order, not alphabetical)."""
    keys = [a for a in record.axes if a in df]
    if not keys or df.empty:
        return df
    rank = {a: {str(v): i for i, v in enumerate(record.meta.axes[a])} for a in keys}
    order = df[keys].apply(lambda row: tuple(rank[a].get(str(row[a]), 1 << 30) for a in keys), axis=1)
    return df.loc[order.sort_values(kind="stable").index]


def config_rows(record: SweepRecord) -> pd.DataFrame:
    """One row per config (its seeds together), in design order: the numbers every table and plot uses."""
    ok = design_order(record, record.ok)
    keys = config_axes(record.axes)
    rows = []
    for _, group in ok.groupby(keys, sort=False) if keys else [((), ok)]:
        first = group.iloc[0]
        row = {"config": config_label(first, record.axes), "seeds": len(group)}
        row |= {a: first[a] for a in keys}
        for col in ("val_loss", "val_loss_se", "val_unigram_loss", "val_loss_corrupted", "train_flops_cum"):
            row[col] = group[col].mean() if col in group else np.nan
        row["seed_sd"] = group["val_loss"].std(ddof=1) if len(group) > 1 else np.nan
        row["nats_below_unigram"] = row["val_unigram_loss"] - row["val_loss"]
        for col in ("params_total", "params_active", "flops_per_token_train", "peak_memory_bytes"):
            row[col] = first.get(col, np.nan)
        row |= {c: first[c] for c in group if c.startswith("probe/")}
        rows.append(row)
    return pd.DataFrame(rows)


def _num(v, fmt: str) -> str:
    return "-" if v is None or pd.isna(v) else format(v, fmt)


def config_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The results table: per config, headline loss with its errors, learning beyond unigram, throughput."""
    out = pd.DataFrame({"config": rows["config"], "seeds": rows["seeds"]})
    out["val loss (headline)"] = [_num(v, ".4f") for v in rows["val_loss"]]
    out["± eval SE"] = [_num(v, ".4f") for v in rows["val_loss_se"]]
    out["seed SD"] = [_num(v, ".4f") for v in rows["seed_sd"]]
    out["nats below unigram"] = [_num(v, ".4f") for v in rows["nats_below_unigram"]]
    if rows["val_loss_corrupted"].notna().any():
        out["80/10/10 loss (secondary)"] = [_num(v, ".4f") for v in rows["val_loss_corrupted"]]
    if "probe/tokens_per_s" in rows and rows["probe/tokens_per_s"].notna().any():
        out["probe k tokens/s [95 % CI]"] = [
            f"{m / 1e3:.2f} [{lo / 1e3:.2f}, {hi / 1e3:.2f}]" if pd.notna(lo) else _num(m / 1e3, ".2f")
            for m, lo, hi in rows[["probe/tokens_per_s", "probe/tokens_per_s_low", "probe/tokens_per_s_high"]].values
        ]
        out["probe rank (ties share)"] = [_num(v, ".0f") if v else "not ranked" for v in rows["probe/tie_group"]]
        out["probe peak MiB"] = [_num(v, ",.0f") for v in rows["probe/peak_memory_MiB"]]
    out["params M (active)"] = [
        f"{t / 1e6:.2f} ({a / 1e6:.2f})" for t, a in rows[["params_total", "params_active"]].values
    ]
    out["train MFLOPs/token"] = [_num(v / 1e6, ".2f") for v in rows["flops_per_token_train"]]
    return out


# (source column, header, formatter) of the per-trial table (folded in the HTML report).
TRIAL_COLUMNS = [
    ("val_loss", "val loss", ".4f"),
    ("val_loss_se", "eval SE", ".4f"),
    ("val_unigram_loss", "unigram loss, same positions", ".4f"),
    ("val_loss_corrupted", "80/10/10 loss", ".4f"),
    ("init_val_loss", "untrained val loss", ".4f"),
    ("tokens_per_s", "in-training tokens/s", ",.0f"),
    ("load_avg_1m", "load avg", ".1f"),
    ("train_flops_cum", "training TFLOP", ".2f"),
]


def trial_table(record: SweepRecord) -> pd.DataFrame:
    """Every trial with its seed: the headline metrics and the conditions its in-training figures ran under."""
    df = design_order(record, record.results)
    out = pd.DataFrame({a: df[a].astype(str) for a in record.axes} | {"status": df["status"]})
    for col, header, fmt in TRIAL_COLUMNS:
        if col in df and df[col].notna().any():
            scale = 1e-12 if col == "train_flops_cum" else 1.0
            out[header] = [_num(v * scale, fmt) for v in df[col]]
    for metric, (how, header) in ROUTER_SUMMARY.items():
        cols = [c for c in df if c.startswith("router/") and c.endswith(f"/{metric}")]
        if cols and df[cols].notna().any().any():
            values = getattr(df[cols], how)(axis=1).where(df[cols].notna().any(axis=1))
            out[header] = [_num(v, ".3g") for v in values]
    return out


def router_details(record: SweepRecord) -> list[tuple[str, pd.DataFrame]]:
    """(trial label, layer × router metric) for every trial with router metrics."""
    out = []
    for _, row in design_order(record, record.results).iterrows():
        cells = {c: row[c] for c in row.index if c.startswith("router/") and pd.notna(row[c])}
        per_layer: dict[str, dict] = {}
        for c, v in cells.items():
            _, layer, metric = c.split("/", 2)
            if not metric.startswith("tokens_e"):
                per_layer.setdefault(layer.removeprefix("layer"), {})[metric] = f"{float(v):.4g}"
        if per_layer:
            table = pd.DataFrame.from_dict(per_layer, orient="index").rename_axis("layer").reset_index()
            out.append((axis_label(row, record.axes), table))
    return out


def claim_table(claim: dict) -> pd.DataFrame:
    """One row per treatment: means, the paired difference with its interval and tests, the verdict."""
    unit = claim.get("unit") or ""
    rows = []
    for c in claim["comparisons"]:
        interval = "" if np.isnan(c["ci_low"]) else f" [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]"
        rows.append(
            {
                "treatment": c["treatment"],
                "baseline": c["baseline"],
                "treatment mean": f"{c['treatment_mean']:.4f}",
                "baseline mean": f"{c['baseline_mean']:.4f}",
                f"difference ({unit or 'units'}) [95 % CI]": f"{c['mean_diff']:+.4f}{interval}",
                "p (paired t)": fmt_p(c["p_t"]),
                "p (Wilcoxon)": fmt_p(c["p_wilcoxon"]),
                "seed SDs": _num(abs(c["effect_sd"]), ".1f"),
                "seeds": c["n_seeds"],
                "verdict": c["label"],
            }
        )
    return pd.DataFrame(rows)


def anatomy_rows(record: SweepRecord) -> pd.DataFrame:
    """Per MoE trial: JS divergence between tags at init and trained (when there are tags), dead experts."""
    rows = []
    for trial_id, t in record.anatomy.items():
        row = {"trial": axis_label(t["params"], record.axes), "id": trial_id}
        if has_divergence(t):
            row |= {"JS init": f"{t['init_js_mean']:.4f}", "JS trained": f"{t['js_mean']:.4f}"}
            if "null_js_mean" in t:
                row["JS, tags permuted (null)"] = f"{t['null_js_mean']:.4f}"
        row["experts unused in the sample"] = sum(t["dead_experts_by_layer"].values())
        rows.append(row)
    return pd.DataFrame(rows)


def seeds_of(record: SweepRecord) -> str:
    return f"{len(record.meta.axes[SEED_AXIS])} training seeds" if SEED_AXIS in record.axes else "one training seed"
