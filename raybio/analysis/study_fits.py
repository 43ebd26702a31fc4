"""A sweep's tables -> its scaling-law fits and a compute-optimal pick.

Which laws apply depends on what the study varied:

- L(C) = E + A·C^(−α) always, on the **compute frontier**: every validation evaluation of
  every trial (cumulative training FLOPs, val loss), keeping the points no cheaper point beats;
- Chinchilla L(N, D) on the trials' final losses when both active parameters N and training
  tokens D vary (model_size with `--flop-budget`);
- the routed law of Clark et al. when the expert count takes three or more values.

The pick extrapolates each trial's own validation curve, L_i(C) = E_i + A_i·C^(−α_i), to the
target compute and names the trial config with the lowest predicted loss. A trial's curve was
trained under a schedule that ended at its last step, so extrapolating it assumes the same
schedule stretched to the target: past 10× the data the pick carries a caveat.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from raybio.analysis.scaling import SAME_SIZE, Fit, chinchilla_optimal_n, fit_chinchilla, fit_compute_law, fit_routed
from raybio.tune.record import SEED_AXIS, config_axes, config_label

EXTRAPOLATION_WARN = 10.0  # × the largest trial's compute
DEFAULT_TARGET = 10.0  # default --target-flops, × the largest trial's compute


@dataclass
class Candidate:
    """One trial config's loss predicted at the target compute."""

    label: str
    params: dict
    loss: float
    ci: tuple[float, float] | None


@dataclass
class Pick:
    """The compute-optimal choice among the swept configs at `target_flops`."""

    target_flops: float
    extrapolation: float  # target / the largest compute any trial reached
    best: Candidate | None
    candidates: list[Candidate]
    chinchilla_n_opt: float | None = None  # active parameters, when an L(N, D) fit exists
    caveat: str | None = None


@dataclass
class StudyFits:
    """Every fit that applies to a study, the pick, and why any fit is missing."""

    compute: Fit | None
    chinchilla: Fit | None
    routed: Fit | None
    pick: Pick
    frontier: pd.DataFrame  # the points L(C) was fitted on
    notes: list[str] = field(default_factory=list)


def validation_points(history: pd.DataFrame) -> pd.DataFrame:
    """Reports where validation ran at that very step (C > 0): trial_id, train_flops_cum, val_loss."""
    if history.empty or "val_step" not in history:
        return pd.DataFrame(columns=["trial_id", "train_flops_cum", "val_loss"])
    at_eval = history[(history["step"] == history["val_step"]) & (history["train_flops_cum"] > 0)]
    return at_eval.drop_duplicates(["trial_id", "step"]).dropna(subset=["val_loss"])


def compute_frontier(points: pd.DataFrame) -> pd.DataFrame:
    """The points no point of smaller or equal compute beats (the lower envelope over all trials)."""
    pts = points.sort_values(["train_flops_cum", "val_loss"])
    best = pts["val_loss"].cummin()
    return pts[pts["val_loss"] <= best].drop_duplicates("train_flops_cum")


def experts_of(df: pd.DataFrame, axes: list[str]) -> pd.Series:
    """Routed experts per trial: the swept `experts` value, else the MoE config (1 for dense patterns)."""
    if "experts" in axes:
        return df["experts"].astype(float)
    moe = df.get("config.model.pattern", pd.Series("", index=df.index)).astype(str).str.contains("A")
    return df.get("config.model.moe.num_experts", pd.Series(1, index=df.index)).where(moe, 1).astype(float)


