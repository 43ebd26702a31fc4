"""A study = a question, its axes and defaults; `run_study` turns a script's argv into a finished,
analysed sweep (tune runs it, analysis reads it). The sweeps/*.py scripts are studies."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from raybio.analysis.sweep import analyse_sweep
from raybio.config import ConfigError, ExperimentConfig
from raybio.tune.args import add_common_args, base_experiment, extra_axes
from raybio.tune.plan import plan_sweep
from raybio.tune.record import Claim, SweepRecord
from raybio.tune.runner import SweepSpec, run_sweep
from raybio.tune.space import trial_experiment


@dataclass(frozen=True)
class Budget:
    """A named budget a study can run with `--budget NAME`: its corpus and training overrides."""

    about: str  # one line for --help: what it trains and why it exists
    overrides: list[str]
    data: list[str] | None = None  # None: the study's own corpus


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
    budgets: dict[str, Budget] = field(default_factory=dict)
    # The published claims this study tests: the report's verdicts (raybio.analysis.answer).
    claims: list[Claim] = field(default_factory=list)
    probe: str = "after"  # the default of --probe (off under --smoke)
    preset: str = "tiny"  # the default of --preset
    # How the sweep runs: one grid (run_sweep), or e.g. a grid and then runs that depend on its fits.
    run: Callable[[SweepSpec, argparse.Namespace], SweepRecord] = lambda spec, args: run_sweep(spec)


def parse(study: Study, argv: list[str] | None, doc: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, default_name=study.name, default_search=study.search, default_preset=study.preset)
    g = parser.add_argument_group("study")
    study.add_args(g)
    if study.budgets:
        g.add_argument(
            "--budget",
            choices=["default", *study.budgets],
            default="default",
            help="; ".join(f"{name}: {b.about}" for name, b in study.budgets.items()) + " (default: the preset's)",
        )
    return parser.parse_args(argv)


def base_config(study: Study, args: argparse.Namespace) -> ExperimentConfig:
    """The experiment every trial starts from: the budget's (or study's) corpus, its overrides, the flags."""
    budget = study.budgets.get(getattr(args, "budget", "default"))
    if args.data is None:
        args.data = (study.smoke_data if args.smoke else (budget and budget.data) or study.data) or None
    return base_experiment(args, study.overrides(args) + (budget.overrides if budget else []))


def check_extra_axes(base: ExperimentConfig, args: argparse.Namespace) -> None:
    """Every `--axis` value applied to the base experiment once, so a bad path or value stops the
    sweep before Ray starts (a ConfigError naming the field) rather than inside every trial."""
    for path, values in extra_axes(args.axis).items():
        for value in values:
            trial_experiment(base, {path: value})


def study_axes(study: Study, args: argparse.Namespace) -> dict[str, list]:
    """The study's axes, any `--axis` ones, and a `train.seed` axis when `--train-seeds` asks for several seeds."""
    axes = study.axes(args) | ({"train.seed": args.train_seeds} if args.train_seeds else {})
    extra = extra_axes(args.axis)
    if clash := sorted(set(axes) & set(extra)):
        raise ValueError(f"--axis {clash} is already swept by this study's flags; set it with those")
    return axes | extra


# SweepSpec fields that are a common flag's value as parsed (raybio.tune.args).
SPEC_FLAGS = ("name", "storage", "search", "num_samples", "asha", "seed", "resume", "tracker",
              "eval_tasks", "eval_seeds", "probe_steps", "probe_rounds")  # fmt: skip


def run_study(study: Study, argv: list[str] | None = None, doc: str = "") -> None:
    """Parse flags, build the sweep, run it, write the report."""
    args = parse(study, argv, doc or study.question)
    metric, mode = study.search_metric(args)
    try:
        base = base_config(study, args)
        check_extra_axes(base, args)
        spec = SweepSpec(
            question=study.question,
            claims=study.claims,
            axes=study_axes(study, args),
            base=base,
            metric=metric,
            mode=mode,
            probe=args.probe or ("off" if args.smoke else study.probe),
            study=study.name,
            command=["python", f"sweeps/{study.name}.py", *(sys.argv[1:] if argv is None else argv)],
            **{flag: getattr(args, flag) for flag in SPEC_FLAGS},
        )
        analyse_sweep(plan_sweep(spec) if args.probe_only else study.run(spec, args))
    except (ConfigError, ValueError) as err:
        sys.exit(f"error: {err}")
    for line in findings_of(study.name):
        print(f"[raybio] the evidence so far (docs/findings.md): {line}", flush=True)


FINDINGS = Path(__file__).resolve().parents[1] / "docs" / "findings.md"


def findings_of(study: str, path: Path = FINDINGS) -> list[str]:
    """The claim and verdict of every docs/findings.md row whose re-run command runs `sweeps/<study>.py`
    (none where the docs are not beside the package, e.g. an installed wheel)."""
    if not path.exists():
        return []
    lines = []
    for row in path.read_text().splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) >= 6 and f"sweeps/{study}.py" in cells[-1] and not cells[0].startswith("-"):
            lines.append(f"{cells[0]}: {cells[4]}")
    return lines
