"""After a sweep: everything analysis adds to its results (curves, router anatomy, summary, report)."""

from __future__ import annotations

from raybio.analysis.anatomy import sweep_anatomy
from raybio.analysis.curves import print_summary, write_sweep_curves
from raybio.analysis.report import build_report
from raybio.models.blocks import has_experts
from raybio.tune.runner import SweepOutcome, publish_tensorboard
from raybio.tune.trackers import log_report


def analyse_sweep(outcome: SweepOutcome) -> dict[str, str]:
    """Sweep-level TensorBoard curves, anatomy of the MoE trials, the printed summary and the report."""
    axes = list(outcome.spec.axes)
    write_sweep_curves(outcome.results, axes, outcome.tb_dir)
    if any(has_experts(t.experiment.model.pattern) for t in outcome.trials):
        sweep_anatomy(outcome.trials, outcome.sweep_uri, outcome.tb_dir)
    publish_tensorboard(outcome.tb_dir, outcome.root, outcome.spec.name)
    print_summary(outcome.results, axes)
    report = build_report(outcome.sweep_uri)
    log_report(
        outcome.spec.tracker, outcome.spec.name, outcome.sweep_uri
    )  # the report as a sweep-level run's artifacts
    uri = outcome.sweep_uri
    print(f"[raybio] results: {uri}/results.csv; TensorBoard: tensorboard --logdir {uri}/tensorboard")
    print(f"[raybio] report: {report['html']}")
    print(f"[raybio] sweep wall time {outcome.wall_time_s:.0f} s", flush=True)
    return report
