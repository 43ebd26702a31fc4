"""The sweep report's Downstream part is a document Section (tables, figures), not spliced text."""

from __future__ import annotations

import pandas as pd

from raybio.analysis.document import Figure, Section, Table
from raybio.analysis.downstream import downstream_section


def sweep_results() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "status": ["OK", "OK", "ERROR"],
            "model.moe.num_experts": [1, 8, 4],
            "train_flops_cum": [1e12, 2e12, None],
            "downstream/species/accuracy": [0.7, 0.8, None],
            "downstream/species/accuracy_ci_low": [0.65, 0.75, None],
            "downstream/species/accuracy_ci_high": [0.75, 0.85, None],
        }
    )


def test_downstream_section_has_the_trials_table_one_figure_per_axis_and_the_evaluate_table(tmp_path):
    (tmp_path / "downstream").mkdir()
    summary = pd.DataFrame(
        {"task": ["species"] * 2, "model": ["pretrained", "untrained"], "protocol": ["finetune"] * 2}
        | {"slice": ["clean", "seen"], "seeds": [3, 3], "accuracy": [0.8, 0.9], "mcc": [0.6, 0.7]}
    )
    summary.to_csv(tmp_path / "downstream" / "downstream_summary.csv", index=False)
    section = downstream_section(sweep_results(), ["model.moe.num_experts"], str(tmp_path))
    assert isinstance(section, Section) and section.title == "Downstream"
    tables = [b for b in section.blocks if isinstance(b, Table)]
    assert len(tables[0].frame) == 2  # the failed trial is left out
    assert tables[1].frame["accuracy"].tolist() == [0.8]  # the clean slice only
    names = [f.name for f in section.figures()]
    assert names == [
        "downstream_species_accuracy_vs_model.moe.num_experts.png",
        "downstream_species_accuracy_vs_train_flops_cum.png",
    ]
    assert all(isinstance(f, Figure) and f.png.startswith(b"\x89PNG") for f in section.figures())


def test_no_downstream_results_give_no_section(tmp_path):
    df = sweep_results().drop(columns=[c for c in sweep_results() if c.startswith("downstream/")])
    assert downstream_section(df, [], str(tmp_path)) is None
