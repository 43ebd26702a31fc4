"""Expert-count study: loss, throughput and memory vs the number of experts.

One trial per expert count (1 = the dense SwiGLU baseline) at a fixed top-k and an equal
token budget. With no arguments: local Ray, the bundled E. coli genome, CPU, `tiny` preset.

    python sweeps/expert_count.py                      # embedded default
    ray job submit --working-dir . -- python sweeps/expert_count.py \\
        --storage s3://bucket/raybio --preset omni-60m --gpus-per-worker 1 --num-workers 4
"""

from __future__ import annotations

import argparse
import sys

from raybio.config import ConfigError
from raybio.tune.args import add_common_args, base_experiment
from raybio.tune.runner import SweepSpec, run_sweep


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, default_name="expert_count")
    g = parser.add_argument_group("study")
    g.add_argument("--experts", type=int, nargs="+", help="expert counts to compare (default 1 2 4 8; smoke: 1 2)")
    g.add_argument("--top-k", type=int, default=1, help="experts per token, fixed across trials (default 1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        base = base_experiment(args, [f"model.moe.top_k={args.top_k}"])
    except (ConfigError, ValueError) as err:
        sys.exit(f"error: {err}")
    experts = args.experts or ([1, 2] if args.smoke else [1, 2, 4, 8])
    if too_few := [e for e in experts if 1 < e < args.top_k]:
        sys.exit(f"error: --experts {too_few} are fewer than --top-k {args.top_k}; raise them or lower --top-k")
    spec = SweepSpec(
        name=args.name,
        axes={"experts": experts},
        base=base,
        storage=args.storage,
        search=args.search,
        num_samples=args.num_samples,
        seed=args.seed,
    )
    run_sweep(spec)


if __name__ == "__main__":
    main()
