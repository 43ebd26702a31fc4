"""The sweep's results table: one row per trial, every metric and its config; written once, whole."""

from __future__ import annotations

import io

import pandas as pd

from raybio.config import deep_merge, validate
from raybio.data import storage
from raybio.tune.space import overrides_for

# Final metrics every row carries (missing ones are NaN, e.g. MFU on CPU).
METRICS = [
    "val_loss",
    "val_loss_mask_only",
    "init_val_loss",
    "init_val_loss_mask_only",
    "unigram_entropy_nats",
    "loss",
    "step",
    "tokens_per_s",
    "tokens_per_s_per_worker",
    "step_time_s",
    "data_wait_fraction",
    "flops_per_token_fwd",
    "flops_per_token_train",
    "train_flops_cum",
    "achieved_flops_per_s",
    "mfu",
    "peak_memory_bytes",
    "params_total",
    "params_active",
    "world_size",
]


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"model": {"d_model": 8}} -> {"model.d_model": 8}; lists become strings."""
    out = {}
    for key, val in tree.items():
        name = f"{prefix}{key}"
        if isinstance(val, dict):
            out.update(flatten(val, name + "."))
        else:
            out[name] = str(val) if isinstance(val, list | tuple) else val
    return out


def results_table(result_grid, base_experiment: dict) -> pd.DataFrame:
    """Rows for every trial of a finished Tuner run."""
    rows = []
    for result in result_grid:
        params = result.config.get("params", {}) if result.config else {}
        metrics = result.metrics or {}
        row = {"trial_id": metrics.get("trial_id", ""), "status": "ERROR" if result.error else "OK"}
        row.update(params)
        row.update({m: metrics.get(m, float("nan")) for m in METRICS})
        row.update({k: v for k, v in metrics.items() if k.startswith("router/")})
        row["error"] = str(result.error).splitlines()[0] if result.error else ""
        exp = validate(deep_merge(base_experiment, overrides_for(params)))
        row.update({f"config.{k}": v for k, v in flatten(exp.model_dump()).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def write_table(df: pd.DataFrame, sweep_uri: str) -> None:
    """results.csv and results.parquet, each written atomically."""
    storage.write_bytes_atomic(storage.join(sweep_uri, "results.csv"), df.to_csv(index=False).encode())
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    storage.write_bytes_atomic(storage.join(sweep_uri, "results.parquet"), buf.getvalue())
