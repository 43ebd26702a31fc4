"""The `scaling` study's answer: its laws, fitted once from the sweep record into `record.fits["laws"]` (JSON).

Runs: every finished grid trial (`scaling_role` "grid", or every trial of a record without that column), each
trained to its own compute budget C (the `train.flop_budget` axis) with its own complete schedule. N = active
parameters, D = tokens trained (its FLOPs over its analytic train FLOPs per token), loss = the headline
mask-only validation loss. Fitted with raybio.analysis.scaling (no fitting here):

- dense: approach 3, L(N, D), and approach 2 (IsoFLOP parabola minima → N_opt ∝ C^a, D_opt ∝ C^b);
- MoE (designs `moe_g<G>`): Krajewski's L(N, D, G) on all of them together (does granularity pay: γ, g), and
  each design's own L(N, D) (`laws["arms"]`): at one G Krajewski's law *is* Chinchilla's with A_G = A + g/G^γ,
  and fitted on its own arm it needs neither three granularities nor γ, so a design's predictions, optimum and
  leverage come from it; approach 2 per design;
- the efficiency leverage of each MoE design over dense, at the largest budget and at the check's;
- the check: at C* (a multiple of the largest budget) the design with the lowest *identified* predicted loss
  among the ladder's sizes × the designs, and once trained (`scaling_role` "check" rows) its measured loss
  over seeds against the prediction.

Fits are stored with their bootstrap refits, and what the figures draw of them (`laws["curves"]`: curves with
their 95 % bands, parabolas, fitted losses) is evaluated here, so the report draws without evaluating a law.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import numpy as np
import pandas as pd
from scipy import stats

from raybio.analysis.estimates import CI_LEVEL, Estimate, t_interval
from raybio.analysis.fitting import LawFit
from raybio.analysis.isoflop import IsoFlopFit
from raybio.analysis.laws import CHINCHILLA, GRANULAR_MOE
from raybio.analysis.scaling import (
    compute_optimal,
    efficiency_leverage,
    fit_approach3,
    fit_granular_moe,
    fit_isoflop,
    predict_loss,
)
from raybio.config import PRESETS, ExperimentConfig, saved_experiment
from raybio.tune.record import SEED_AXIS, SweepRecord
from raybio.tune.space import trial_experiment

BUDGET_AXIS = "train.flop_budget"
ROLE = "scaling_role"  # results column: "grid" (fitted) or "check" (the predicted run, never fitted)
DEFAULT_CHECK_RATIO = 4.0  # the check's compute, × the largest fitted budget
EXTRAPOLATION_WARN = 3.0  # a prediction this far (or further) past the largest fitted budget carries a warning
TOLERANCE = 0.01  # the check's goal: measured within 1 % of the prediction (and inside its 95 % interval)
N_BOOT = 200
SPAN = (0.5, 1.5)  # the figures' compute axis: from half the smallest budget to 1.5× the check's compute
N_SPAN, N_PARABOLA = 48, 60  # points on that axis, and on each IsoFLOP parabola
LAWS = {law.name: law for law in (CHINCHILLA, GRANULAR_MOE)}


def granularity(design: str) -> int | None:
    """G of a `moe_g<G>` design; None for dense."""
    return None if design == "dense" else int(design.removeprefix("moe_g"))


def design_law(laws: dict, design: str) -> dict | None:
    """The L(N, D) fit (JSON) that predicts `design`: the dense law, or the MoE design's own arm's; None unfitted."""
    return laws.get("dense") if design == "dense" else laws.get("arms", {}).get(design)


def runs_table(record: SweepRecord) -> pd.DataFrame:
    """One row per finished trial: role, design, G, size, budget C, N, D, train FLOPs per token, loss, SE, seed."""
    ok = record.ok
    if BUDGET_AXIS not in ok:
        raise ValueError(f"{record.uri} has no {BUDGET_AXIS} axis: the scaling analysis needs runs with own budgets")
    design = ok["design"] if "design" in ok else pd.Series("dense", index=ok.index)
    return pd.DataFrame(
        {
            "role": ok.get(ROLE, "grid"),
            "design": design,
            "G": [granularity(d) for d in design],
            "size": ok.get("size", ""),
            "budget": ok[BUDGET_AXIS].astype(float),
            "N": ok["params_active"].astype(float),
            "D": (ok["train_flops_cum"] / ok["flops_per_token_train"]).astype(float),
            "fpt": ok["flops_per_token_train"].astype(float),
            "loss": ok["val_loss"].astype(float),
            "se": ok["val_loss_se"].astype(float),
            "unigram": ok["val_unigram_loss"].astype(float),
            "seed": ok[SEED_AXIS] if SEED_AXIS in ok else record.meta.base["train"]["seed"],
        }
    ).reset_index(drop=True)


# ------------------------------------------------------------------------------------------------ JSON forms


def _num(v) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


def estimate_json(est: Estimate) -> dict:
    return {k: _num(v) if k in ("value", "low", "high") else v for k, v in asdict(est).items()}


def estimate_from(d: dict) -> Estimate:
    return Estimate(**d)


def law_json(fit: LawFit) -> dict:
    return {
        "law": fit.law.name,
        "formula": fit.law.formula,
        "x0": fit.x0,
        "theta": fit.theta.tolist(),
        "converged": bool(fit.converged),
        "n_runs": fit.n_runs,
        "boot_converged": fit.boot_converged,
        "estimates": {k: estimate_json(v) for k, v in fit.estimates.items()},
        "boot_theta": np.round(fit.boot_theta, 8).tolist(),
    }


def law_from(d: dict) -> LawFit:
    """The fit as the library's `LawFit` (predictions, optima and leverage work on it as fitted)."""
    law = LAWS[d["law"]]
    theta = np.asarray(d["theta"], float)
    params = {k: float(v[0]) for k, v in law.public(theta, d["x0"]).items()}
    boot = np.asarray(d["boot_theta"], float).reshape(-1, len(law.names))
    estimates = {k: estimate_from(v) for k, v in d["estimates"].items()}
    return LawFit(law, d["x0"], theta, d["converged"], d["n_runs"], params, estimates, boot, d["boot_converged"])


