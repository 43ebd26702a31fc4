"""The sweep's results table: one row per trial, every metric and its config; written once, whole."""

from __future__ import annotations

import pandas as pd

from raybio.config import ExperimentConfig
from raybio.tune.space import trial_experiment

# Final metrics every row carries (missing ones are NaN, e.g. MFU on CPU).
METRICS = [
    "val_loss",  # the headline: mask-only (MLM) or next-token (NTP) loss on the validation sample
    "val_loss_se",
    "val_unigram_loss",  # the training corpus's unigram model on the same positions
    "val_loss_corrupted",  # MLM's 80/10/10 loss (secondary)
    "init_val_loss",
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
    "load_avg_1m",
    "time_total_s",  # Tune's: the trial's whole life, start-up to last report (for utilisation)
    "setup_time_s",  # the trainer's own phases inside it (the final checkpoint's upload is not in these)
    "eval_time_s",
    "checkpoint_time_s",
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


def results_table(result_grid, base: ExperimentConfig) -> pd.DataFrame:
    """Rows for every trial of a finished Tuner run."""
    rows = []
    for result in result_grid:
        params = result.config.get("params", {}) if result.config else {}
        metrics = result.metrics or {}
        row = {"trial_id": metrics.get("trial_id", ""), "status": "ERROR" if result.error else "OK"}
        row.update(params)
        row.update({m: metrics.get(m, float("nan")) for m in METRICS})
        row.update({k: v for k, v in metrics.items() if k.startswith(("router/", "downstream/", "val_loss/"))})
        # The final evaluation per window (lists): paired comparisons of trials on the same positions.
        row.update({k: metrics[k] for k in ("val_window_loss", "val_window_tokens") if k in metrics})
        row["checkpoint_path"] = metrics.get("checkpoint_path", "")
        row["error"] = str(result.error).splitlines()[0] if result.error else ""
        exp = trial_experiment(base, params)
        row.update({f"config.{k}": v for k, v in flatten(exp.model_dump()).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def history_table(result_grid) -> pd.DataFrame:
    """Every report of every trial (loss curves for the report), with the trial's axis values."""
    frames = []
    for result in result_grid:
        hist = result.metrics_dataframe
        if hist is None or hist.empty:
            continue
        params = result.config.get("params", {}) if result.config else {}
        keep = [
            c for c in hist if c in METRICS or c in ("trial_id", "val_step") or c.startswith(("router/", "val_loss/"))
        ]
        if "step" in hist:  # a restart from a checkpoint reports the steps since it again
            hist = hist.drop_duplicates("step", keep="first")
        frames.append(hist[keep].assign(**params))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


HPARAM_METRICS = ["val_loss", "tokens_per_s", "peak_memory_bytes", "train_flops_cum", "params_total"]


def write_hparams(df: pd.DataFrame, axes: list[str], logdir: str) -> None:
    """TensorBoard HParams-plugin summaries: one session per trial, swept values vs final metrics."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    names = [*HPARAM_METRICS, *(c for c in df if c.startswith("downstream/") and not c.endswith(("_low", "_high")))]
    for _, row in df[df["status"] == "OK"].iterrows():
        hp = {a: (row[a].item() if hasattr(row[a], "item") else row[a]) for a in axes}
        metrics = {f"hparams/{m}": float(row[m]) for m in names if pd.notna(row.get(m))}
        exp, ssi, sei = hparams(hp, metrics)
        with SummaryWriter(f"{logdir}/hparams/{row['trial_id']}") as w:
            for summary in (exp, ssi, sei):
                w.file_writer.add_summary(summary)
            for tag, value in metrics.items():
                w.add_scalar(tag, value, 0)
