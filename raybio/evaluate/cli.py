"""Arguments and entry point of `raybio evaluate`."""

from __future__ import annotations

import argparse

from raybio.evaluate.protocols import EvalConfig
from raybio.evaluate.runner import BUNDLED_TASKS, evaluate, find_checkpoints, format_summary, write_table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoints", nargs="+", help="checkpoint directories (model.pt + config.json) or sweep directories"
    )
    p.add_argument(
        "--tasks",
        nargs="+",
        default=list(BUNDLED_TASKS),
        help=f"bundled task names or CSV/FASTA paths (default: all of {', '.join(BUNDLED_TASKS)})",
    )
    p.add_argument(
        "--task",
        dest="extra_tasks",
        action="append",
        default=[],
        metavar="PATH",
        help="a custom task file (repeatable)",
    )
    p.add_argument("--protocol", nargs="+", default=["finetune"], choices=["finetune", "probe"])
    p.add_argument("--seeds", type=int, default=3, help="seeds per run (default 3)")
    p.add_argument("--pooling", default="mean", choices=["mean", "first"])
    p.add_argument("--epochs", type=int, default=EvalConfig().epochs)
    p.add_argument("--batch-size", type=int, default=EvalConfig().batch_size)
    p.add_argument("--lr", type=float, default=EvalConfig().lr, help="fine-tune learning rate")
    p.add_argument("--max-train", type=int, help="downsample each task's train split to this many rows (stratified)")
    p.add_argument("--no-baselines", action="store_true", help="skip k-mer, CNN and from-scratch baselines")
    p.add_argument("--no-ray", action="store_true", help="run in this process, one run after another")
    p.add_argument(
        "--routing-change",
        action="store_true",
        help="for MoE checkpoints: per-layer JS divergence between tasks' routing before vs after fine-tuning",
    )
    p.add_argument("--out", default="./downstream", help="folder (or s3:// URI) for downstream.csv / .parquet")


def run(args: argparse.Namespace) -> None:
    cfg = EvalConfig(
        pooling=args.pooling, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, max_train=args.max_train
    )
    checkpoints = [c for path in args.checkpoints for c in find_checkpoints(path)]
    _, summary, _ = evaluate(
        checkpoints,
        [*args.tasks, *args.extra_tasks],
        cfg,
        args.seeds,
        tuple(args.protocol),
        baselines=not args.no_baselines,
        out_dir=args.out,
        use_ray=not args.no_ray,
    )
    print(format_summary(summary))
    if args.routing_change:
        write_routing_change(checkpoints, [*args.tasks, *args.extra_tasks], cfg, args.out)
    print(f"runs: {args.out}/downstream.csv, summary: {args.out}/downstream_summary.csv")


def write_routing_change(checkpoints: list[str], tasks: list[str], cfg: EvalConfig, out: str) -> None:
    """routing_change.{csv,parquet}: one row per (checkpoint, MoE layer); dense checkpoints are skipped, said so."""
    import pandas as pd

    from raybio.evaluate import backbone as bb
    from raybio.evaluate.routing_change import routing_change

    frames = []
    for ckpt in checkpoints:
        if "A" not in bb.load(ckpt)[0].cfg.blocks:
            print(f"routing change: {ckpt} has no MoE layers, skipped")
            continue
        frames.append(routing_change(ckpt, tasks, cfg).assign(checkpoint=ckpt))
    if frames:
        df = pd.concat(frames, ignore_index=True)
        write_table(df, out, "routing_change")
        print(df.to_string(index=False))
