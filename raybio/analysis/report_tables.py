"""The sweep report's tables, in human units: configs over seeds, trials, claims, router metrics, anatomy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from raybio.analysis.verdict import fmt_p
from raybio.tune.record import SEED_AXIS, SweepRecord

# Router metric -> (how layers combine into one number per model, column header).
ROUTER_SUMMARY = {
    "load_cv": ("mean", "router load CV (mean)"),
    "max_over_mean_load": ("max", "router max/mean load (max)"),
    "dead_experts": ("sum", "dead experts in training (all layers)"),
}


@dataclass
class ReportTables:
    """Every table and computed sentence of a sweep report, built once from the record."""

    rows: pd.DataFrame  # one row per config (config_rows): what the tables and plots show
    labels: dict[str, str]  # trial id -> its config's label
    configs: pd.DataFrame
    trials: pd.DataFrame
    routers: pd.DataFrame  # (trial, layer) rows; empty without MoE trials
    claims: list[tuple[dict, pd.DataFrame]]
    anatomy: pd.DataFrame
    throughput: str  # the ranking with ties, or why there is none
    front: pd.Series  # Pareto front over rows (all False without the probe)
    seeds: str


def build_tables(record: SweepRecord) -> ReportTables:
    rows = config_rows(record)
    return ReportTables(
        rows=rows,
        labels=dict(zip(record.results["trial_id"], record.results["config"], strict=True)),
        configs=config_table(rows),
        trials=trial_table(record),
        routers=router_details(record),
        claims=[(c, claim_table(c)) for c in record.fits.get("claims", [])],
        anatomy=anatomy_rows(record),
        throughput=throughput_answer(rows),
        front=pareto_front(rows) if has_front(rows) else pd.Series(False, index=rows.index),
        seeds=seeds_of(record),
    )


def has_probe(rows: pd.DataFrame) -> bool:
    return "probe/tokens_per_s" in rows and bool(rows["probe/tokens_per_s"].notna().any())


def probe_ranked(rows: pd.DataFrame) -> bool:
    """The probe gave intervals, so configs can be ranked (or tied); a Pareto front needs that too."""
    return has_probe(rows) and bool((rows["probe/tie_group"] != 0).any())


def has_front(rows: pd.DataFrame) -> bool:
    """A loss-vs-throughput front needs ranked probe figures and trained losses (a --probe-only sweep has none)."""
    return len(rows) > 1 and probe_ranked(rows) and "val_loss" in rows and bool(rows["val_loss"].notna().all())


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
    keys = record.config_keys
    rows = []
    for _, group in ok.groupby(keys, sort=False) if keys else [((), ok)]:
        first = group.iloc[0]
        row = {"config": first["config"], "seeds": len(group)}
        row |= {a: first[a] for a in keys}
        for col in (
            "val_loss",
            "val_loss_se",
            "val_unigram_loss",
            "val_loss_corrupted",
            "init_val_loss",
            "train_flops_cum",
        ):
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
    if has_probe(rows):
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


def router_details(record: SweepRecord) -> pd.DataFrame:
    """Router metrics per layer of every trial that has them, one row per (trial, layer): one table, however many
    trials (a study of a hundred small MoE runs would otherwise list a hundred)."""
    rows = []
    for _, row in design_order(record, record.results).iterrows():
        per_layer: dict[str, dict] = {}
        for c in row.index:
            if c.startswith("router/") and pd.notna(row[c]):
                _, layer, metric = c.split("/", 2)
                if not metric.startswith("tokens_e"):
                    per_layer.setdefault(layer.removeprefix("layer"), {})[metric] = f"{float(row[c]):.4g}"
        rows += [{"trial": row["trial_config"], "layer": layer, **metrics} for layer, metrics in per_layer.items()]
    return pd.DataFrame(rows)


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
                "eval SE of it": _num(c.get("eval_se"), ".4f"),
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
    labels = dict(zip(record.results["trial_id"], record.results["trial_config"], strict=True))
    rows = []
    for trial_id, t in record.anatomy.items():
        row = {"trial": labels.get(trial_id, trial_id), "id": trial_id}
        if t["divergence"]:
            row |= {"JS init": f"{t['init_js_mean']:.4f}", "JS trained": f"{t['js_mean']:.4f}"}
            if "null_js_mean" in t:
                row["JS, tags permuted (null)"] = f"{t['null_js_mean']:.4f}"
        row["experts unused in the sample"] = sum(t["dead_experts_by_layer"].values())
        rows.append(row)
    return pd.DataFrame(rows)


def seeds_of(record: SweepRecord) -> str:
    return f"{len(record.meta.axes[SEED_AXIS])} training seeds" if SEED_AXIS in record.axes else "one training seed"


def throughput_answer(rows: pd.DataFrame) -> str:
    """The probe's ranking with ties (per window length when several were probed), or why there is none."""
    if not has_probe(rows):
        return ("**Throughput:** no comparable throughput — the probe was off, and in-training tokens/s measures "
                "which trials shared the machine, not the configs.")  # fmt: skip
    if not probe_ranked(rows):
        return ("**Throughput:** not ranked — the probe gave no interval per config (one round, or a record that "
                "kept none; use --probe-rounds ≥ 5).")  # fmt: skip
    windows = rows.groupby("probe/window", sort=True) if rows["probe/window"].nunique() > 1 else [(None, rows)]
    lines = []
    for window, at in windows:
        ranked = at.sort_values("probe/tokens_per_s", ascending=False)
        parts = []
        for _, group in ranked.groupby("probe/tie_group", sort=True):
            names = " ≈ ".join(f"{r['config']} ({r['probe/tokens_per_s'] / 1e3:.2f} k)" for _, r in group.iterrows())
            parts.append(f"[{names}]" if len(group) > 1 else names)
        lines.append((f"at {window:,}-token windows: " if window else "") + " > ".join(parts))
    return ("**Throughput (probe, tokens/s per worker, alone):** " + "; ".join(lines) +
            "; configs in brackets are tied: their 95 % intervals over probe rounds overlap.")  # fmt: skip


def pareto_front(rows: pd.DataFrame) -> pd.Series:
    """Configs no other config beats on both headline loss (lower) and probe tokens/s (higher)."""
    vals = np.stack([rows["val_loss"].to_numpy(float), -rows["probe/tokens_per_s"].to_numpy(float)], axis=1)
    dominated = [bool(np.any(np.all(vals <= v, axis=1) & np.any(vals < v, axis=1))) for v in vals]
    return pd.Series(np.logical_not(dominated), index=rows.index)
