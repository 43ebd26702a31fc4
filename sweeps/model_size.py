"""Model-size study: Optuna multi-objective search over width, depth and experts.

Minimises validation loss and maximises training tokens/s (or, with `--objective flops`,
minimises training FLOPs) at equal tokens per trial; the report draws the Pareto front.

    python sweeps/model_size.py --num-samples 12
"""

from __future__ import annotations

from raybio.study import Study, run_study


def add_args(g) -> None:
    g.add_argument("--d-model", type=int, nargs="+", help="widths (default 64 128 192 256; smoke: 32 64)")
    g.add_argument("--n-layers", type=int, nargs="+", help="depths (default 2 4 6; smoke: 2)")
    g.add_argument("--experts", type=int, nargs="+", help="expert counts, 1 = dense (default 1 4 8; smoke: 1 2)")
    g.add_argument(
        "--objective",
        choices=["throughput", "flops"],
        default="throughput",
        help="second objective (default throughput)",
    )


def axes(args) -> dict:
    smoke = args.smoke
    return {
        "d_model": args.d_model or ([32, 64] if smoke else [64, 128, 192, 256]),
        "n_layers": args.n_layers or ([2] if smoke else [2, 4, 6]),
        "experts": args.experts or ([1, 2] if smoke else [1, 4, 8]),
    }


def search_metric(args) -> tuple[list[str], list[str]]:
    if args.objective == "flops":
        return ["val_loss", "train_flops_cum"], ["min", "min"]
    return ["val_loss", "tokens_per_s"], ["min", "max"]


STUDY = Study(
    name="model_size",
    question="Which width, depth and expert count give the best loss for the throughput (or compute) spent?",
    add_args=add_args,
    axes=axes,
    overrides=lambda args: ["model.moe.top_k=1"],
    search="optuna",
    search_metric=search_metric,
)


def main(argv: list[str] | None = None) -> None:
    run_study(STUDY, argv, doc=__doc__)


if __name__ == "__main__":
    main()