def isoflop_json(iso: IsoFlopFit) -> dict:
    return {
        "minima": [asdict(m) for m in iso.minima],
        "a": estimate_json(iso.n_exponent),
        "b": estimate_json(iso.d_exponent),
        "lines": np.nan_to_num(iso.lines, nan=0.0).tolist() if np.isfinite(iso.lines).all() else None,
        "boot_lines": [None if not np.isfinite(b).all() else b.tolist() for b in iso.boot_lines],
    }


def isoflop_from(d: dict) -> IsoFlopFit:
    from raybio.analysis.isoflop import BudgetMinimum

    lines = np.full((2, 2), np.nan) if d["lines"] is None else np.asarray(d["lines"], float)
    boot = np.array([np.full((2, 2), np.nan) if b is None else b for b in d["boot_lines"]], float).reshape(-1, 2, 2)
    minima = [BudgetMinimum(**m) for m in d["minima"]]
    return IsoFlopFit(minima, estimate_from(d["a"]), estimate_from(d["b"]), lines, boot)


# --------------------------------------------------------------------------------------------------- the fits


def flops_per_param_token(runs: pd.DataFrame) -> float:
    """k in C = k·N·D for the closed-form optima: the runs' geometric mean of train FLOPs per active parameter and
    token (6, plus attention over the window and the LM head, which weigh more in the smaller models)."""
    return float(np.exp(np.log(runs["fpt"] / runs["N"]).mean()))


