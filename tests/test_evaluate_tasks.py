"""Downstream tasks load with disjoint splits; bad task input fails with a message naming file and row."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from raybio.data.validate import InputError
from raybio.evaluate.bundled import (
    SPECIES_GENOMES,
    SPECIES_WINDOW,
    cluster_split,
    file_sha256,
    identity_clusters,
    species_windows,
)
from raybio.evaluate.splits import carve_validation
from raybio.evaluate.tasks import load_task


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
    # phiX174 (5.4 kb) is a single 20 kb block: it cannot be in both splits and is left out.
    assert sorted(df["genome"].unique()) == sorted(set(SPECIES_GENOMES) - {"phage phiX174"})
    for (genome, record), group in df.groupby(["genome", "record"]):
        gaps = np.diff(group.sort_values("start")["start"].to_numpy())
        assert (gaps >= SPECIES_WINDOW).all(), (genome, record)  # no two windows overlap at all
        assert set(group[group["split"] == "train"]["block"]).isdisjoint(group[group["split"] == "test"]["block"])
    task = load_task("species")
    train, val = carve_validation(task.train, 0.1, seed=0, source="species")
    assert set(train.groups).isdisjoint(val.groups)
    assert not set(train.sequences) & set(val.sequences) and not set(val.sequences) & set(task.test.sequences)


def test_species_task_leaves_out_the_genomes_a_checkpoint_pretrained_on():
    pretrained_on = frozenset(
        {file_sha256(str(SPECIES_GENOMES["E. coli"])), file_sha256(str(SPECIES_GENOMES["human chr22"]))}
    )
    task = load_task("species", pretrained_on)
    assert task.classes == ["S. aureus", "C. diphtheriae", "phage lambda"]
    assert "left out as pretraining sources: E. coli, human chr22" in task.note
    assert not {str(SPECIES_GENOMES["E. coli"]), str(SPECIES_GENOMES["human chr22"])} & set(task.sources)


def test_identity_cluster_split_puts_no_cluster_in_both_train_and_test():
    task = load_task("protein_family")
    assert task.modality == "protein" and task.classes == ["Pkinase", "fn3", "globin"]
    assert len(task.train) + len(task.test) == 181
    assert set(task.train.groups).isdisjoint(task.test.groups)
    assert set(task.test.labels) == {0, 1, 2}
    # Clusters are what they claim: two globins with most 3-mers shared land in one cluster, and a
    # cluster split keeps both on one side; unrelated sequences are singletons.
    base = "MVLSPADKTNVKAAWGKVGAHAGEYGAEALERMFLSFPTTKTYFPHFDLSHGSAQVKGHGKKVADALTNAVAHV"
    seqs = [base, base[:-3] + "WWW", "ACDEFGHIKLMNPQRSTVWYACDEFGHIKLMNPQ", "WWWWKKKKPPPPMMMMEEEE" * 2]
    clusters = identity_clusters(seqs)
    assert clusters[0] == clusters[1] and len(set(clusters)) == 3
    labels = np.array([0, 0, 1, 1, 0, 1, 0, 1, 0, 1])
    groups = np.array([1, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    tr, te = cluster_split(labels, groups)
    assert set(groups[tr]).isdisjoint(groups[te])


def test_protein_family_crops_make_length_independent_of_family():
    task = load_task("protein_family")
    lengths = np.array([len(s) for s in task.train.sequences + task.test.sequences])
    labels = np.concatenate([task.train.labels, task.test.labels])
    assert lengths.min() >= 50 and lengths.max() <= 75  # uncropped: fn3 75-98, globin 141-153, Pkinase 247-307
    means = [lengths[labels == c].mean() for c in range(3)]
    assert max(means) - min(means) < 5
    train, val = carve_validation(task.train, 0.1, seed=1, source="protein_family")
    assert set(train.groups).isdisjoint(val.groups)  # validation is carved by cluster too


@pytest.mark.parametrize(
    ("name", "n_pairs"), [("gene_protein_retrieval", 4143), ("gene_protein_retrieval_saureus", 2651)]
)
def test_gene_protein_pairs_are_in_frame(name, n_pairs):
    task = load_task(name)
    assert len(task.genes) == len(task.proteins) == n_pairs
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
