"""After a sweep: everything analysis adds to its results, in order.

The throughput probe and sweep utilisation first (they add `probe/*` columns to the results
table and the conditions of the in-training figures to sweep.json, both rewritten
atomically), then TensorBoard hparams and sweep-level curves, router anatomy of the MoE
trials, the printed summary, the report, and the tracker's copy of it.
"""

from __future__ import annotations

import time

from raybio.analysis.anatomy import sweep_anatomy
from raybio.analysis.curves import print_summary, write_sweep_curves
from raybio.analysis.probe import ProbeSettings, probe_sweep
from raybio.analysis.report import build_report
from raybio.analysis.utilisation import sweep_utilisation
from raybio.cluster import machine_line
from raybio.data import storage
from raybio.models.blocks import has_experts
from raybio.tune.export import write_hparams, write_table
from raybio.tune.runner import SweepOutcome, publish_tensorboard
from raybio.tune.trackers import log_report


def analyse_sweep(outcome: SweepOutcome) -> dict[str, str]:
    """Probe, utilisation, curves, anatomy, summary and report of a finished sweep; returns the report paths."""
    t0 = time.perf_counter()
    spec, uri, axes = outcome.spec, outcome.sweep_uri, list(outcome.spec.axes)
    df = outcome.results
    util = sweep_utilisation(df, outcome.history, outcome.fit_wall_time_s, outcome.concurrent_trials)
    if spec.probe != "off":
        print(f"[raybio] probing {df['status'].eq('OK').sum()} trial(s): each config alone, interleaved", flush=True)
        df = probe_sweep(df, outcome.trials, ProbeSettings(steps=spec.probe_steps, rounds=spec.probe_rounds))
        write_table(df, uri, "results")
    meta = storage.read_json(storage.join(uri, "sweep.json"))
    meta |= {
        "concurrent_trials": outcome.concurrent_trials,
        "fit_wall_time_s": outcome.fit_wall_time_s,
        "probe": spec.probe,
        "target_flops": spec.target_flops,
        "utilisation": {"training": util.training, **util.breakdown()},
        "utilisation_line": util.line(),
        "machine": machine_line(),
    }
    storage.write_json(storage.join(uri, "sweep.json"), meta)
    write_hparams(df, axes, outcome.tb_dir)
    write_sweep_curves(df, axes, outcome.tb_dir)
    if any(has_experts(t.experiment.model.pattern) for t in outcome.trials):
        sweep_anatomy(outcome.trials, uri, outcome.tb_dir)
    print_summary(df, axes)
    print(f"[raybio] {util.line()}")
    report = build_report(uri)
    publish_tensorboard(outcome.tb_dir, outcome.root, spec.name)
    log_report(spec.tracker, spec.name, uri)  # the report as artifacts of a sweep-level tracker run
    print(f"[raybio] results: {uri}/results.csv; TensorBoard: tensorboard --logdir {uri}/tensorboard")
    print(f"[raybio] report: {report['html']}")
    total = outcome.wall_time_s + time.perf_counter() - t0
    print(f"[raybio] sweep wall time {total:.0f} s (trials {outcome.wall_time_s:.0f} s, then analysis)", flush=True)
    return report
