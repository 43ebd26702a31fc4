"""A study = a question, its axes and defaults; `run_study` turns a script's argv into a finished,
analysed sweep (tune runs it, analysis reads it). The sweeps/*.py scripts are studies."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from raybio.analysis.sweep import analyse_sweep
from raybio.config import ConfigError
from raybio.tune.args import add_common_args, base_experiment
from raybio.tune.runner import SweepSpec, run_sweep


@dataclass
class Study:
    """Everything that makes one sweep script different from another."""

    name: str
    question: str
    add_args: Callable[[argparse._ArgumentGroup], None]
    axes: Callable[[argparse.Namespace], dict[str, list]]
    overrides: Callable[[argparse.Namespace], list[str]] = lambda args: []
    search: str = "grid"
    # (metric, mode) for the search; lists for a multi-objective (Pareto) search.
    search_metric: Callable[[argparse.Namespace], tuple] = lambda args: ("val_loss", "min")
    data: list[str] = field(default_factory=lambda: ["bundled:ecoli"])
    smoke_data: list[str] | None = None  # None: the --smoke corpus (phage lambda)


def parse(study: Study, argv: list[str] | None, doc: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, default_name=study.name, default_search=study.search)
    study.add_args(parser.add_argument_group("study"))
    return parser.parse_args(argv)


def run_study(study: Study, argv: list[str] | None = None, doc: str = "") -> None:
    """Parse flags, build the sweep, run it, write the report."""
    args = parse(study, argv, doc or study.question)
    if args.data is None:
        args.data = (study.smoke_data if args.smoke else study.data) or None
    metric, mode = study.search_metric(args)
    try:
        base = base_experiment(args, study.overrides(args))
        spec = SweepSpec(
            name=args.name,
            question=study.question,
            axes=study.axes(args),
            base=base,
            storage=args.storage,
            search=args.search,
            num_samples=args.num_samples,
            metric=metric,
            mode=mode,
            asha=args.asha,
            flop_budget=args.flop_budget,
            seed=args.seed,
            resume=args.resume,
            tracker=args.tracker,
            eval_tasks=args.eval_tasks,
            eval_seeds=args.eval_seeds,
            probe=args.probe or ("off" if args.smoke else "after"),
            probe_steps=args.probe_steps,
            probe_rounds=args.probe_rounds,
            target_flops=args.target_flops,
            command=["python", f"sweeps/{study.name}.py", *(sys.argv[1:] if argv is None else argv)],
        )
        analyse_sweep(run_sweep(spec))
    except (ConfigError, ValueError) as err:
        sys.exit(f"error: {err}")
