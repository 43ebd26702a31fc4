"""`raybio report <sweep dir>`: the sweep's record as a report — Markdown and HTML, PNGs beside them.

`build_report(record)` turns a `SweepRecord` (in memory after a sweep; `SweepRecord.load(dir)`
for `raybio report`) into a `Document` of sections and writes it under <sweep>/report/. The
headline metric is the validation loss on masked positions only (MLM) or on next tokens (NTP),
set against the unigram loss of the same positions; verdicts come from the study's claims
(raybio.analysis.answer); throughput and memory only from the probe, whose rankings within
noise are ties. Plots live in report_plots, tables in report_tables.
"""

from __future__ import annotations

from raybio.analysis.answer import answer_study
from raybio.analysis.document import Bullets, Code, Document, Figure, Section, Table, Text, write_document
from raybio.analysis.downstream import downstream_section
from raybio.analysis.report_plots import draw_figures
from raybio.analysis.report_tables import ReportTables, build_tables, has_probe
from raybio.analysis.studies import study_sections
from raybio.tune.record import SweepRecord
from raybio.units import si

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
    """The report of a record whose answer is in `record.fits` (computed here for records saved before it was)."""
    if not record.fits:
        record.fits = answer_study(record)
    t = build_tables(record)
    figs = draw_figures(record, t)
    own = study_sections(record)  # the study's own analysis (raybio.analysis.studies), e.g. scaling laws
    sections = [study_section(record, t), answer_section(t, bool(own)), *own, results_section(record, t)]
    sections += [curves_section(t, figs), anatomy_section(t, figs)]
    if (downstream := downstream_section(record.results, record.axes, record.uri)) is not None:
        sections.append(downstream)
    sections.append(Section("Reproduce", [Code(record.meta.command)]))
    return Document(f"raybio sweep report: {record.meta.name}", sections)


def study_section(record: SweepRecord, t: ReportTables) -> Section:
    meta, rows = record.meta, t.rows
    m = meta.base["model"]
    items = [
        f"**Question:** {meta.question or '-'}",
        f"**Swept:** {', '.join(f'{a} ∈ {axis_values(v)}' for a, v in meta.axes.items())} ({meta.search} search, "
        f"{len(record.results)} trials, {int(rows['seeds'].sum()) if len(rows) else 0} finished; {t.seeds})",
        f"**Budget:** {meta.budget or '-'}",
        f"**Run on:** {meta.machine}; trials' wall time "
        f"{'?' if meta.wall_time_s is None else f'{meta.wall_time_s:,.0f}'} s (before the probe and analysis)",
        f"**Base model:** pattern {m['pattern']}, d_model {m['d_model']}, {m['n_layers']} layers, "
        f"objective {m['objective']}",
    ]
    if len(rows) and rows["val_unigram_loss"].notna().any():
        items.append(
            f"**References:** unigram loss of the scored positions {rows['val_unigram_loss'].mean():.4f} nats; "
            f"untrained model {rows['init_val_loss'].min():.4f} nats"
        )
    if meta.utilisation_line:
        items.append(f"**Sweep utilisation:** {meta.utilisation_line.removeprefix('sweep utilisation ')}")
    return Section("Study", [Bullets(items), Text(HEADLINE)])


def axis_values(values: list) -> str:
    """[1.5 T, 4.5 T] for large numbers (FLOP budgets), the values as written otherwise."""
    big = all(isinstance(v, int | float) and not isinstance(v, bool) and abs(v) >= 1e4 for v in values)
    return f"[{', '.join(si(v) for v in values)}]" if big and values else str(values)


