"""Routing study: which routing rule balances experts and learns best (HyenaMoE §4.6 ablation).

Softmax top-k with the Switch load-balancing loss, sigmoid score-normalised top-k
(g = s / Σ_topk s, no aux loss), the same without normalisation, and DeepSeek-V3's
aux-loss-free expert bias; each at top-1 and top-2, equal tokens. `--routers` also offers
the routers of today's MoE models: `softmax_unnormalized` (Qwen-MoE, OLMoE), `mixtral`
(top-1 at weight 1) and `deepseek_v3` (group-limited, scaled aux-free routing; experts
divisible by 4). Reports max/avg expert load, coefficient of variation and dead experts
per layer, and the router anatomy (routing divergence between the bundled E. coli and
phage lambda genomes).

    python sweeps/routing.py
"""

from __future__ import annotations

from raybio.study import Study, run_study
from raybio.tune.record import Claim
from raybio.tune.space import ROUTERS

# The HyenaMoE §4.6 ablation; the other rules in ROUTERS run when named with --routers.
DEFAULT_ROUTERS = ["softmax", "sigmoid", "sigmoid_unnormalized", "aux_free"]


def add_args(g) -> None:
    g.add_argument(
        "--routers", nargs="+", choices=sorted(ROUTERS), help="routing rules (default: the four of HyenaMoE §4.6)"
    )
    g.add_argument("--top-k", type=int, nargs="+", help="top-k values (default 1 2; smoke: 2)")
    g.add_argument("--experts", type=int, default=8, help="experts per MoE layer (default 8)")


def axes(args) -> dict:
    routers = args.routers or (["softmax", "sigmoid"] if args.smoke else DEFAULT_ROUTERS)
    return {"router": routers, "top_k": args.top_k or ([2] if args.smoke else [1, 2])}


STUDY = Study(
    name="routing",
    question="Which routing rule keeps experts balanced and alive, and which learns best, at top-1 and top-2?",
    add_args=add_args,
    axes=axes,
    overrides=lambda args: ["model.pattern=A", f"model.moe.num_experts={args.experts}"],
    # Two genomes, so the router anatomy can compare routing between them.
    data=["bundled:ecoli", "bundled:lambda"],
    smoke_data=["bundled:lambda", "bundled:phix"],
    claims=[
        Claim(
            text="without score normalisation, sigmoid routing leaves experts less balanced (max/mean load)",
            source="HyenaMoE §4.6 (Max/Avg ≈ 7.2 unnormalised)",
            metric="router_max_over_mean_load",
            expected="higher",
            baseline={"router": "sigmoid"},
            treatment={"router": "sigmoid_unnormalized"},
        ),
        Claim(
            text="without score normalisation, sigmoid routing kills experts",
            source="HyenaMoE §4.6 (12–20 dead experts unnormalised)",
            metric="dead_experts",
            expected="higher",
            baseline={"router": "sigmoid"},
            treatment={"router": "sigmoid_unnormalized"},
        ),
    ],
)


def main(argv: list[str] | None = None) -> None:
    run_study(STUDY, argv, doc=__doc__)


if __name__ == "__main__":
    main()
