"""A study's answer: every claim it tests, each treatment config against its baseline, paired by seed.

The result is plain data (it is saved as the record's fits.json and rendered by the report and
the console): per claim, one comparison per treatment config with its `Verdict`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from raybio.analysis.verdict import paired_verdict
from raybio.train.validation import cluster_se
from raybio.tune.record import SEED_AXIS, Claim, Requirement, SweepRecord


def _router(metric: str, how: str):
    def column(df: pd.DataFrame) -> pd.Series:
        cols = [c for c in df if c.startswith("router/") and c.endswith(f"/{metric}")]
        return getattr(df[cols], how)(axis=1) if cols else pd.Series(np.nan, index=df.index)

    return column


# Claim metrics that are not a results column: one number per trial derived from several.
METRICS = {
    "router_max_over_mean_load": _router("max_over_mean_load", "max"),
    "router_load_cv": _router("load_cv", "mean"),
    "dead_experts": _router("dead_experts", "sum"),
}
UNITS = {"val_loss": "nats", "router_max_over_mean_load": "× mean load", "router_load_cv": "", "dead_experts": ""}


def metric_values(df: pd.DataFrame, metric: str) -> pd.Series:
    return METRICS[metric](df) if metric in METRICS else df[metric]


def compare(record: SweepRecord, claim: Claim) -> list[dict]:
    """One comparison per treatment config: its label, its baseline's and the paired `Verdict`."""
    ok, keys = record.ok, record.config_keys
    if ok.empty or not set(claim.baseline) <= set(keys):
        return []
    values = ok.assign(_metric=metric_values(ok, claim.metric).to_numpy())
    not_tested = "; ".join(u for r in claim.regime if (u := unmet(r, record.meta.base))) or None
    out = []
    for _, config in ok[keys].drop_duplicates().iterrows():
        params = config.to_dict()
        is_baseline = all(params[a] == v for a, v in claim.baseline.items())
        if is_baseline or any(params.get(a) != v for a, v in claim.treatment.items()):
            continue
        treatment, baseline = _by_seed(values, params), _by_seed(values, {**params, **claim.baseline})
        seeds = treatment.index.intersection(baseline.index)
        if not len(seeds):
            continue
        t, b = treatment.loc[seeds, "_metric"].to_numpy(float), baseline.loc[seeds, "_metric"].to_numpy(float)
        verdict = paired_verdict(t, b, claim.expected, not_tested=not_tested)
        paired = claim.metric == "val_loss"  # windowed losses exist for the validation loss only
        out.append(
            {
                "treatment": treatment["config"].iloc[0],
                "baseline": baseline["config"].iloc[0],
                "treatment_mean": float(t.mean()),
                "baseline_mean": float(b.mean()),
                "eval_se": paired_eval_se(treatment.loc[seeds], baseline.loc[seeds]) if paired else None,
                **verdict.as_dict(),
            }
        )
    return out


def _by_seed(values: pd.DataFrame, params: dict) -> pd.DataFrame:
    """One config's trials (with the claim metric as `_metric`) indexed by training seed (0 without a seed axis)."""
    rows = values[np.logical_and.reduce([values[a] == v for a, v in params.items()])]
    rows = rows.set_index(rows[SEED_AXIS].to_numpy() if SEED_AXIS in rows else np.zeros(len(rows), int))
    return rows[rows["_metric"].notna()]


def paired_eval_se(treatment: pd.DataFrame, baseline: pd.DataFrame) -> float | None:
    """Standard error the validation sample alone puts on the mean treatment − baseline difference: both arms
    scored the same positions, so windows are clusters of paired differences (averaged over the seeds)."""
    if "val_window_loss" not in treatment or treatment["val_window_loss"].isna().any():
        return None
    diff = np.mean([np.asarray(t) - np.asarray(b) for t, b in zip(treatment["val_window_loss"],
                    baseline["val_window_loss"], strict=True)], axis=0)  # fmt: skip
    return cluster_se(diff, np.asarray(treatment["val_window_tokens"].iloc[0], float))


def unmet(req: Requirement, base: dict) -> str | None:
    """Why the sweep's base config is outside the paper's regime (None when it is inside)."""
    value = base
    for part in req.path.split("."):
        value = value[part]
    ok = {">=": value >= req.value, "<=": value <= req.value, "==": value == req.value}[req.op]
    return None if ok else f"{req.what} {value} here, the paper's {req.op} {req.value}"


def answer_study(record: SweepRecord) -> dict:
    """Every claim of the study with its comparisons (JSON-ready)."""
    return {
        "claims": [
            {**claim.model_dump(), "unit": UNITS.get(claim.metric, ""), "comparisons": compare(record, claim)}
            for claim in record.meta.claims
        ]
    }