def fit_laws(record: SweepRecord, *, check_compute: float | None = None, check_design: str | None = None,
             fallback_design: str | None = None, n_boot: int = N_BOOT, seed: int = 0) -> dict:  # fmt: skip
    """Every law of the study on the record's grid runs, and the design the check trains at `check_compute`
    (default DEFAULT_CHECK_RATIO × the largest budget): `check_design` ("size:design") instead of the laws' pick,
    `fallback_design` where the laws pick none."""
    runs = runs_table(record)
    grid = runs[runs["role"] == "grid"]
    budgets = sorted(grid["budget"].unique().tolist())
    k = flops_per_param_token(grid)
    laws: dict = {"budgets": budgets, "designs": list(dict.fromkeys(grid["design"])), "flops_per_param_token": k,
                  "sizes": list(dict.fromkeys(grid["size"])), "n_boot": n_boot, "n_runs": len(grid)}  # fmt: skip
    laws["isoflop"] = {
        design: isoflop_json(
            fit_isoflop(g["N"], g["budget"], g["loss"], flops_per_token=g["fpt"], n_boot=n_boot, seed=seed)
        )
        for design, g in grid.groupby("design", sort=False)
    }
    dense, moe = grid[grid["design"] == "dense"], grid[grid["design"] != "dense"]
    if len(dense):
        laws["dense"] = law_json(fit_approach3(dense["N"], dense["D"], dense["loss"], dense["budget"], n_boot=n_boot,
                                               seed=seed))  # fmt: skip
    if len(moe):
        fit = fit_granular_moe(moe["N"], moe["D"], moe["G"], moe["loss"], moe["budget"], n_boot=n_boot, seed=seed)
        laws["moe"] = law_json(fit)
        laws["arms"] = {design: law_json(fit_approach3(g["N"], g["D"], g["loss"], g["budget"], n_boot=n_boot,
                                                       seed=seed))
                        for design, g in moe.groupby("design", sort=False)}  # fmt: skip
    c_star = check_compute or DEFAULT_CHECK_RATIO * max(budgets)
    laws["leverage"] = leverages(laws, [max(budgets), c_star])
    laws["check"] = check_pick(record, laws, c_star, check_design, fallback_design)
    return laws


def leverages(laws: dict, computes: list[float]) -> list[dict]:
    """Dense compute to match each MoE design's compute-optimal loss, over the MoE's compute, at each compute (each
    design's own L(N, D) against the dense one)."""
    if "dense" not in laws:
        return []
    dense, k = law_from(laws["dense"]), laws["flops_per_param_token"]
    return [
        {"design": design, "G": granularity(design), "compute": c,
         "estimate": estimate_json(efficiency_leverage(dense, law_from(arm), c, flops_per_param_token=k))}
        for design, arm in laws.get("arms", {}).items() for c in computes
    ]  # fmt: skip


def active_params(exp: ExperimentConfig) -> int:
    """Parameters a token uses in the model `exp` builds (sized on the meta device: no memory, no init)."""
    import torch

    from raybio.models.flops import param_counts
    from raybio.models.model import BioLM

    with torch.device("meta"):
        return param_counts(BioLM(exp.model, exp.data.tokenizer.build().vocab_size))["params_active"]


def ladder(sizes: list[str]) -> list[str]:
    """Every preset of the grid's size family (micro-1 … micro-6 for a grid of micro sizes), in preset order."""
    families = {s.rsplit("-", 1)[0] for s in sizes if s}
    return [p for p in PRESETS if p.rsplit("-", 1)[0] in families] or [s for s in sizes if s]


def candidate(record: SweepRecord, laws: dict, size: str, design: str, compute: float) -> dict:
    """One design at `compute`: its N, D, steps and the loss its law predicts (an Estimate, JSON)."""
    base = saved_experiment(record.meta.base)
    exp = trial_experiment(base, {BUDGET_AXIS: compute, "size": size, "design": design})
    t = exp.train
    n, d = active_params(exp), float(t.max_steps * t.batch_size * t.num_workers * exp.data.seq_len)
    fit = design_law(laws, design)
    est = Estimate(None, None, None, False, f"no {design} runs were fitted") if fit is None else \
        predict_loss(law_from(fit), N=n, D=d)  # fmt: skip
    return {"size": size, "design": design, "N": float(n), "D": d, "steps": t.max_steps,
            "predicted": estimate_json(est)}  # fmt: skip


def unidentified(laws: dict) -> str:
    """Which design's law leaves which parameters not identified ("dense: alpha; moe_g2: A"), for a short why."""
    fits = {"dense": laws["dense"]} if "dense" in laws else {}
    parts = [f"{design}: {', '.join(n for n, e in fit['estimates'].items() if not e['identified'])}"
             for design, fit in (fits | laws.get("arms", {})).items()]  # fmt: skip
    return "; ".join(p for p in parts if not p.endswith(": ")) + " (not identified; the table gives each candidate)"


