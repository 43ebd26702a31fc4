"""Downstream tasks: a small registry of bundled tasks plus custom CSV / FASTA tasks.

A classification task is a fixed train/test split of labelled sequences; the validation
split is carved from train later (`splits.carve_validation`), never from test. Every
loader runs the same checks (`check_task`), so bad input raises `InputError` naming the
file and row instead of being dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from raybio.data.fasta import read_fasta
from raybio.data.tokenizers import DNA_BASES, PROTEIN_RESIDUES, reverse_complement
from raybio.data.validate import InputError
from raybio.evaluate.splits import Split, stratified_holdout

DATA = Path(__file__).parent / "data"
BUNDLED = Path(__file__).parents[1] / "data" / "bundled"
ALPHABET = {"dna": set(DNA_BASES + "N"), "protein": set(PROTEIN_RESIDUES + "X")}


@dataclass
class ClassificationTask:
    name: str
    modality: str  # "dna" or "protein"
    classes: list[str]
    train: Split
    test: Split
    note: str = ""  # caveats shown beside results (e.g. "GB test split re-split 80/20")


@dataclass
class RetrievalTask:
    """Paired sequences of two modalities (gene i encodes protein i)."""

    name: str
    genes: list[str]
    proteins: list[str]
    ids: list[str]
    note: str = ""


Task = ClassificationTask | RetrievalTask
GB_NOTE = (
    "Genomic Benchmarks official *test* split re-split 80/20 (the official train split is not bundled): "
    "published numbers are context, not like-for-like"
)


def check_task(task: ClassificationTask, source: str) -> ClassificationTask:
    """Raise `InputError` for an empty split, invalid characters, one class only or unknown test labels."""
    for split_name, split in (("train", task.train), ("test", task.test)):
        if len(split) == 0:
            raise InputError(f"{source}: the {split_name} split is empty; it needs at least one row per class")
        allowed = ALPHABET[task.modality]
        for i, seq in enumerate(split.sequences):
            where = split.rows[i] if split.rows else f"{split_name} row {i}"
            if not seq:
                raise InputError(f"{where}: empty sequence")
            bad = set(seq) - allowed
            if bad:
                ch = min(bad)
                raise InputError(
                    f"{where}: invalid {task.modality} character {ch!r} at position {seq.index(ch)}; "
                    f"allowed: {''.join(sorted(allowed))}"
                )
    train_classes = set(task.train.labels.tolist())
    if len(train_classes) < 2:
        raise InputError(
            f"{source}: the train split has one class only ({task.classes[task.train.labels[0]]!r}); "
            "a classification task needs at least two"
        )
    for i, y in enumerate(task.test.labels.tolist()):
        if y not in train_classes:
            where = task.test.rows[i] if task.test.rows else f"test row {i}"
            raise InputError(f"{where}: label {task.classes[y]!r} never occurs in the train split (unknown label)")
    return task


def _integer_labels(values: pd.Series, rows: list[str]) -> np.ndarray:
    """CSV labels must be integers (0, 1, ...): name the first row that is not."""
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values.tolist()):
        text = str(v).strip()
        if not re.fullmatch(r"-?\d+", text):
            raise InputError(f"{rows[i]}: label {v!r} is not an integer; CSV labels must be class ids 0, 1, ...")
        out[i] = int(text)
    return out


def _read_csv(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("sequence", "label") if c not in df.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {missing}; found {list(df.columns)}. "
            "A task CSV needs a 'sequence' and a 'label' column (and optionally 'split' = train/test)"
        )
    return df


def _split_from_frame(df: pd.DataFrame, path: Path, row0: int = 2) -> tuple[list[str], list[str], list[str]]:
    rows = [f"{path}: row {i + row0}" for i in df.index]  # row 1 is the header
    return [s.strip().upper() for s in df["sequence"]], df["label"].tolist(), rows


def _modality(seqs: list[str]) -> str:
    """DNA when >= 90 % of residues are A/C/G/T/N (so a stray bad character is reported, not re-typed)."""
    text = "".join(seqs)
    return "dna" if sum(text.count(c) for c in "ACGTN") >= 0.9 * max(len(text), 1) else "protein"


def _labelled_task(name: str, train: tuple, test: tuple, integer: bool, source: str, note: str = "") -> Task:
    """Build a task from (sequences, raw labels, row names) of train and test."""
    (tr_seq, tr_lab, tr_rows), (te_seq, te_lab, te_rows) = train, test
    if integer:
        tr_y, te_y = _integer_labels(pd.Series(tr_lab), tr_rows), _integer_labels(pd.Series(te_lab), te_rows)
        classes = [str(c) for c in range(max([0, *tr_y.tolist(), *te_y.tolist()]) + 1)]
        if (tr_y < 0).any() or (te_y < 0).any():
            raise InputError(f"{source}: labels must be non-negative class ids 0, 1, ...")
    else:
        classes = sorted(set(tr_lab) | set(te_lab))
        tr_y = np.array([classes.index(v) for v in tr_lab], dtype=np.int64)
        te_y = np.array([classes.index(v) for v in te_lab], dtype=np.int64)
    task = ClassificationTask(
        name,
        _modality(tr_seq + te_seq),
        classes,
        Split(tr_seq, tr_y, rows=tr_rows),
        Split(te_seq, te_y, rows=te_rows),
        note,
    )
    return check_task(task, source)


def _holdout(seqs: list[str], labels: list, rows: list[str], source: str) -> tuple[tuple, tuple]:
    """Stratified 80/20 train/test split (seed 0) for a custom task without a `split` column."""
    if len(seqs) < 2:
        raise InputError(f"{source}: {len(seqs)} row(s); a task needs rows in both a train and a test split")
    tr, te = stratified_holdout(np.asarray(labels), test_fraction=0.2, seed=0, source=source)
    pick = lambda idx: ([seqs[i] for i in idx], [labels[i] for i in idx], [rows[i] for i in idx])  # noqa: E731
    return pick(tr), pick(te)


def load_csv_task(path: str | Path, name: str | None = None) -> Task:
    """A CSV with `sequence` and integer `label` columns; optional `split` (train/test) column,
    else a stratified 80/20 split with seed 0."""
    path = Path(path)
    df = _read_csv(path)
    if "split" in df.columns:
        bad = df[~df["split"].isin(["train", "test"])]
        if len(bad):
            i = bad.index[0]
            raise InputError(f"{path}: row {i + 2}: split {df['split'][i]!r} must be 'train' or 'test'")
        train, test = (_split_from_frame(df[df["split"] == s], path) for s in ("train", "test"))
    else:
        seqs, labels, rows = _split_from_frame(df, path)
        train, test = _holdout(seqs, _integer_labels(pd.Series(labels), rows).tolist(), rows, source=str(path))
    return _labelled_task(name or path.stem, train, test, integer=True, source=str(path))


def _fasta_labelled(path: Path, key: str) -> tuple[list[str], list[str], list[str], list[str]]:
    """(sequences, labels, row names, splits) from FASTA headers carrying `key=<label>` (and `split=`)."""
    seqs, labels, rows, splits = [], [], [], []
    pattern, split_pattern = re.compile(rf"(?:^|\s){re.escape(key)}=(\S+)"), re.compile(r"(?:^|\s)split=(\S+)")
    modality = "protein" if _fasta_looks_protein(path) else "dna"
    for n, rec in enumerate(read_fasta(path, modality), start=1):
        where = f"{path}: record {n} ({rec.id}, line {rec.line})"
        m = pattern.search(rec.description)
        if not m:
            raise InputError(f"{where}: header has no '{key}=<label>' field; write e.g. '>{rec.id} {key}=1'")
        s = split_pattern.search(rec.description)
        seqs.append(rec.seq)
        labels.append(m.group(1))
        rows.append(where)
        splits.append(s.group(1) if s else "")
    return seqs, labels, rows, splits


def _fasta_looks_protein(path: Path) -> bool:
    from raybio.data.storage import open_input

    with open_input(str(path)) as fh:
        body = b"".join(line.strip() for line, _ in zip(fh, range(400), strict=False) if not line.startswith(b">"))
    return not set(body.upper().decode("ascii", "replace")) <= ALPHABET["dna"]


def load_fasta_task(path: str | Path, name: str | None = None, key: str = "label") -> Task:
    """A FASTA whose headers carry `label=<class>` (any string; optional `split=train|test`)."""
    path = Path(path)
    seqs, labels, rows, splits = _fasta_labelled(path, key)
    if any(splits):
        bad = [r for r, s in zip(rows, splits, strict=True) if s not in ("train", "test")]
        if bad:
            raise InputError(f"{bad[0]}: split= must be 'train' or 'test' on every record when any has it")
        part = lambda which: tuple(  # noqa: E731
            [x for x, s in zip(col, splits, strict=True) if s == which] for col in (seqs, labels, rows)
        )
        train, test = part("train"), part("test")
    else:
        train, test = _holdout(seqs, labels, rows, source=str(path))
    return _labelled_task(name or path.stem, train, test, integer=False, source=str(path))


def _gb(task: str) -> Callable[[], Task]:
    def load() -> Task:
        parts = []
        for split in ("train", "test"):
            path = DATA / f"{task}_{split}.csv.gz"
            parts.append(_split_from_frame(_read_csv(path), path))
        return _labelled_task(task, *parts, integer=True, source=str(DATA / task), note=GB_NOTE)

    return load


# Species windows: genome-of-origin of fixed-length windows, split by position blocks.
SPECIES_GENOMES = {
    "E. coli": BUNDLED / "ecoli_K12_MG1655_NC_000913.2.fa.gz",
    "S. aureus": DATA / "saureus_USA300_FPR3757_CP000255-CP000258.fa.gz",
    "C. diphtheriae": DATA / "cdiphtheriae_NCTC11397_NZ_LN831026.1.fa.gz",
    "human chr22": BUNDLED / "human_chr22_20-21Mb_GRCh37.fa.gz",
}
SPECIES_WINDOW, SPECIES_BLOCK = 256, 20_000
SPECIES_PER_GENOME = {"train": 500, "test": 125}  # downsampled so a fine-tune takes seconds, not hours


def species_windows(
    genomes: dict[str, Path] = SPECIES_GENOMES,
    window: int = SPECIES_WINDOW,
    block: int = SPECIES_BLOCK,
    per_genome: dict[str, int] = SPECIES_PER_GENOME,
    seed: int = 0,
) -> pd.DataFrame:
    """Non-overlapping N-free windows, one row each: genome, record, start, block id, split.

    Each record is cut into `block`-bp blocks; 80 % of a genome's blocks go to train and 20 %
    to test (seeded), and windows tile inside their block, so no window of one split overlaps
    a window of another; `block` is also the group used to carve validation from train.
    Windows are then downsampled to `per_genome[split]` per genome.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for label, (genome, path) in enumerate(genomes.items()):
        rows = []
        for rec in read_fasta(path):
            for b0 in range(0, len(rec.seq) - window + 1, block):
                for start in range(b0, min(b0 + block, len(rec.seq)) - window + 1, window):
                    seq = rec.seq[start : start + window]
                    if "N" not in seq:
                        rows.append((genome, rec.id, start, f"{genome}|{rec.id}|{b0}", seq, label))
        df = pd.DataFrame(rows, columns=["genome", "record", "start", "block", "sequence", "label"])
        blocks = df["block"].unique()
        test_blocks = set(rng.permutation(blocks)[: max(1, round(0.2 * len(blocks)))])
        df["split"] = np.where(df["block"].isin(test_blocks), "test", "train")
        for split, n in per_genome.items():
            part = df[df["split"] == split]
            frames.append(part.iloc[np.sort(rng.choice(len(part), min(n, len(part)), replace=False))])
    return pd.concat(frames, ignore_index=True)


