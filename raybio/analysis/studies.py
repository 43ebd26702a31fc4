"""Analyses a study adds to the generic sweep analysis, keyed by the study that ran the sweep (`SweepMeta.study`).

A study-specific analysis computes its answer once, into `record.fits[key]` (plain JSON, saved as fits.json,
holding the points it was computed from), and draws its figures and report sections from that answer alone;
`raybio report DIR` rebuilds both from the saved record (a record that already holds the answer is not
refitted: its `compute` reuses it and adds what an older record lacks). A new study's analysis is its
`compute`, `draw` (its figures) and `sections`, and one entry in ANALYSES.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from raybio.analysis import scaling_plots, scaling_report, scaling_study
from raybio.analysis.document import Figure, Section
from raybio.tune.record import SweepRecord


@dataclass(frozen=True)
class StudyAnalysis:
    key: str  # its entry in record.fits
    compute: Callable[[SweepRecord], dict]  # the answer, JSON-able (may reuse record.fits[key])
    draw: Callable[[dict], dict[str, Figure]]  # the answer's figures, by file name
    sections: Callable[[dict, dict[str, Figure]], list[Section]]  # the report sections: the answer and its figures
    anatomy: bool = True  # router anatomy of every MoE trial (off where the trials are many and small)


ANALYSES: dict[str, StudyAnalysis] = {
    "scaling": StudyAnalysis("laws", scaling_study.compute, scaling_plots.draw, scaling_report.sections, anatomy=False),
}


def analysis_of(record: SweepRecord) -> StudyAnalysis | None:
    return ANALYSES.get(record.meta.study)


def study_fits(record: SweepRecord) -> dict:
    """{key: answer} of the record's study analysis ({} for a study without one)."""
    analysis = analysis_of(record)
    return {analysis.key: analysis.compute(record)} if analysis else {}


def study_sections(record: SweepRecord) -> list[Section]:
    """The study's own report sections, from the answer in record.fits (computed first, or completed where a record
    saved before the answer had all its parts holds it)."""
    analysis = analysis_of(record)
    if analysis is None:
        return []
    record.fits |= study_fits(record)
    answer = record.fits[analysis.key]
    figures = analysis.draw(answer)
    return analysis.sections(answer, figures)
