"""Context-length study: throughput and memory vs context for attention vs hybrid models.

Each context length keeps the tokens per step fixed (the batch shrinks as windows grow) and
trains for the same number of steps: equal tokens. Attention cost per token grows with the
context; HyenaLite's FFT convolution grows only logarithmically.

    python sweeps/seq_len.py --seq-lens 256 512 1024 2048 --variants dense fast
    python sweeps/seq_len.py --probe-only --equal-params --seq-lens 2048 8192 16384 \
        --variants dense fast standard expressive pure_hyena     # throughput alone, no training
"""

from __future__ import annotations

from raybio.study import Study, run_study
from raybio.tune.space import VARIANTS


def add_args(g) -> None:
    g.add_argument("--seq-lens", type=int, nargs="+", help="context lengths in tokens (default 256 512 1024 2048)")
    g.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), help="block patterns (default dense fast)")
    g.add_argument(
        "--equal-params",
        action="store_true",
        help="size each variant to the base model's parameter count (as the hybrid_ratio study does)",
    )


def axes(args) -> dict:
    variant = "variant_equal_params" if args.equal_params else "variant"
    if args.smoke:
        return {"seq_len": args.seq_lens or [32, 64], variant: args.variants or ["dense"]}
    return {"seq_len": args.seq_lens or [256, 512, 1024, 2048], variant: args.variants or ["dense", "fast"]}


STUDY = Study(
    name="seq_len",
    question="How do throughput and memory scale with context length for attention vs hybrid Hyena models?",
    add_args=add_args,
    axes=axes,
    overrides=lambda args: ["model.moe.top_k=1", "model.moe.num_experts=4"],
)


def main(argv: list[str] | None = None) -> None:
    run_study(STUDY, argv, doc=__doc__)


if __name__ == "__main__":
    main()
