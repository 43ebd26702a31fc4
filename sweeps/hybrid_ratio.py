"""Hybrid-ratio study: attention vs HyenaLite blocks, dense vs MoE, at equal parameter budget.

Variants (per group of four blocks, HyenaMoE §3): dense transformer (D), MoE transformer
(A), Pure Hyena (H), Striped (H/D alternating), HyenaMoE Fast (1 A : 3 H), Standard
(2 : 2 alternating) and Expressive (3 A : 1 H). Each variant's width is chosen so its total
parameter count is closest to the base (dense) model's, then its FFN size closes the gap;
equal tokens per trial.

    python sweeps/hybrid_ratio.py --variants dense fast standard expressive
"""

from __future__ import annotations

from raybio.study import Study, run_study
from raybio.tune.record import Claim
from raybio.tune.space import VARIANTS


def add_args(g) -> None:
    g.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), help="variants (default: all; smoke: dense fast)")
    g.add_argument("--experts", type=int, default=4, help="experts in MoE blocks (default 4)")


STUDY = Study(
    name="hybrid_ratio",
    question="At equal parameters, how do attention/Hyena ratio and MoE trade loss against throughput and memory?",
    add_args=add_args,
    axes=lambda args: {"variant_equal_params": args.variants or (["dense", "fast"] if args.smoke else list(VARIANTS))},
    # Patterns repeat in groups of four blocks, so depth must be a multiple of 4 (the smoke model has 2).
    overrides=lambda args: (
        ["model.pattern=D", f"model.moe.num_experts={args.experts}", "model.moe.top_k=1"]
        + (["model.n_layers=4"] if args.smoke else [])
    ),
    claims=[
        Claim(
            text="at equal parameters, more attention (Expressive, 3 A : 1 H) lowers the loss below Fast (1 A : 3 H)",
            source="HyenaMoE §4 (quality Expressive > Standard > Fast; throughput the other way)",
            baseline={"variant_equal_params": "fast"},
            treatment={"variant_equal_params": "expressive"},
        )
    ],
)


def main(argv: list[str] | None = None) -> None:
    run_study(STUDY, argv, doc=__doc__)


if __name__ == "__main__":
    main()