def answer_section(t: ReportTables, own_answer: bool = False) -> Section:
    none = "its answer is in the next section" if own_answer else "the results are descriptive"
    blocks: list = [] if t.claims else [Text(f"This study states no paired-seed claim: {none}.")]
    for claim, table in t.claims:
        blocks.append(Text(f"**Claim** ({claim['source']}): {claim['text']} — expected: treatment "
                           f"{claim['expected']} {claim['metric']} than the baseline."))  # fmt: skip
        has = bool(claim["comparisons"])
        blocks.append(Table(table) if has else Text("No treatment config shares seeds with the baseline."))
    blocks.append(Text(
        "Verdict rule: treatment − baseline paired by training seed; **reproduced** needs the paper's direction, "
        "a two-sided paired t-test p < 0.05 and ≥ 5 seeds; otherwise 'same direction, not significant', 'too few "
        "seeds', 'opposite', or 'not tested' where the regime (context, scale, objective) differs from the paper's. "
        "Seed SDs: the difference over the arms' pooled seed-to-seed standard deviation. Eval SE of it: what the "
        "validation sample alone puts on the difference (both arms score the same positions; it should be at most a "
        "third of the difference for the sample to resolve it)."
    ))  # fmt: skip
    blocks.append(Text(t.throughput))
    return Section("Answer", blocks)


def results_section(record: SweepRecord, t: ReportTables) -> Section:
    meta = record.meta
    if not has_probe(t.rows):
        conditions = "Probe off: no throughput or memory figure here compares configs."
    elif meta.probe_rounds is None:  # a record from before the probe kept its settings and intervals
        conditions = ("Throughput and memory: the **probe** timed each config alone on one worker's resources; this "
                      "record kept neither its rounds nor an interval per config, so nothing is ranked.")  # fmt: skip
    else:
        conditions = (
            f"Throughput and memory: the **probe** timed each config alone on one worker's resources, "
            f"{meta.probe_rounds} interleaved rounds of {meta.probe_steps} steps (mean, 95 % t-interval over rounds; "
            "load recorded per round)."
        )
    conditions += (f" In-training figures (per-trial table) ran {meta.concurrent_trials} trial(s) at a time on shared "
                   "hardware: they describe the run, not the configs.")  # fmt: skip
    blocks = [Text(conditions), Table(t.configs, caption="per config (mean over its seeds)")]
    blocks.append(Table(t.trials, caption="every trial (seeds separately)", collapsed=True))
    if len(t.routers):
        blocks.append(Table(t.routers, caption="router metrics per layer, every MoE trial", collapsed=True))
    failed = record.results[record.results["status"] != "OK"]
    blocks += [Text(f"**Trial {r['trial_id']} failed:** {r['error']}", callout=True) for _, r in failed.iterrows()]
    return Section("Results", blocks)


def curves_section(t: ReportTables, figs: dict[str, Figure]) -> Section:
    blocks: list = []
    if "loss_vs_flops.png" in figs:
        blocks.append(figs["loss_vs_flops.png"])
        blocks.append(Text(
            "Curves are descriptive: intermediate points of one decaying schedule are not a scaling law, so no law "
            "is fitted to them (the `scaling` study fits laws on separately trained budgets)."
        ))  # fmt: skip
    blocks += [figs[n] for n in ("learning_per_config.png", "throughput_per_config.png", "memory_per_config.png")
               if n in figs]  # fmt: skip
    if "pareto.png" in figs:
        names = ", ".join(t.rows["config"][t.front])
        blocks += [figs["pareto.png"], Text(f"Pareto front (headline loss vs probe throughput, 95 % bars): {names}.")]
    if not blocks:
        blocks.append(Text("Nothing to plot: this record holds no training history and the probe did not run."))
    return Section("Loss, throughput and memory", blocks)


def anatomy_section(t: ReportTables, figs: dict[str, Figure]) -> Section:
    if t.anatomy.empty:
        return Section("Router anatomy", [Text("No router anatomy: no MoE trials, or the study skips it.")])
    blocks: list = [Text(
        "Per layer, each expert's share of routed slots relative to a uniform share (1 = balanced), on a sample of "
        "tagged windows (modality, or source record); with two or more tags, the mean pairwise Jensen–Shannon "
        "divergence between the tags' routing at init and trained, beside the same divergence with the tags "
        "randomly permuted (what separation chance alone gives: DNA and protein use disjoint tokens, so layer 0 "
        "separates them nearly for free)."
    ), Table(t.anatomy)]  # fmt: skip
    return Section("Router anatomy", blocks + [f for n, f in figs.items() if n.startswith("anatomy_")])
