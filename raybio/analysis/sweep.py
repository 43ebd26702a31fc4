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
from raybio.analysis.document import render
from raybio.analysis.probe import ProbeSettings, probe_sweep
from raybio.analysis.report import sweep_document
from raybio.analysis.studies import analysis_of, study_fits
from raybio.analysis.summary import publish_summary
from raybio.analysis.utilisation import sweep_utilisation
from raybio.models.blocks import has_experts
from raybio.tune.export import write_hparams
from raybio.tune.record import SweepRecord
from raybio.tune.trackers import log_report


def analyse_sweep(record: SweepRecord) -> None:
    """Probe, anatomy, answer, summary, report and TensorBoard of a finished sweep, then one save."""
    t0 = time.perf_counter()
    meta, trials = record.meta, record.trials()
    if not record.history.empty:  # a --probe-only record trained nothing
        util = sweep_utilisation(record.results, record.history, meta.fit_wall_time_s, meta.concurrent_trials)
        meta.utilisation, meta.utilisation_line = {"training": util.training, **util.breakdown()}, util.line()
    if meta.probe != "off" and any(t.ok for t in trials):
        print(f"[raybio] probing {sum(t.ok for t in trials)} trial(s): each config alone, interleaved", flush=True)
        record.results, record.probe = probe_sweep(
            record.results, trials, ProbeSettings(meta.probe_steps, rounds=meta.probe_rounds)
        )
    if record.tb_dir:
        write_hparams(record.results, record.axes, record.tb_dir)
    study = analysis_of(record)
    if any(has_experts(t.experiment.model.pattern) for t in trials) and (study is None or study.anatomy):
        record.anatomy = sweep_anatomy(trials, record.tb_dir)
    record.fits = answer_study(record) | study_fits(record)  # the study's own answer, e.g. scaling laws
    doc = sweep_document(record)
    publish_summary(doc, record.tb_dir)
    report = render(doc)
    record.save(report)
    log_report(meta, report, record.results)  # the report as artifacts of a sweep-level tracker run
    if meta.utilisation_line:
        print(f"[raybio] {meta.utilisation_line}")
    print(f"[raybio] results: {record.uri}/results.csv; TensorBoard: tensorboard --logdir {record.uri}/tensorboard")
    print(f"[raybio] report: {record.uri}/report/report.html")
    total = (meta.wall_time_s or 0.0) + time.perf_counter() - t0
    print(f"[raybio] sweep wall time {total:.0f} s (trials {meta.wall_time_s:.0f} s, then analysis)", flush=True)
