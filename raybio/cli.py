"""The `raybio` command: prepare a corpus, train one model, run a study, report on it."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from raybio.config import PRESETS, ConfigError, load_config
from raybio.data import storage
from raybio.data.validate import InputError


def _prepare(args: argparse.Namespace) -> None:
    from raybio.data.prepare import default_shards_uri, prepare

    exp = load_config(args.preset, args.config, [*_prepare_overrides(args), *args.set])
    uri = args.out or default_shards_uri(storage.absolute(args.storage), exp.data)
    manifest = prepare(exp.data, uri)
    print(f"corpus {manifest.corpus_id}: {manifest.splits['train'].tokens:,} train tokens at {uri}")


def _train(args: argparse.Namespace) -> None:
    from raybio.cluster import init_ray
    from raybio.data.prepare import default_shards_uri, prepare
    from raybio.train.ray_trainer import ProgressLine, build_trainer

    exp = load_config(args.preset, args.config, args.set)
    root = storage.absolute(args.storage)
    init_ray()
    shards_uri = default_shards_uri(root, exp.data)
    manifest = prepare(exp.data, shards_uri)
    result = build_trainer(exp, shards_uri, manifest, root, args.name, [ProgressLine(exp.train.max_steps)]).fit()
    m = result.metrics or {}
    mfu = m.get("mfu", float("nan"))  # only where the device's peak FLOP/s is known (GPUs)
    print(
        f"step {m.get('step')}: val_loss {m.get('val_loss', float('nan')):.4f} "
        f"(untrained {m.get('init_val_loss', float('nan')):.4f}), {m.get('tokens_per_s', 0):,.0f} tokens/s, "
        + (f"MFU {mfu:.1%}, " if mfu == mfu else "")
        + f"peak memory {m.get('peak_memory_bytes', 0) / 2**20:,.0f} MiB; "
        f"checkpoint {result.checkpoint.path if result.checkpoint else None}"
    )


def _run_script(folder: str, name: str, rest: list[str], what: str) -> None:
    """Run `<folder>/<name>.py` as if invoked directly with `rest` as its arguments."""
    script = Path(folder) / f"{name}.py"
    if not script.exists():
        known = sorted(p.stem for p in Path(folder).glob("*.py"))
        sys.exit(f"error: no {what} {name!r} in {folder}; known: {known}")
    sys.argv = [str(script), *rest]
    runpy.run_path(str(script), run_name="__main__")


def _sweep(args: argparse.Namespace) -> None:
    _run_script(args.sweeps_dir, args.study, args.rest, "study")


def _bench(args: argparse.Namespace) -> None:
    _run_script(args.benchmarks_dir, args.benchmark, args.rest, "benchmark")


def _embed(args: argparse.Namespace) -> None:
    from raybio.models.streaming import embed_fasta, save_embeddings

    records = embed_fasta(
        args.checkpoint, args.fasta, chunk_tokens=args.chunk_tokens, window=args.window, per_token=args.per_token
    )
    save_embeddings(records, args.out)
    print(f"embedded {len(records)} record(s) -> {args.out}")


def _export(args: argparse.Namespace) -> None:
    from raybio.export.hf import export_hf

    out = export_hf(args.checkpoint, args.out, push_to_hub=args.push_to_hub)
    print(f"exported {args.checkpoint} -> {out}" + (f"; pushed to {args.push_to_hub}" if args.push_to_hub else ""))


def _evaluate(args: argparse.Namespace) -> None:
    import time

    from raybio.analysis.downstream_report import write_downstream_report
    from raybio.cluster import machine_line
    from raybio.evaluate.protocols import EvalConfig
    from raybio.evaluate.routing_change import write_routing_change
    from raybio.evaluate.runner import evaluate, find_checkpoints, format_summary

    t0 = time.time()
    cfg = EvalConfig(
        pooling=args.pooling,
        epochs=args.epochs,
        batch_size=args.batch_size,
        finetune_lrs=args.lrs,
        max_train=args.max_train,
        allow_seen=args.allow_seen,
    )
    checkpoints = [c for path in args.checkpoints for c in find_checkpoints(path)]
    tasks = [*args.tasks, *args.extra_tasks]
    protocols = tuple(args.protocol)
    result = evaluate(checkpoints, tasks, cfg, args.seeds, protocols, not args.no_baselines, args.out, not args.no_ray)
    print(format_summary(result.summary.scores))
    routing = None
    if args.routing_change:
        routing = write_routing_change(checkpoints, list(result.tasks.values()), cfg, args.out)
    wall = f"{machine_line()}; wall time {time.time() - t0:.0f} s"
    report = write_downstream_report(args.out, result, cfg, args.seeds, protocols, wall, checkpoints, routing)
    print(f"rows: {args.out}/downstream.csv, summary: {args.out}/downstream_summary.csv, report: {report}")


def _add_evaluate_args(p: argparse.ArgumentParser) -> None:
    from raybio.evaluate.protocols import EvalConfig
    from raybio.evaluate.runner import BUNDLED_TASKS

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
    p.add_argument(
        "--lrs",
        type=float,
        nargs="+",
        default=EvalConfig().finetune_lrs,
        help="fine-tune learning-rate grid, chosen on seed 0's validation split (default %(default)s)",
    )
    p.add_argument(
        "--max-train",
        type=int,
        help="downsample each task's train split to this many rows (stratified); the report states it",
    )
    p.add_argument("--no-baselines", action="store_true", help="skip the untrained backbone and the baselines")
    p.add_argument(
        "--allow-seen",
        action="store_true",
        help="run tasks drawn from a checkpoint's pretraining sources (refused by default; flagged in the report)",
    )
    p.add_argument("--no-ray", action="store_true", help="run in this process, one run after another")
    p.add_argument(
        "--routing-change",
        action="store_true",
        help="for MoE checkpoints: per-layer JS divergence between tasks' routing before vs after fine-tuning",
    )
    p.add_argument("--out", default="./downstream", help="folder (or s3:// URI) for downstream.csv / .parquet")


def _report(args: argparse.Namespace) -> None:
    from raybio.analysis.report import build_report
    from raybio.tune.record import SweepRecord

    record = SweepRecord.load(storage.absolute(args.sweep_dir))
    if args.claims_from:  # a record saved before studies stated their claims
        record.meta.claims = runpy.run_path(str(Path(args.sweeps_dir) / f"{args.claims_from}.py"))["STUDY"].claims
        record.fits = {}
    out = build_report(record)
    print(f"report: {out['html']}\nmarkdown: {out['markdown']}")


def _anatomy(args: argparse.Namespace) -> None:
    from raybio.analysis.anatomy import anatomy_table, checkpoint_anatomy
    from raybio.train.checkpoint import read_experiment

    ckpt, corpus = storage.absolute(args.checkpoint), storage.absolute(args.corpus)
    anatomy = checkpoint_anatomy(read_experiment(ckpt), ckpt, corpus)
    table = anatomy_table(anatomy)
    print(f"routing divergence between {' and '.join(anatomy['tags'])} (mean pairwise JS per MoE layer), {ckpt}:")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.5f}"))
    if args.out:
        storage.write_json(args.out, anatomy)
        print(f"anatomy: {args.out}")


def _add_prepare_args(parser: argparse.ArgumentParser) -> None:
    """Flags of `raybio prepare` (the config flags --preset/--config/--set come from the CLI)."""
    g = parser.add_argument_group("corpus")
    g.add_argument("--data", nargs="+", metavar="URI", help="sources: paths, globs, s3:// URIs, bundled:<name>")
    g.add_argument("--tokenizer", choices=["kmer", "nucleotide", "protein", "bpe", "multiomic"])
    g.add_argument("--k", type=int, help="k-mer size (kmer, multiomic)")
    g.add_argument("--seq-len", type=int, help="tokens per window")
    g.add_argument("--min-length", type=int, help="reject records shorter than this (residues)")
    g.add_argument("--iupac-to-n", action="store_true", help="map IUPAC ambiguity codes to N (DNA) / X (protein)")
    g.add_argument("--skip-invalid", action="store_true", help="drop (and count) records with invalid characters")
    g.add_argument("--reverse-complement", action="store_true", help="add reverse-complement DNA train blocks")


def _prepare_overrides(args: argparse.Namespace) -> list[str]:
    """Config overrides for the flags `_add_prepare_args` defines."""
    out = []
    if args.data:
        out.append(f"data.sources={list(args.data)!r}")
    for flag, key in (("tokenizer", "tokenizer.kind"), ("k", "tokenizer.k"), ("seq_len", "seq_len")):
        if getattr(args, flag) is not None:
            out.append(f"data.{key}={getattr(args, flag)}")
    if args.min_length is not None:
        out.append(f"data.min_length={args.min_length}")
    if args.iupac_to_n:
        out.append("data.iupac_to_n=true")
    if args.skip_invalid:
        out.append("data.on_invalid=skip")
    if args.reverse_complement:
        out.append("data.reverse_complement=true")
    return out


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--config", metavar="YAML", help="YAML merged over the preset")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides, e.g. data.seq_len=512")
    p.add_argument("--storage", default="./runs", help="local dir or s3:// URI (default ./runs)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raybio", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="tokenize a corpus into parquet shards + manifest.json")
    _add_config_args(p)
    p.add_argument("--out", help="output URI (default <storage>/corpus/<hash>)")
    _add_prepare_args(p)
    p.set_defaults(fn=_prepare)
    p = sub.add_parser("train", help="train one model on Ray Train (no sweep)")
    _add_config_args(p)
    p.add_argument("--name", default="train", help="run name under --storage")
    p.set_defaults(fn=_train)
    p = sub.add_parser("sweep", help="run a study from sweeps/ (flags after the name go to the study)")
    p.add_argument("study", help="e.g. expert_count")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.add_argument("--sweeps-dir", default="sweeps")
    p.set_defaults(fn=_sweep)
    p = sub.add_parser("bench", help="run a benchmark from benchmarks/ (flags after the name go to it)")
    p.add_argument("benchmark", help="e.g. moe_layer, hyena_vs_attention, ingest")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.add_argument("--benchmarks-dir", default="benchmarks")
    p.set_defaults(fn=_bench)
    p = sub.add_parser("embed", help="embed long FASTA records with a trained checkpoint (streaming for causal models)")
    p.add_argument("checkpoint", help="checkpoint directory (model.pt, config.json, tokenizer.json)")
    p.add_argument("fasta", help="FASTA / FASTA.gz path or URI")
    p.add_argument("--out", required=True, help="output file for the embeddings")
    p.add_argument("--chunk-tokens", type=int, default=1024, help="tokens per streamed chunk (default 1024)")
    p.add_argument("--window", type=int, help="attention sliding window in tokens (default hyena.attention_window)")
    p.add_argument("--per-token", action="store_true", help="keep per-token states, not only the mean")
    p.set_defaults(fn=_embed)
    p = sub.add_parser("export", help="export a checkpoint as a Hugging Face model folder (docs/export.md)")
    p.add_argument("checkpoint", help="checkpoint directory (model.pt + config.json)")
    p.add_argument("--format", choices=["hf"], default="hf", help="hf: transformers remote-code folder (default)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--push-to-hub",
        metavar="REPO",
        help="also upload to this Hub repo id with huggingface_hub (needs a login; untested offline)",
    )
    p.set_defaults(fn=_export)
    p = sub.add_parser("evaluate", help="fine-tune / probe checkpoints on downstream tasks, beside baselines (on Ray)")
    _add_evaluate_args(p)
    p.set_defaults(fn=_evaluate)
    p = sub.add_parser("anatomy", help="routing per tag (modality or record) of an MoE checkpoint, at init and trained")
    p.add_argument("checkpoint", help="checkpoint directory written by raybio train or a sweep")
    p.add_argument("--corpus", required=True, help="the prepared corpus it trained on (folder with manifest.json)")
    p.add_argument("--out", help="also write the full anatomy (usage, JS, preferences) as JSON here")
    p.set_defaults(fn=_anatomy)
    p = sub.add_parser("report", help="HTML + Markdown report of a finished sweep (local dir or s3:// URI)")
    p.add_argument("sweep_dir", help="e.g. runs/routing or s3://bucket/raybio/routing")
    p.add_argument(
        "--claims-from",
        metavar="STUDY",
        help="test the claims of sweeps/STUDY.py (for a sweep saved before studies stated their claims)",
    )
    p.add_argument("--sweeps-dir", default="sweeps")
    p.set_defaults(fn=_report)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except (ConfigError, InputError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