def check_pick(record: SweepRecord, laws: dict, compute: float, forced: str | None, fallback: str | None) -> dict:
    """The check at `compute`: every ladder size × design with its prediction, the lowest identified one picked
    (`forced` instead, or `fallback` when none is identified; "size:design"), the closed-form and IsoFLOP N_opt
    there, and the extrapolation warning."""
    ratio = compute / max(laws["budgets"])
    sizes = ladder(laws["sizes"]) if "size" in record.axes else [""]
    cands = [candidate(record, laws, s, d, compute) for d in laws["designs"] for s in sizes]
    known = [c for c in cands if c["predicted"]["identified"]]
    pick, why = (
        (min(known, key=lambda c: c["predicted"]["value"]), "the lowest identified prediction")
        if known
        else (None, "no design's predicted loss is identified: every candidate's depends on " + unidentified(laws))
    )
    if chosen := forced or (None if known else fallback):
        size, design = chosen.split(":")
        pick = next((c for c in cands if (c["size"], c["design"]) == (size, design)), None)
        pick = pick or candidate(record, laws, size, design, compute)
        why = f"{'given' if forced else 'the fallback'} {chosen}" + ("" if known else f"; {why}")
    out = {"compute": compute, "ratio": ratio, "candidates": cands, "pick": pick, "why": why}
    if ratio >= EXTRAPOLATION_WARN:
        out["warning"] = (f"extrapolating {ratio:.1f}× past the largest fitted budget: the laws' intervals cover the "
                          "fits' uncertainty, not a change of regime beyond the runs")  # fmt: skip
    if "dense" in laws:
        opt = compute_optimal(law_from(laws["dense"]), compute, flops_per_param_token=laws["flops_per_param_token"])
        out["dense_optimum"] = {k: estimate_json(getattr(opt, k)) for k in ("n_params", "tokens", "loss")}
    if "dense" in laws["isoflop"]:
        iso = isoflop_from(laws["isoflop"]["dense"])
        out["dense_isoflop"] = {"n_params": estimate_json(iso.n_opt(compute)),
                                "tokens": estimate_json(iso.tokens_opt(compute))}  # fmt: skip
    return out


# ------------------------------------------------------------------------------------------ the figures' curves


def band(ests: list[Estimate]) -> dict:
    """A curve of Estimates as JSON lists (value, low, high), or why it has none: identified or not as a whole
    (one fit's parameters decide every point's)."""
    if not ests[0].identified:
        return {"identified": False, "why": ests[0].why}
    return {"identified": True, "why": "", **{k: [_num(getattr(e, k)) for e in ests] for k in ("value", "low", "high")}}


def parabolas(minima: list[dict], runs: pd.DataFrame) -> list[dict]:
    """Each budget's IsoFLOP parabola across its runs' sizes, and its minimum (N_opt, loss there) where it has one."""
    out = []
    for m in minima:
        if m["parabola"] is None:
            out.append({"N": None, "loss": None, "minimum": None})
            continue
        n = runs.loc[np.isclose(runs["budget"], m["compute"]), "N"]
        x = np.linspace(np.log(n.min()), np.log(n.max()), N_PARABOLA)
        minimum = None if m["n_opt"] is None else [m["n_opt"], float(np.polyval(m["parabola"], np.log(m["n_opt"])))]
        out.append({"N": np.exp(x).tolist(), "loss": np.polyval(m["parabola"], x).tolist(), "minimum": minimum})
    return out


def fitted_runs(fit: LawFit, runs: pd.DataFrame) -> dict:
    """A law's fitted loss at each of its runs beside the measured one (in-sample: how well the form fits), and its
    parameters that are not identified, in the law's order (fits.json comes back with its keys sorted)."""
    features = {f: runs[f].to_numpy(float) for f in fit.law.features}
    fitted, loss = fit.predict(**features), runs["loss"].to_numpy()
    return {"budget": runs["budget"].tolist(), "fitted": fitted.tolist(), "loss": loss.tolist(),
            "se": runs["se"].tolist(), "rms": float(np.sqrt(np.mean((loss - fitted) ** 2))),
            "unidentified": [n for n in fit.law.names if not fit.estimates[n].identified]}  # fmt: skip


