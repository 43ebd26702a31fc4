"""`raybio report <sweep dir>`: the sweep's record as a report — Markdown and HTML, PNGs beside them.

`build_report(record)` turns a `SweepRecord` (in memory after a sweep; `SweepRecord.load(dir)`
for `raybio report`) into a `Document` of sections and writes it under <sweep>/report/. The
headline metric is the validation loss on masked positions only (MLM) or on next tokens (NTP),
set against the unigram loss of the same positions; verdicts come from the study's claims
(raybio.analysis.answer); throughput and memory only from the probe, whose rankings within
noise are ties. Plots live in report_plots, tables in report_tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from raybio.analysis import report_plots as plots
from raybio.analysis import report_tables as tables
from raybio.analysis.answer import answer_study
from raybio.analysis.document import Bullets, Code, Document, Figure, Section, Table, Text, write_document
from raybio.analysis.downstream import downstream_section
from raybio.tune.record import SweepRecord, axis_label

HEADLINE = (
    "Headline metric: validation loss on the masked positions only (MLM: every picked token replaced by "
    "<mask>, so nothing can be copied from the input) or on every next token (NTP), on a fixed, seeded, "
    "source-stratified sample of validation windows. Beside it, the **unigram loss of the same positions** "
    "(the loss of predicting every token from its training-corpus frequency): nats below it are what a model "
    "learned beyond letter frequencies. The 80/10/10 corrupted-input loss, where a tenth of the scored "
    "positions show the true token, is a secondary column."
)


def build_report(record: SweepRecord) -> dict[str, str]:
    """Write report.md, report.html and the PNGs under <sweep>/report/; return their URIs."""
    return write_document(sweep_document(record), f"{record.uri}/report")


def sweep_document(record: SweepRecord) -> Document:
    if not record.fits:
        record.fits = answer_study(record)  # a record saved before answers were kept
    rows = tables.config_rows(record)
    sections = [study_section(record), answer_section(record, rows), results_section(record, rows)]
    sections += [curves_section(record, rows), anatomy_section(record)]
    if (downstream := downstream_section(record.results, record.axes, record.uri)) is not None:
        sections.append(downstream)
    sections.append(Section("Reproduce", [Code(record.meta.command)]))
    return Document(f"raybio sweep report: {record.meta.name}", sections)


def study_section(record: SweepRecord) -> Section:
    meta, ok = record.meta, record.ok
    m = meta.base["model"]
    items = [
        f"**Question:** {meta.question or '-'}",
        f"**Swept:** {', '.join(f'{a} ∈ {v}' for a, v in meta.axes.items())} ({meta.search} search, "
        f"{len(record.results)} trials, {len(ok)} finished; {tables.seeds_of(record)})",
        f"**Budget:** {meta.budget or '-'}",
        f"**Run on:** {meta.machine}; trials' wall time {meta.wall_time_s or '?'} s (before the probe and analysis)",
        f"**Base model:** pattern {m['pattern']}, d_model {m['d_model']}, {m['n_layers']} layers, "
        f"objective {m['objective']}",
    ]
    if len(ok) and "val_unigram_loss" in ok:
        items.append(
            f"**References:** unigram loss of the scored positions {ok['val_unigram_loss'].mean():.4f} nats; "
            f"untrained model {ok['init_val_loss'].min():.4f} nats"
        )
    if meta.utilisation_line:
        items.append(f"**Sweep utilisation:** {meta.utilisation_line.removeprefix('sweep utilisation ')}")
    return Section("Study", [Bullets(items), Text(HEADLINE)])


def answer_section(record: SweepRecord, rows: pd.DataFrame) -> Section:
    claims = record.fits.get("claims", [])
    blocks: list = [] if claims else [Text("This study states no published claim: the results are descriptive.")]
    for claim in claims:
        blocks.append(Text(f"**Claim** ({claim['source']}): {claim['text']} — expected: treatment "
                           f"{claim['expected']} {claim['metric']} than the baseline."))  # fmt: skip
        if claim["comparisons"]:
            blocks.append(Table(tables.claim_table(claim)))
        else:
            blocks.append(Text("No treatment config shares seeds with the baseline: nothing to compare."))
    blocks.append(Text(
        "Verdict rule: treatment − baseline paired by training seed; **reproduced** needs the paper's direction, "
        "a two-sided paired t-test p < 0.05 and ≥ 5 seeds; otherwise 'same direction, not significant', 'too few "
        "seeds', 'opposite', or 'not tested' where the regime (context, scale, objective) differs from the paper's. "
        "Seed SDs: the difference over the arms' pooled seed-to-seed standard deviation."
    ))  # fmt: skip
    blocks.append(Text(throughput_answer(rows)))
    return Section("Answer", blocks)


def throughput_answer(rows: pd.DataFrame) -> str:
    if "probe/tokens_per_s" not in rows or rows["probe/tokens_per_s"].isna().all():
        return ("**Throughput:** no comparable throughput — the probe was off, and in-training tokens/s measures "
                "which trials shared the machine, not the configs.")  # fmt: skip
    if (rows["probe/tie_group"] == 0).all():
        return "**Throughput:** not ranked — one probe round gives no interval (use --probe-rounds ≥ 5)."
    ranked = rows.sort_values("probe/tokens_per_s", ascending=False)
    parts = []
    for _, group in ranked.groupby("probe/tie_group", sort=True):
        names = " ≈ ".join(f"{r['config']} ({r['probe/tokens_per_s'] / 1e3:.2f} k)" for _, r in group.iterrows())
        parts.append(f"[{names}]" if len(group) > 1 else names)
    return ("**Throughput (probe, tokens/s per worker, alone):** " + " > ".join(parts) +
            "; configs in brackets are tied: their 95 % intervals over probe rounds overlap.")  # fmt: skip


def results_section(record: SweepRecord, rows: pd.DataFrame) -> Section:
    meta = record.meta
    probe = "probe/tokens_per_s" in rows and rows["probe/tokens_per_s"].notna().any()
    conditions = (
        f"Throughput and memory: the **probe** timed each config alone on one worker's resources, {meta.probe_rounds} "
        f"interleaved rounds of {meta.probe_steps} steps (mean, 95 % t-interval over rounds; load recorded per round)."
        if probe
        else "Probe off: no throughput or memory figure here compares configs."
    )
    conditions += (f" In-training figures (per-trial table) ran {meta.concurrent_trials} trial(s) at a time on shared "
                   "hardware: they describe the run, not the configs.")  # fmt: skip
    blocks = [Text(conditions), Table(tables.config_table(rows), caption="per config (mean over its seeds)")]
    blocks.append(Table(tables.trial_table(record), caption="every trial (seeds separately)", collapsed=True))
    for label, t in tables.router_details(record):
        blocks.append(Table(t, caption=f"router metrics per layer: {label}", collapsed=True))
    return Section("Results", blocks)


def curves_section(record: SweepRecord, rows: pd.DataFrame) -> Section:
    blocks: list = []
    if not record.history.empty:
        blocks.append(Figure("loss_vs_flops.png", plots.plot_loss_curves(record), "validation loss vs compute"))
        blocks.append(Text(
            "Curves are descriptive: intermediate points of one decaying schedule are not a scaling law, so no law "
            "is fitted to them (the `scaling` study fits laws on separately trained budgets)."
        ))  # fmt: skip
    if len(rows) > 1 and rows["val_unigram_loss"].notna().any():
        blocks.append(Figure("learning_per_config.png", plots.plot_learning(rows), "nats below unigram per config"))
    if len(rows) > 1 and "probe/tokens_per_s" in rows and rows["probe/tokens_per_s"].notna().any():
        blocks.append(Figure("throughput_per_config.png", plots.plot_throughput(rows), "probe tokens/s per config"))
        blocks.append(Figure("memory_per_config.png", plots.plot_memory(rows), "probe peak memory per config"))
        front = pareto_front(rows)
        blocks.append(Figure("pareto.png", plots.plot_pareto(rows, front), "Pareto front"))
        names = ", ".join(rows["config"][front])
        blocks.append(Text(f"Pareto front (headline loss vs probe throughput, error bars 95 %): {names}."))
    return Section("Loss, throughput and memory", blocks)


def pareto_front(rows: pd.DataFrame) -> pd.Series:
    """Configs no other config beats on both headline loss (lower) and probe tokens/s (higher)."""
    vals = np.stack([rows["val_loss"].to_numpy(float), -rows["probe/tokens_per_s"].to_numpy(float)], axis=1)
    dominated = [bool(np.any(np.all(vals <= v, axis=1) & np.any(vals < v, axis=1))) for v in vals]
    return pd.Series(np.logical_not(dominated), index=rows.index)


def anatomy_section(record: SweepRecord) -> Section:
    if not record.anatomy:
        return Section("Router anatomy", [Text("No MoE trials in this sweep: nothing to route.")])
    blocks: list = [Text(
        "Per layer, each expert's share of routed slots relative to a uniform share (1 = balanced), on a sample of "
        "tagged windows (modality, or source record); with two or more tags, the mean pairwise Jensen–Shannon "
        "divergence between the tags' routing at init and trained, beside the same divergence with the tags "
        "randomly permuted (what separation chance alone gives: DNA and protein use disjoint tokens, so layer 0 "
        "separates them nearly for free)."
    ), Table(tables.anatomy_rows(record))]  # fmt: skip
    for trial_id, trial in record.anatomy.items():
        title = axis_label(trial["params"], record.axes)
        blocks.append(Figure(f"anatomy_{trial_id}.png", plots.plot_anatomy(trial, title)))
    return Section("Router anatomy", blocks)