def fit_study(
    results: pd.DataFrame, history: pd.DataFrame, axes: list[str], target_flops: float | None = None, seed: int = 0
) -> StudyFits:
    """All applicable fits and the compute-optimal pick for one finished sweep."""
    ok = results[results["status"] == "OK"].copy()
    notes: list[str] = []
    points = validation_points(history)
    frontier = compute_frontier(points)
    compute = None
    if len(frontier) >= 3:
        compute = fit_compute_law(frontier["train_flops_cum"], frontier["val_loss"], n_boot=200, seed=seed)
    else:
        notes.append(f"L(C): {len(frontier)} frontier point(s), a fit needs 3; evaluate more often (train.eval_every)")

    chinchilla = None
    if len(ok):
        tokens = ok["train_flops_cum"] / ok["flops_per_token_train"]
        # Sizes and token counts within SAME_SIZE of each other (routers, rounding) count as one.
        n_distinct, d_distinct = _distinct(ok["params_active"]), _distinct(tokens)
        if n_distinct >= 2 and d_distinct >= 2 and len(ok) >= 6:
            chinchilla = fit_chinchilla(ok["params_active"], tokens, ok["val_loss"], seed=seed)
        else:
            notes.append(
                f"L(N, D): needs ≥ 6 trials with ≥ 2 model sizes and ≥ 2 token counts "
                f"(have {len(ok)} trials, {n_distinct} sizes, {d_distinct} token counts; vary both with --flop-budget)"
            )

    routed = None
    experts = experts_of(ok, axes) if len(ok) else pd.Series(dtype=float)
    if experts.nunique() >= 3:
        routed = fit_routed(ok["params_active"], experts, ok["val_loss"], seed=seed)
    elif len(ok):
        notes.append(f"routed law: needs ≥ 3 expert counts (have {experts.nunique()})")

    pick = compute_optimal_pick(ok, points, axes, target_flops, chinchilla, seed=seed)
    return StudyFits(compute, chinchilla, routed, pick, frontier, notes)


def compute_optimal_pick(
    ok: pd.DataFrame,
    points: pd.DataFrame,
    axes: list[str],
    target_flops: float | None,
    chinchilla: Fit | None = None,
    seed: int = 0,
) -> Pick:
    """Extrapolate every config's validation curve to `target_flops`; the lowest predicted loss wins.

    A config trained with several seeds is one candidate, fitted on the points of all its seeds."""
    largest = float(points["train_flops_cum"].max()) if len(points) else float(ok["train_flops_cum"].max())
    target = float(target_flops or DEFAULT_TARGET * largest)
    candidates = []
    keys = config_axes(axes)
    for _, group in ok.groupby(keys, sort=True) if keys else [((), ok)]:
        curve = points[points["trial_id"].isin(group["trial_id"])]
        if len(curve) < 3:
            continue
        fit = fit_compute_law(curve["train_flops_cum"], curve["val_loss"], n_boot=100, holdout=0, seed=seed)
        band = fit.band(np.array([target]))
        n_seeds = f" ({len(group)} seeds)" if len(group) > 1 and SEED_AXIS in axes else ""
        candidates.append(
            Candidate(
                label=config_label(group.iloc[0], axes) + n_seeds,
                params={a: group.iloc[0][a] for a in keys},
                loss=float(fit.predict(np.array([target]))[0]),
                ci=(float(band[0][0]), float(band[1][0])) if band else None,
            )
        )
    ratio = target / largest if largest else float("inf")
    caveat = None
    if ratio > EXTRAPOLATION_WARN:
        caveat = (
            f"extrapolating {ratio:.0f}× beyond the largest trial's compute: the curves were fitted on "
            f"{largest:.3g} FLOPs at most; treat the pick as a hypothesis to test, not a measurement"
        )
    if not candidates:
        caveat = "no trial has 3 validation points: set train.eval_every so each trial validates ≥ 3 times"
    return Pick(
        target_flops=target,
        extrapolation=ratio,
        best=min(candidates, key=lambda c: c.loss) if candidates else None,
        candidates=candidates,
        chinchilla_n_opt=chinchilla_optimal_n(chinchilla, target) if chinchilla else None,
        caveat=caveat,
    )


def _distinct(values: pd.Series) -> int:
    """Groups of values each within SAME_SIZE of its smallest member."""
    groups, start = 0, None
    for v in sorted(values):
        if start is None or v > start * SAME_SIZE:
            groups, start = groups + 1, v
    return groups
