"""Scaling study: Chinchilla's IsoFLOP design, dense and MoE, and laws that predict a larger run before it trains.

For each compute budget C (default 3, 3× apart) every size of the micro preset ladder trains to
D = C / (its analytic train FLOPs per token) tokens with its own complete schedule (`train.flop_budget`:
warmup, then cosine decay ending at its own last step; validated at the end only), as a dense SwiGLU
model and as MoE at equal active compute: --experts experts' worth of FFN at granularity G = 1, 2, 4
(E·G experts of 1/G the FFN's hidden size, top-G), the design family of Krajewski et al. 2024.

Fitted on the grid (raybio/analysis/scaling_study.py): L(N, D) by approach 3 with intervals by bootstrap
over runs, IsoFLOP minima (approach 2), Krajewski's L(N, D, G) on the MoE arms and the efficiency
leverage. Then the predictive check: at C* (--predict, default 4× the largest budget) the ladder size ×
design with the lowest *identified* predicted loss is trained once per --check-seeds seed, and the report
sets the measured loss against the prediction made before it trained.

    python sweeps/scaling.py                       # the default grid (about 30 min on 2 cores; one seed)
    python sweeps/scaling.py --designs dense moe_g2 --train-seeds 0 1 2 3 --check-seeds 0 1
                                                   # the committed CPU report (44 min): 4 seeds identify the laws
    python sweeps/scaling.py --smoke               # the path end to end in a few minutes
    ray job submit --working-dir . -- python sweeps/scaling.py --budgets 1e15 3e15 9e15 \\
        --sizes micro-3 micro-4 micro-5 micro-6 --gpus-per-worker 1
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from raybio.analysis.scaling_report import console_text
from raybio.analysis.scaling_study import BUDGET_AXIS, compute, fit_laws, with_check
from raybio.study import Study, run_study
from raybio.tune.record import SEED_AXIS, SweepRecord
from raybio.tune.runner import SweepSpec, run_sweep

BUDGETS = [1.5e11, 4.5e11, 1.35e12]  # training FLOPs; 3× apart (docs/sweeps.md#scaling)
SIZES = ["micro-1", "micro-2", "micro-3", "micro-4", "micro-5"]
DESIGNS = ["dense", "moe_g1", "moe_g2", "moe_g4"]
# --smoke: the lambda corpus, 64-token windows, a few steps per run; the check trains whatever the laws pick
# or, when they pick nothing (they rarely identify anything from runs this small), the largest smoke size.
SMOKE = {"budgets": [1.5e9, 4.5e9], "sizes": ["micro-1", "micro-2", "micro-3"], "designs": ["dense", "moe_g2"],
         "check_design": "micro-3:dense", "check_seeds": [0, 1]}  # fmt: skip


def add_args(g) -> None:
    g.add_argument("--budgets", type=float, nargs="+", help=f"compute budgets C, training FLOPs (default {BUDGETS})")
    g.add_argument("--sizes", nargs="+", help=f"model sizes: presets of one ladder (default {' '.join(SIZES)})")
    g.add_argument("--designs", nargs="+", help=f"dense and/or moe_g<G> (default {' '.join(DESIGNS)})")
    g.add_argument("--experts", type=int, default=4, help="experts at G = 1, top-1: the MoE expansion (default 4)")
    g.add_argument(
        "--predict",
        default="4x",
        help="the check's compute C*: training FLOPs (3e13) or a multiple of the largest budget (4x); off: no check",
    )
    g.add_argument("--check-seeds", type=int, nargs="+", help="seeds of the check's runs (default 0 1 2)")
    g.add_argument(
        "--check-design",
        metavar="SIZE:DESIGN",
        help="train this design at C* instead of the laws' pick (its prediction is still printed if identified)",
    )


def pick(args, name: str, default):
    """A flag's value, else the smoke grid's under --smoke, else the default."""
    value = getattr(args, name)
    return value if value is not None else SMOKE.get(name, default) if args.smoke else default


def axes(args) -> dict:
    designs = pick(args, "designs", DESIGNS)
    if bad := [d for d in designs if d != "dense" and not (d.startswith("moe_g") and d[5:].isdigit())]:
        raise ValueError(f"--designs {bad}: use dense or moe_g<G> (moe_g1, moe_g2, …)")
    return {BUDGET_AXIS: pick(args, "budgets", BUDGETS), "size": pick(args, "sizes", SIZES), "design": designs}


def check_compute(predict: str, budgets: list[float]) -> float | None:
    """C* from --predict: None for off, a multiple of the largest budget ("4x"), or FLOPs; past the grid."""
    if predict.lower() in ("off", "0", "none"):
        return None
    c_star = float(predict[:-1]) * max(budgets) if predict.lower().endswith("x") else float(predict)
    if c_star <= max(budgets):
        raise ValueError(f"--predict {predict}: C* = {c_star:.3g} must exceed the largest budget {max(budgets):.3g}")
    return c_star


def run(spec: SweepSpec, args: argparse.Namespace) -> SweepRecord:
    """The grid; the laws fitted on it and the check's design picked (printed); then the check's runs, trained
    as a second sweep, joined to the grid's record with the laws fitted before they trained."""
    grid = run_sweep(spec)
    c_star = check_compute(args.predict, spec.axes[BUDGET_AXIS])
    if c_star is None or grid.ok.empty:
        return grid
    print(f"[raybio] fitting the laws on {len(grid.ok)} runs (bootstrap over runs)", flush=True)
    fallback = SMOKE["check_design"] if args.smoke else None  # the smoke trains its check whatever the laws say
    laws = fit_laws(grid, check_compute=c_star, check_design=args.check_design, fallback_design=fallback)
    print(console_text(laws), flush=True)
    chosen = laws["check"]["pick"]
    if chosen is None:
        grid.fits["laws"] = laws
        return grid
    seeds = pick(args, "check_seeds", [0, 1, 2])
    check_axes = {BUDGET_AXIS: [c_star], "size": [chosen["size"]], "design": [chosen["design"]], SEED_AXIS: seeds}
    print(f"[raybio] the check: {chosen['size']} {chosen['design']} at {c_star:.3g} FLOPs, seeds {seeds}", flush=True)
    # Its own folder holds a plain record (no study analysis of its own); the study's record joins both stages.
    check = run_sweep(replace(spec, name=f"{spec.name}_check", axes=check_axes, study=""))
    record = with_check(grid, check, laws)
    record.fits["laws"] = compute(record)
    print(console_text(record.fits["laws"]), flush=True)
    return record


STUDY = Study(
    name="scaling",
    question="Which model size and design are compute-optimal, and do laws fitted on small budgets predict a 4× "
    "larger run?",
    add_args=add_args,
    axes=axes,
    overrides=lambda args: [f"model.moe.num_experts={args.experts}", "model.moe.top_k=1"],
    data=["bundled:ecoli"],  # the micro presets' corpus (3-mers, reverse complements added)
    preset="micro-3",
    probe="off",  # dozens of configs: --probe after times each one
    run=run,
)


def main(argv: list[str] | None = None) -> None:
    run_study(STUDY, argv, doc=__doc__)


if __name__ == "__main__":
    main()