def _species() -> Task:
    df = species_windows()
    names = list(SPECIES_GENOMES)
    block_ids = pd.factorize(df["block"])[0]
    splits = {}
    for split in ("train", "test"):
        part = df["split"] == split
        where = zip(df["genome"][part], df["record"][part], df["start"][part], strict=True)
        rows = [f"species {g} {r}:{s}" for g, r, s in where]
        splits[split] = Split(
            list(df["sequence"][part]), df["label"][part].to_numpy(), block_ids[part.to_numpy()], rows
        )
    note = (
        f"{SPECIES_WINDOW} bp windows from {', '.join(names)}; split by {SPECIES_BLOCK // 1000} kb position blocks; "
        f"downsampled to {SPECIES_PER_GENOME['train']}/{SPECIES_PER_GENOME['test']} train/test windows per genome"
    )
    return check_task(ClassificationTask("species", "dna", names, splits["train"], splits["test"], note), "species")


def _protein_family() -> Task:
    return load_fasta_task(DATA / "protein_families_pkinase_fn3_globin.fasta.gz", "protein_family", key="family")


def _gene_protein() -> Task:
    """E. coli CDS (cut from the bundled genome at the proteins' header coordinates) and their proteins."""
    genome = next(iter(read_fasta(SPECIES_GENOMES["E. coli"]))).seq
    genes, proteins, ids = [], [], []
    for rec in read_fasta(BUNDLED / "ecoli_mg1655_proteins.faa.gz", "protein"):
        m = re.search(r":(\d+)-(\d+)\(([+-])\)", rec.description)
        cds = genome[int(m[1]) - 1 : int(m[2])]
        genes.append(cds if m[3] == "+" else reverse_complement(cds))
        proteins.append(rec.seq)
        ids.append(rec.id)
    note = "4,143 E. coli K-12 MG1655 CDS / protein pairs; projector trained on 5 % of pairs, tested on the rest"
    return RetrievalTask("gene_protein_retrieval", genes, proteins, ids, note)


TASKS: dict[str, Callable[[], Task]] = {
    "gb_nontata_promoters": _gb("gb_nontata_promoters"),
    "gb_enhancers_cohn": _gb("gb_enhancers_cohn"),
    "species": _species,
    "protein_family": _protein_family,
    "gene_protein_retrieval": _gene_protein,
}


def load_task(name_or_path: str) -> Task:
    """A bundled task by name, or a custom task from a CSV / FASTA path."""
    if name_or_path in TASKS:
        return TASKS[name_or_path]()
    path = Path(name_or_path)
    if not path.is_file():
        raise InputError(f"unknown task {name_or_path!r}: not a bundled task ({', '.join(TASKS)}) nor a file")
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] in (".csv", ".tsv"):
        return load_csv_task(path)
    return load_fasta_task(path)
