"""Training seeds are replicates, not a design axis: configs are compared by their mean over
seeds and the per-seed (paired) differences, never by one lucky seed."""

from __future__ import annotations

import pandas as pd

SEED_AXIS = "train.seed"  # what `--train-seeds` sweeps (raybio.study.study_axes)


def config_axes(axes: list[str]) -> list[str]:
    """The axes that make a config: every swept axis but the training seed."""
    return [a for a in axes if a != SEED_AXIS]


def config_label(row: pd.Series | dict, axes: list[str]) -> str:
    """`experts=8, top_k=2`: a trial's config without its seed (report labels of trials keep the seed)."""
    return ", ".join(f"{a}={row[a]}" for a in config_axes(axes)) or "all trials"


def over_seeds(df: pd.DataFrame, axes: list[str], metric: str = "val_loss") -> pd.DataFrame | None:
    """Per config: seeds, mean / min / max of `metric`, and its paired difference to the first config
    (same seed, config minus first; mean and range over the seeds both have). None without a seed axis."""
    ok = df[df["status"] == "OK"]
    if SEED_AXIS not in axes or ok.empty:
        return None
    ok = ok.assign(config=[config_label(row, axes) for _, row in ok.iterrows()])
    order = ok.sort_values(config_axes(axes) or [SEED_AXIS])["config"].drop_duplicates().tolist()
    by_seed = ok.pivot_table(index=SEED_AXIS, columns="config", values=metric, aggfunc="first")[order]
    gaps = by_seed.sub(by_seed[order[0]], axis=0)
    rows = []
    for config in order:
        values, gap = by_seed[config].dropna(), gaps[config].dropna()
        rows.append(
            {
                "config": config,
                "seeds": len(values),
                "mean": values.mean(),
                "min": values.min(),
                "max": values.max(),
                "paired gap": gap.mean() if len(gap) else float("nan"),
                "gap min": gap.min() if len(gap) else float("nan"),
                "gap max": gap.max() if len(gap) else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def seed_lines(table: pd.DataFrame, metric_name: str = "val loss") -> list[str]:
    """One sentence per config: its mean and range over seeds, and the paired gap to the first config."""
    first = table["config"].iloc[0]
    lines = []
    for _, r in table.iterrows():
        spread = f"{r['min']:.4f}–{r['max']:.4f}"
        line = f"{r['config']}: {metric_name} {r['mean']:.4f} mean over {r['seeds']} seed(s) ({spread})"
        if r["config"] != first and pd.notna(r["paired gap"]):
            line += (
                f"; minus {first}, seed by seed: {r['paired gap']:+.4f} mean "
                f"({r['gap min']:+.4f} to {r['gap max']:+.4f})"
            )
        lines.append(line)
    return lines