def check_curve(check: dict, fits: dict[str, LawFit], cs: np.ndarray) -> dict | None:
    """The picked design's law along the compute axis, L(N, D = its tokens × C / C*); None without a prediction."""
    pick = check["pick"]
    if pick is None or not pick["predicted"]["identified"]:
        return None
    fit = fits[pick["design"]]
    return band([predict_loss(fit, N=pick["N"], D=pick["D"] * c / check["compute"]) for c in cs])


def curves(laws: dict, runs: pd.DataFrame) -> dict:
    """What the figures draw of the laws, evaluated here (the figures evaluate nothing): on the compute axis
    `compute`, dense N_opt by approach 2 and 3, each design's compute-optimal loss and the check's law, each with
    its 95 % band over refits; each budget's IsoFLOP parabola; each law's fitted loss at its runs."""
    grid = runs[runs["role"] == "grid"]
    dense = grid["design"] == "dense"
    in_sample = {key: law_from(laws[key]) for key in ("dense", "moe") if key in laws}  # the law_fit figure's
    fits = {d: law_from(fit) for d in laws["designs"] if (fit := design_law(laws, d)) is not None}
    cs = np.geomspace(min(laws["budgets"]) * SPAN[0], laws["check"]["compute"] * SPAN[1], N_SPAN)
    k = laws["flops_per_param_token"]
    optima = {d: [compute_optimal(fit, c, flops_per_param_token=k) for c in cs] for d, fit in fits.items()}
    out = {
        "compute": cs.tolist(),
        "parabolas": {d: parabolas(iso["minima"], grid[grid["design"] == d]) for d, iso in laws["isoflop"].items()},
        "fitted": {key: fitted_runs(fit, grid[dense == (key == "dense")]) for key, fit in in_sample.items()},
        "optimal_loss": {d: band([o.loss for o in opt]) for d, opt in optima.items()},
        "check": check_curve(laws["check"], fits, cs),
    }
    if "dense" in optima:
        out["n_opt"] = band([o.n_params for o in optima["dense"]])
    if "dense" in laws["isoflop"]:
        iso = isoflop_from(laws["isoflop"]["dense"])
        out["n_opt_isoflop"] = band([iso.n_opt(c) for c in cs])
    return out


# ------------------------------------------------------------------------------------------ predicted vs measured


def measured_check(laws: dict, runs: pd.DataFrame) -> dict | None:
    """The check's trained runs (one per seed) against the prediction: the mean over seeds with its t-interval,
    the seed-to-seed SD, the difference in nats and %, whether it is inside the 95 % interval and within 1 %,
    and the difference over the combined uncertainty (prediction's and the mean's)."""
    check = runs[runs["role"] == "check"]
    if check.empty:
        return None
    losses = check.sort_values("seed")["loss"].to_numpy(float)
    n, mean = len(losses), float(losses.mean())
    sd = float(losses.std(ddof=1)) if n > 1 else float("nan")
    ci = t_interval(losses)
    seeds = [int(s) for s in check.sort_values("seed")["seed"]]
    out = {"seeds": seeds, "losses": losses.tolist(), "mean": mean, "sd": _num(sd),
           "ci": [_num(v) for v in ci], "eval_se": float(check["se"].mean())}  # fmt: skip
    pred = laws["check"]["pick"]["predicted"]
    if not pred["identified"]:
        return out | {"verdict": "no prediction to test (not identified); the measured loss is descriptive"}
    value, low, high = pred["value"], pred["low"], pred["high"]
    diff = mean - value
    spread = sd / math.sqrt(n) if n > 1 else out["eval_se"]  # one seed: only the evaluation's own error is known
    combined = math.hypot((high - low) / (2 * stats.norm.ppf(0.5 + CI_LEVEL / 2)), spread)
    inside, close = low <= mean <= high, abs(diff) <= TOLERANCE * value
    out |= {"diff": diff, "rel": diff / value, "inside": inside, "within_tolerance": close, "z": diff / combined,
            "seeds_inside": int(((losses >= low) & (losses <= high)).sum())}  # fmt: skip
    out["verdict"] = verdict(out, value, low, high)
    if not (inside and close):
        out["signs"] = miss_signs(out, laws, runs)
    return out


