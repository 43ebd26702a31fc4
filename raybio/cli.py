"""The `raybio` command: prepare a corpus, train one model, run a study, report on it."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from raybio.config import PRESETS, ConfigError, load_config
from raybio.data.validate import InputError


def _prepare(args: argparse.Namespace) -> None:
    from raybio.data.prepare import default_shards_uri, overrides_from_args, prepare
    from raybio.tune.runner import storage_root

    exp = load_config(args.preset, args.config, [*overrides_from_args(args), *args.set])
    uri = args.out or default_shards_uri(storage_root(args.storage), exp.data)
    manifest = prepare(exp.data, uri)
    print(f"corpus {manifest['corpus_id']}: {manifest['splits']['train']['tokens']:,} train tokens at {uri}")


def _train(args: argparse.Namespace) -> None:
    from raybio.cluster import init_ray
    from raybio.data.prepare import default_shards_uri, prepare
    from raybio.train.trainer import build_trainer
    from raybio.tune.runner import storage_root

    exp = load_config(args.preset, args.config, args.set)
    root = storage_root(args.storage)
    init_ray()
    shards_uri = default_shards_uri(root, exp.data)
    manifest = prepare(exp.data, shards_uri)
    result = build_trainer(exp, shards_uri, manifest, root, args.name).fit()
    m = result.metrics or {}
    print(
        f"step {m.get('step')}: val_loss {m.get('val_loss', float('nan')):.4f} "
        f"(untrained {m.get('init_val_loss', float('nan')):.4f}), {m.get('tokens_per_s', 0):,.0f} tokens/s, "
        f"MFU {m.get('mfu', float('nan')):.1%}, peak memory {m.get('peak_memory_bytes', 0) / 2**20:,.0f} MiB; "
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


def _report(args: argparse.Namespace) -> None:
    from raybio.analysis.report import build_report
    from raybio.tune.runner import storage_root

    out = build_report(storage_root(args.sweep_dir))
    print(f"report: {out['html']}\nmarkdown: {out['markdown']}")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--config", metavar="YAML", help="YAML merged over the preset")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides, e.g. data.seq_len=512")
    p.add_argument("--storage", default="./runs", help="local dir or s3:// URI (default ./runs)")


def build_parser() -> argparse.ArgumentParser:
    from raybio.data.prepare import add_arguments as add_prepare_arguments

    parser = argparse.ArgumentParser(prog="raybio", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="tokenize a corpus into parquet shards + manifest.json")
    _add_config_args(p)
    p.add_argument("--out", help="output URI (default <storage>/corpus/<hash>)")
    add_prepare_arguments(p)
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
    p.add_argument("checkpoint", help="checkpoint directory (model.pt + config.json)")
    p.add_argument("fasta", help="FASTA / FASTA.gz path or URI")
    p.add_argument("--out", required=True, help="output file for the embeddings")
    p.add_argument("--chunk-tokens", type=int, default=1024, help="tokens per streamed chunk (default 1024)")
    p.add_argument("--window", type=int, help="attention sliding window in tokens (default hyena.attention_window)")
    p.add_argument("--per-token", action="store_true", help="keep per-token states, not only the mean")
    p.set_defaults(fn=_embed)
    p = sub.add_parser("report", help="HTML + Markdown report of a finished sweep (local dir or s3:// URI)")
    p.add_argument("sweep_dir", help="e.g. runs/routing or s3://bucket/raybio/routing")
    p.set_defaults(fn=_report)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except (ConfigError, InputError) as err:
        sys.exit(f"error: {err}")
