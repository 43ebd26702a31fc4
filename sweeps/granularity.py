"""Granularity study: more, smaller experts at fixed active compute (DeepSeekMoE fine-grained experts).

Granularity g splits each of the base E experts into g experts of 1/g the hidden size and
routes each token to g·k of them: parameters and active FLOPs stay fixed while the number
of expert combinations grows. Equal tokens per trial.

    python sweeps/granularity.py --granularity 1 2 4 8
"""

from __future__ import annotations

from raybio.study import Study, run_study
from raybio.tune.record import Claim


def add_args(g) -> None:
    g.add_argument("--granularity", type=int, nargs="+", help="split factors (default 1 2 4 8; smoke: 1 2)")
    g.add_argument("--experts", type=int, default=4, help="experts at granularity 1 (default 4)")
    g.add_argument("--top-k", type=int, default=1, help="top-k at granularity 1 (default 1)")


STUDY = Study(
    name="granularity",
    question="At fixed parameters and active compute, do more, smaller experts learn better, and at what speed?",
    add_args=add_args,
    axes=lambda args: {"granularity": args.granularity or ([1, 2] if args.smoke else [1, 2, 4, 8])},
    overrides=lambda args: [
        "model.pattern=A",
        f"model.moe.num_experts={args.experts}",
        f"model.moe.top_k={args.top_k}",
    ],
    claims=[
        Claim(
            text="at fixed total parameters and active compute, finer experts lower the validation loss",
            source="DeepSeekMoE (fine-grained expert segmentation); Krajewski et al. 2024",
            baseline={"granularity": 1},
        )
    ],
)


def main(argv: list[str] | None = None) -> None:
    run_study(STUDY, argv, doc=__doc__)


if __name__ == "__main__":
    main()
