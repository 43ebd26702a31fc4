"""After a sweep: everything analysis adds to its record, in memory, then one save.

Utilisation, the throughput probe (`probe/*` columns and one row per config and round),
TensorBoard hparams, router anatomy of the MoE trials, the study's answer, the printed summary,
the report (also into TensorBoard's sweep run); then the record is saved once and the report
goes to the tracker.
"""

from __future__ import annotations

import time

from raybio.analysis.anatomy import sweep_anatomy
from raybio.analysis.answer import answer_study
from raybio.analysis.document import write_document
from raybio.analysis.probe import ProbeSettings, probe_sweep
from raybio.analysis.report import sweep_document
from raybio.analysis.summary import print_summary, write_sweep_tensorboard
from raybio.analysis.utilisation import sweep_utilisation
from raybio.models.blocks import has_experts
from raybio.tune.export import write_hparams
from raybio.tune.record import SweepRecord
from raybio.tune.runner import publish_tensorboard
from raybio.tune.trackers import log_report


def analyse_sweep(record: SweepRecord) -> dict[str, str]:
    """Probe, anatomy, answer, summary, report and TensorBoard of a finished sweep; returns the report paths."""
    t0 = time.perf_counter()
    meta, axes = record.meta, record.axes
    util = sweep_utilisation(record.results, record.history, meta.fit_wall_time_s or 0.0, meta.concurrent_trials or 1)
    meta.utilisation = {"training": util.training, **util.breakdown()}
    meta.utilisation_line = util.line()
    if meta.probe != "off" and record.ok.shape[0]:
        print(f"[raybio] probing {record.ok.shape[0]} trial(s): each config alone, interleaved", flush=True)
        probe_sweep(record, ProbeSettings(steps=meta.probe_steps, rounds=meta.probe_rounds))
    write_hparams(record.results, axes, record.tb_dir)
    trials = record.trials()
    if any(has_experts(t.experiment.model.pattern) for t in trials):
        record.anatomy = sweep_anatomy(trials, record.tb_dir)
    record.fits = answer_study(record)
    print_summary(record)
    print(f"[raybio] {util.line()}")
    doc = sweep_document(record)
    report = write_document(doc, f"{record.uri}/report")
    write_sweep_tensorboard(doc, record.tb_dir)
    record.save()
    publish_tensorboard(record.tb_dir, record.root, meta.name)
    log_report(meta.tracker, meta.name, record.uri)  # the report as artifacts of a sweep-level tracker run
    print(f"[raybio] results: {record.uri}/results.csv; TensorBoard: tensorboard --logdir {record.uri}/tensorboard")
    print(f"[raybio] report: {report['html']}")
    total = (meta.wall_time_s or 0.0) + time.perf_counter() - t0
    print(f"[raybio] sweep wall time {total:.0f} s (trials {meta.wall_time_s:.0f} s, then analysis)", flush=True)
    return report