def miss_signs(m: dict, laws: dict, runs: pd.DataFrame) -> list[str]:
    """What the runs say about a miss: its direction, a measured loss under the law's fitted floor E, and check
    seeds spread far wider than the grid's seeds (runs in a regime the grid's budgets did not reach)."""
    pick = laws["check"]["pick"]
    signs = [f"the check learned {'more' if m['diff'] < 0 else 'less'} than its law extrapolates to C*"]
    floor = law_from(design_law(laws, pick["design"])).params["E"]
    if m["mean"] < floor:
        signs.append(f"its mean lies below the law's fitted floor E = {floor:.4f}: at this compute that is no floor")
    grid = runs[(runs["role"] == "grid") & (runs["design"] == pick["design"])]
    top = grid[np.isclose(grid["budget"], grid["budget"].max())]
    cells = top.groupby("size")["loss"]
    if m["sd"] is not None and (cells.count() > 1).all():
        grid_sd = float(np.sqrt(cells.var(ddof=1).mean()))  # pooled over the largest budget's sizes
        if m["sd"] > 3 * grid_sd:
            wide = f"its seeds spread {m['sd'] / grid_sd:.0f}× as wide (SD {m['sd']:.4f}) as the grid's"
            signs.append(f"{wide} at the largest budget ({grid_sd:.4f}): the runs changed behaviour past the budgets")
    return signs


def verdict(m: dict, value: float, low: float, high: float) -> str:
    """The check's result in words: hit or miss, and by how much."""
    where = "inside" if m["inside"] else f"outside (by {max(low - m['mean'], m['mean'] - high):.4f} nats)"
    close = "within" if m["within_tolerance"] else "not within"
    hit = m["inside"] and m["within_tolerance"]
    return (f"{'hit' if hit else 'miss'}: the measured mean is {where} the 95 % interval and {close} "
            f"{TOLERANCE:.0%} of the prediction ({m['diff']:+.4f} nats, {m['rel']:+.2%}; "
            f"{m['z']:+.1f} combined SDs)")  # fmt: skip


def compute(record: SweepRecord) -> dict:
    """The study's laws (fitted now unless the record already holds them: the check was predicted before it was
    trained), the figures' curves, and the check's measured runs compared against its prediction."""
    laws, runs = record.fits.get("laws") or fit_laws(record), runs_table(record)
    if "curves" not in laws:  # also for laws saved before they carried curves: evaluated from the fits, not refitted
        laws["curves"] = curves(laws, runs)
    if laws["check"]["pick"] is not None:
        laws["check"]["measured"] = measured_check(laws, runs)
    # The points behind the laws: the report's figures and tables are drawn from fits.json alone.
    laws["runs"] = json.loads(runs.to_json(orient="records", double_precision=15))
    return laws


def with_check(grid: SweepRecord, check: SweepRecord, laws: dict) -> SweepRecord:
    """One record of the study: the grid's trials (role "grid", at the base seed) and the check's (role "check"),
    their axes joined, the laws fitted on the grid alone before the check trained."""
    seed = grid.meta.base["train"]["seed"]

    def part(role: str, table: pd.DataFrame) -> pd.DataFrame:
        table = table.drop(columns=["config", "trial_config"], errors="ignore").assign(**{ROLE: role})
        return table if SEED_AXIS in table or table.empty else table.assign(**{SEED_AXIS: seed})

    meta = grid.meta.model_copy(deep=True)
    axes = {**grid.meta.axes, **check.meta.axes}
    meta.axes = {a: list(dict.fromkeys([*grid.meta.axes.get(a, [seed]), *check.meta.axes.get(a, [])])) for a in axes}
    meta.wall_time_s = (grid.meta.wall_time_s or 0.0) + (check.meta.wall_time_s or 0.0)
    meta.fit_wall_time_s = (grid.meta.fit_wall_time_s or 0.0) + (check.meta.fit_wall_time_s or 0.0)
    results = pd.concat([part("grid", grid.results), part("check", check.results)], ignore_index=True)
    history = pd.concat([part("grid", grid.history), part("check", check.history)], ignore_index=True)
    return SweepRecord(grid.uri, meta, results, history, fits={"laws": laws}, tb_dir=grid.tb_dir)
