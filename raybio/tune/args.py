"""Command-line flags shared by every sweep script, and the base experiment they describe."""

from __future__ import annotations

import argparse

import yaml

from raybio.config import PRESETS, ExperimentConfig, load_config

# Overrides of --smoke: a budget that proves the whole path works in well under a minute.
SMOKE = [
    "data.sources=[bundled:lambda]",
    "data.seq_len=64",
    "data.rows_per_shard=64",
    "model.max_seq_len=64",
    "model.n_layers=2",
    "model.d_model=64",
    "model.n_heads=4",
    "train.max_steps=20",
    "train.batch_size=8",
    "train.warmup_steps=2",
    "train.log_every=5",
    "train.eval_every=0",
    "train.eval_windows=32",
]


def add_common_args(
    parser: argparse.ArgumentParser, default_name: str, default_search: str = "grid", default_preset: str = "tiny"
) -> None:
    """Flags every study accepts, by group: where, resources, model and budget, search, downstream, answer."""
    _where_and_resources(parser, default_name, default_preset)
    _search(parser.add_argument_group("search"), default_search)
    _downstream_and_tracking(parser.add_argument_group("downstream evaluation and tracking (docs/evaluation.md)"))
    _answer(parser.add_argument_group("answer"))


def _where_and_resources(parser: argparse.ArgumentParser, default_name: str, default_preset: str) -> None:
    g = parser.add_argument_group("where")
    g.add_argument("--data", nargs="+", metavar="URI", help="FASTA sources: paths, s3:// URIs or bundled:ecoli")
    g.add_argument("--storage", default="./runs", help="results root: local dir or s3:// URI (default ./runs)")
    g.add_argument("--name", default=default_name, help=f"sweep folder under --storage (default {default_name})")
    g = parser.add_argument_group("resources")
    g.add_argument("--num-workers", type=int, help="Ray Train workers per trial (default 1)")
    g.add_argument("--cpus-per-worker", type=float, help="CPUs per worker (default 1)")
    g.add_argument("--gpus-per-worker", type=float, help="GPUs per worker (default 0 = CPU training)")
    g = parser.add_argument_group("model and budget")
    g.add_argument(
        "--preset",
        default=default_preset,
        choices=sorted(PRESETS),
        help=f"model/train preset (default {default_preset})",
    )
    g.add_argument("--config", metavar="YAML", help="YAML merged over the preset")
    g.add_argument("--max-steps", type=int, help="optimizer steps per trial (equal token budget across trials)")
    g.add_argument("--seq-len", type=int, help="tokens per training window")
    g.add_argument("--batch-size", type=int, help="sequences per worker per step")
    g.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, e.g. train.lr=1e-3")
    g.add_argument("--smoke", action="store_true", help="tiny corpus and budget: checks the path end to end")


def _search(g, default_search: str) -> None:
    g.add_argument(
        "--search",
        choices=["grid", "optuna"],
        default=default_search,
        help=f"grid or Optuna (default {default_search})",
    )
    g.add_argument("--num-samples", type=int, default=8, help="Optuna trials (ignored for grid; default 8)")
    g.add_argument("--asha", action="store_true", help="stop weak trials early (ASHA on train loss)")
    g.add_argument(
        "--flop-budget", type=float, help="equal compute: training FLOPs per trial (default: equal tokens, --max-steps)"
    )
    g.add_argument("--seed", type=int, default=0, help="search seed")
    g.add_argument(
        "--train-seeds",
        type=int,
        nargs="+",
        metavar="N",
        help="train every config once per seed (a train.seed axis), so results show the spread over seeds",
    )
    g.add_argument(
        "--axis",
        nargs="+",
        default=[],
        metavar="PATH=V1,V2",
        help="one more swept axis, crossed with the study's: a dotted config path and its values, "
        "e.g. model.d_ffn=512,2048 (values parsed as YAML)",
    )


def _downstream_and_tracking(g) -> None:
    g.add_argument(
        "--eval-tasks",
        nargs="+",
        default=[],
        metavar="TASK",
        help="after training, fine-tune each trial's final checkpoint on these tasks (names or CSV/FASTA paths); "
        "adds downstream/<task>/<metric> columns",
    )
    g.add_argument("--eval-seeds", type=int, default=3, help="seeds per downstream task (default 3)")
    g.add_argument(
        "--tracker",
        choices=["mlflow", "wandb"],
        help="also log trials and the report to MLflow (MLFLOW_TRACKING_URI) or W&B (WANDB_* variables)",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted sweep of the same --name; finished trials are kept",
    )


def _answer(g) -> None:
    g.add_argument(
        "--probe",
        choices=["after", "off"],
        help="time every distinct config alone after training, for comparable tokens/s and memory "
        "(off: every trial had dedicated hardware, so in-training figures compare; default after, "
        "off with --smoke)",
    )
    g.add_argument(
        "--probe-only",
        action="store_true",
        help="train nothing: time every config of the grid with the probe (throughput and memory need no training)",
    )
    g.add_argument("--probe-steps", type=int, default=10, help="timed steps per config and round (default 10)")
    g.add_argument(
        "--probe-rounds",
        type=int,
        default=5,
        help="interleaved rounds over the configs (default 5: a 95 %% interval per config; ties are called)",
    )


def extra_axes(items: list[str]) -> dict[str, list]:
    """`["model.d_ffn=512,2048"]` -> `{"model.d_ffn": [512, 2048]}`; raises ValueError naming a bad item."""
    axes: dict[str, list] = {}
    for item in items:
        path, _, raw = item.partition("=")
        if "." not in path or not raw:
            raise ValueError(f"--axis {item!r} is not of the form section.field=value1,value2 (model.d_ffn=512,2048)")
        axes[path.strip()] = [yaml.safe_load(v) for v in raw.split(",")]
    return axes


def base_experiment(args: argparse.Namespace, study: list[str] | None = None) -> ExperimentConfig:
    """Preset, then --config, --smoke, the study's own overrides, explicit flags, --set (last wins)."""
    overrides = (list(SMOKE) if args.smoke else []) + (study or [])
    flag_paths = {
        "data": "data.sources",
        "num_workers": "train.num_workers",
        "cpus_per_worker": "train.cpus_per_worker",
        "gpus_per_worker": "train.gpus_per_worker",
        "max_steps": "train.max_steps",
        "batch_size": "train.batch_size",
        "flop_budget": "train.flop_budget",
    }
    for flag, path in flag_paths.items():
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{path}={value!r}" if isinstance(value, list) else f"{path}={value}")
    if args.seq_len:
        overrides += [f"data.seq_len={args.seq_len}", f"model.max_seq_len={args.seq_len}"]
    overrides += args.set
    return load_config(args.preset, args.config, overrides)
