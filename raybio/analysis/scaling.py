"""Scaling laws fitted to separately trained runs, each answer with an interval and an identification verdict.

**Intended use.** Every row is one run trained to its own budget, with its schedule decayed at its own
end: an IsoFLOP grid of a few compute budgets × a few model sizes (and designs). Fit separately trained
budgets, never the intermediate evaluations of one decaying schedule: half-way through a cosine run is
not the run one would have planned for half the compute, and successive evaluations of one run are not
independent draws.

- `fit_approach3`: L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, approach 3; the machinery is in
  fitting.py: Huber δ = 1e-3 on log loss, L-BFGS-B from a grid, bootstrap over runs within budgets).
- `fit_isoflop`: approach 2, a parabola per budget and N_opt ∝ C^a (isoflop.py), as a cross-check.
- `fit_granular_moe`: L(N, D, G) = E + (g/G^γ + A)/N^α + B/D^β (Krajewski et al. 2024). Chosen over the
  joint law in the expert count of Ludziejewski et al. 2025: that law has 9 parameters, four of them
  interactions with ln E that need three or more expert counts, each on its own IsoFLOP grid; Krajewski's
  has 7 and needs three granularities of one MoE family. Dense runs get their own approach-3 fit.
- `predict_loss`, `compute_optimal`, `efficiency_leverage`: derived answers. Each is an `Estimate` that
  carries no number when a parameter it rests on is not identified (rule in estimates.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raybio.analysis.estimates import Estimate, derived
from raybio.analysis.fitting import LawFit, fit_law
from raybio.analysis.isoflop import IsoFlopFit, fit_isoflop
from raybio.analysis.laws import CHINCHILLA, GRANULAR_MOE, chinchilla_form, compute_for_loss, compute_optimum
from raybio.units import si

__all__ = [
    "Estimate",
    "IsoFlopFit",
    "LawFit",
    "Optimum",
    "compute_optimal",
    "efficiency_leverage",
    "fit_approach3",
    "fit_granular_moe",
    "fit_isoflop",
    "predict_loss",
]


def fit_approach3(n_params, tokens, loss, budget, *, n_boot: int = 200, seed: int = 0) -> LawFit:
    """Chinchilla L(N, D) on runs with active parameters N, training tokens D and nominal compute budget
    (the bootstrap stratum)."""
    return fit_law(CHINCHILLA, {"N": n_params, "D": tokens}, loss, strata=budget, n_boot=n_boot, seed=seed)


def fit_granular_moe(n_params, tokens, granularity, loss, budget, *, n_boot: int = 200, seed: int = 0) -> LawFit:
    """Krajewski's L(N, D, G) on MoE runs of one family (same expansion rate and routing), G = dense FFN
    hidden / expert hidden. A, g and γ need three granularities or more: with two, the runs fix only two
    N-coefficients, and the fit reports the three as not identified (fitting.structural_problems)."""
    features = {"N": n_params, "D": tokens, "G": granularity}
    return fit_law(GRANULAR_MOE, features, loss, strata=budget, n_boot=n_boot, seed=seed)


def predict_loss(fit: LawFit, **features: float) -> Estimate:
    """L̂ at one point (e.g. N=…, D=…): the full fit's prediction, the refits' 95 % interval."""
    point = float(fit.predict(**features)[0])
    draws = np.array([fit.predict(theta=row, **features)[0] for row in fit.boot_theta])
    where = ", ".join(f"{k} = {si(v)}" for k, v in features.items())
    return derived(point, draws, resting_on(fit, features), f"the loss at {where}")


def resting_on(fit: LawFit, fixed: dict[str, float]) -> dict[str, Estimate]:
    """The parameters a quantity with these features fixed rests on: all but an exponent whose every feature is
    fixed at 1 (x^−s = 1 for any s: Krajewski's γ at G = 1), whose identification cannot matter there."""
    powers = [(s, f) for term in fit.law.terms for s, f in term.powers]
    idle = {s for s, _ in powers} - {s for s, f in powers if fixed.get(f) != 1}
    return {k: v for k, v in fit.estimates.items() if k not in idle}


@dataclass(frozen=True)
class Optimum:
    """The compute-optimal design at one compute budget."""

    compute: float
    n_params: Estimate
    tokens: Estimate
    loss: Estimate


def compute_optimal(fit: LawFit, compute: float, *, flops_per_param_token: float = 6.0, **fixed: float) -> Optimum:
    """N_opt, D_opt and L* at `compute` = k·N·D, with any other feature fixed (e.g. G=4 for the MoE law).

    N_opt and D_opt do not depend on the floor E; L* does."""
    point = compute_optimum(*chinchilla_form(fit.law, fit.params, fixed), compute, flops_per_param_token)
    draws = compute_optimum(*chinchilla_form(fit.law, fit.boot_params(), fixed), compute, flops_per_param_token)
    depends = resting_on(fit, fixed)
    no_floor = {k: v for k, v in depends.items() if k != "E"}
    what = f"the optimum at C = {si(compute, 'FLOP')}"
    return Optimum(
        compute=compute,
        n_params=derived(point[0], draws[0], no_floor, what),
        tokens=derived(point[1], draws[1], no_floor, what),
        loss=derived(point[2], draws[2], depends, what),
    )


def efficiency_leverage(
    dense: LawFit, moe: LawFit, compute: float, *, flops_per_param_token: float = 6.0, **fixed: float
) -> Estimate:
    """Dense compute needed to reach the MoE design's compute-optimal loss at `compute`, divided by `compute`.

    `fixed` pins the MoE law's other features (G=…). Both laws count N as active parameters, so C = k·N·D
    for both. Refits are paired by index (the two bootstraps are independent). inf: the MoE's loss lies
    below the dense floor E."""

    def leverage(d_params, m_params):
        target = compute_optimum(*chinchilla_form(moe.law, m_params, fixed), compute, flops_per_param_token)[2]
        dense_form = chinchilla_form(dense.law, d_params, {})
        return compute_for_loss(*dense_form, target, compute, flops_per_param_token) / compute

    n = min(len(dense.boot_theta), len(moe.boot_theta))
    d_boot = dense.law.public(dense.boot_theta[:n], dense.x0)
    m_boot = moe.law.public(moe.boot_theta[:n], moe.x0)
    depends = {f"dense {k}": v for k, v in dense.estimates.items()}
    depends |= {f"MoE {k}": v for k, v in resting_on(moe, fixed).items()}
    point = float(leverage(dense.params, moe.params))
    return derived(point, leverage(d_boot, m_boot), depends, f"the leverage at C = {si(compute, 'FLOP')}")
