"""Downstream tasks load with disjoint splits; bad task input fails with a message naming file and row."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from raybio.data.validate import InputError
from raybio.evaluate.splits import carve_validation
from raybio.evaluate.tasks import SPECIES_WINDOW, load_task, species_windows


def test_genomic_benchmarks_tasks_have_the_documented_rows_and_disjoint_splits():
    for name, n_train, n_test, length in (
        ("gb_nontata_promoters", 7227, 1807, 251),
        ("gb_enhancers_cohn", 5558, 1390, 500),
    ):
        task = load_task(name)
        assert (len(task.train), len(task.test)) == (n_train, n_test)
        assert {len(s) for s in task.train.sequences} == {length}
        assert not set(task.train.sequences) & set(task.test.sequences)
        assert "re-split 80/20" in task.note


def test_species_windows_never_overlap_across_splits_and_validation_is_carved_by_block():
    df = species_windows()
    assert df["genome"].nunique() == 4
    for (genome, record), group in df.groupby(["genome", "record"]):
        gaps = np.diff(group.sort_values("start")["start"].to_numpy())
        assert (gaps >= SPECIES_WINDOW).all(), (genome, record)  # no two windows overlap at all
        assert set(group[group["split"] == "train"]["block"]).isdisjoint(group[group["split"] == "test"]["block"])
    task = load_task("species")
    train, val = carve_validation(task.train, 0.1, seed=0, source="species")
    assert set(train.groups).isdisjoint(val.groups)
    assert not set(train.sequences) & set(val.sequences) and not set(val.sequences) & set(task.test.sequences)


def test_protein_family_task_has_three_families_and_carved_validation_is_stratified():
    task = load_task("protein_family")
    assert task.modality == "protein" and task.classes == ["Pkinase", "fn3", "globin"]
    assert len(task.train) + len(task.test) == 181
    train, val = carve_validation(task.train, 0.1, seed=1, source="protein_family")
    assert set(val.labels) == {0, 1, 2} and len(train) + len(val) == len(task.train)


def test_gene_protein_pairs_are_cut_from_the_genome_in_frame():
    task = load_task("gene_protein_retrieval")
    assert len(task.genes) == len(task.proteins) == 4143
    for gene, protein in zip(task.genes[:50], task.proteins[:50], strict=True):
        assert len(gene) == 3 * (len(protein) + 1)  # the CDS keeps its stop codon
        assert gene[:3] in ("ATG", "GTG", "TTG") and gene[-3:] in ("TAA", "TAG", "TGA")


def write(path, text: str):
    path.write_text(text)
    return str(path)


def test_custom_csv_task_with_split_column_loads(tmp_path):
    rows = "".join(f"{'ACGT' * 5 if i % 2 else 'TTGA' * 5},{i % 2},{'test' if i < 4 else 'train'}\n" for i in range(12))
    task = load_task(write(tmp_path / "t.csv", "sequence,label,split\n" + rows))
    assert (len(task.train), len(task.test), task.modality, task.classes) == (8, 4, "dna", ["0", "1"])


def test_custom_fasta_task_takes_labels_from_headers(tmp_path):
    records = "".join(
        f">s{i} label={'kinase' if i % 2 else 'globin'}\n{'MKV' * 5 if i % 2 else 'WYH' * 5}\n" for i in range(10)
    )
    path = tmp_path / "t.fa.gz"
    path.write_bytes(gzip.compress(records.encode()))
    task = load_task(str(path))
    assert task.modality == "protein" and task.classes == ["globin", "kinase"]
    assert len(task.train) == 8 and len(task.test) == 2


BAD_INPUTS = {
    "missing column": ("seq,label\nACGT,0\n", r"t\.csv: missing column\(s\) \['sequence'\]"),
    "one class only": ("sequence,label\nACGT,1\nACGA,1\nAAGT,1\n", r"one class only"),
    "non-integer label": ("sequence,label\nACGT,0\nACGA,yes\n", r"t\.csv: row 3: label 'yes' is not an integer"),
    "invalid character": (
        "sequence,label,split\nACGT,0,train\nACXT,1,train\nACGT,0,test\n",
        r"t\.csv: row 3: invalid dna character 'X' at position 2",
    ),
    "unknown test label": (
        "sequence,label,split\nACGT,0,train\nACGA,1,train\nAGGT,2,test\n",
        r"t\.csv: row 4: label '2' never occurs in the train split",
    ),
    "empty split": ("sequence,label,split\nACGT,0,train\nACGA,1,train\n", r"the test split is empty"),
    "bad split value": (
        "sequence,label,split\nACGT,0,train\nACGA,1,dev\n",
        r"row 3: split 'dev' must be 'train' or 'test'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_csv_task_input_names_file_and_row(tmp_path, case):
    text, message = BAD_INPUTS[case]
    with pytest.raises(InputError, match=message):
        load_task(write(tmp_path / "t.csv", text))


def test_fasta_task_without_label_field_names_the_record(tmp_path):
    with pytest.raises(InputError, match=r"record 2 \(b, line 3\): header has no 'label=<label>' field"):
        load_task(write(tmp_path / "t.fa", ">a label=1\nACGT\n>b\nACGA\n"))


def test_unknown_task_name_lists_the_bundled_tasks():
    with pytest.raises(InputError, match=r"unknown task 'nope'.*gb_nontata_promoters"):
        load_task("nope")
