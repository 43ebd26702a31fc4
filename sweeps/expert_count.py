"""Expert-count study: loss, throughput and memory vs the number of experts.

One trial per expert count (1 = the dense SwiGLU baseline) at a fixed top-k and an equal
token budget. With no arguments: local Ray, the bundled E. coli genome, CPU, `tiny` preset.

    python sweeps/expert_count.py                      # embedded default
    ray job submit --working-dir . -- python sweeps/expert_count.py \\
        --storage s3://bucket/raybio --preset omni-60m --gpus-per-worker 1 --num-workers 4
"""

from __future__ import annotations

from raybio.study import Budget, Study, run_study
from raybio.tune.record import Claim


def add_args(g) -> None:
    g.add_argument("--experts", type=int, nargs="+", help="expert counts to compare (default 1 2 4 8; smoke: 1 2)")
    g.add_argument("--top-k", type=int, default=1, help="experts per token, fixed across trials (default 1)")


def axes(args) -> dict:
    experts = args.experts or ([1, 2] if args.smoke else [1, 2, 4, 8])
    if too_few := [e for e in experts if 1 < e < args.top_k]:
        raise ValueError(f"--experts {too_few} are fewer than --top-k {args.top_k}; raise them or lower --top-k")
    return {"experts": experts}


STUDY = Study(
    name="expert_count",
    question="How do loss, throughput and memory change with the number of experts at fixed top-k and tokens?",
    add_args=add_args,
    axes=axes,
    overrides=lambda args: [f"model.moe.top_k={args.top_k}"],
    claims=[
        Claim(
            text="at equal active compute and tokens, more experts lower the validation loss",
            source="Clark et al. 2022; Switch Transformer; HyenaMoE Table 1",
            baseline={"experts": 1},
        )
    ],
    budgets={
        # make demo: under 10 minutes on 2 cores with install (the tiny preset's 200 steps took 10 m 38 s there).
        # Validated once, at the end, on the whole validation split (304 windows, two mask draws): the expert
        # counts differ by a few thousandths of a nat, and the eval SE of a paired difference must stay under a
        # third of that (0.0008 on this sample in the 5-seed fine-grained run; 128 windows with one draw put
        # ~0.009 on each loss). A validation at step 80 too would cost ~13 s a trial for a point nobody compares.
        "demo": Budget(
            about="160 steps on E. coli, validated at the end on the whole validation split: the `make demo` budget",
            overrides=["train.max_steps=160", "train.eval_every=0", "train.checkpoint_every=80"],
        ),
        # The findings run of docs/findings.md: --experts 1 8 --train-seeds 0 1 (add --max-steps for longer).
        "long": Budget(
            about="600 steps on human chr22 + E. coli + its proteins (multi-omic 3-mers), the findings run",
            data=["bundled:human_chr22", "bundled:ecoli", "bundled:ecoli_proteins"],
            overrides=[
                "data.tokenizer.kind=multiomic",
                "data.tokenizer.k=3",
                "train.max_steps=600",
                "train.warmup_steps=60",
                "train.eval_every=100",
                "train.checkpoint_every=0",
            ],
        ),
    },
)


def main(argv: list[str] | None = None) -> None:
    run_study(STUDY, argv, doc=__doc__)


if __name__ == "__main__":
    main()
