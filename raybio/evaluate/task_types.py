"""Downstream task types, their checks, and custom CSV / FASTA tasks (bundled ones: `bundled.py`).

A classification task is a fixed train/test split of labelled sequences; the validation
split is carved from train later (`splits.carve_validation`), never from test. Every
loader runs the same checks (`check_task`), so bad input raises `InputError` naming the
file and row instead of being dropped. Every task names the files its sequences come
from (`sources`), which is what `seen.py` compares with a checkpoint's pretraining corpus.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from raybio.data.alphabet import ALPHABETS, guess_modality
from raybio.data.fasta import read_fasta
from raybio.data.validate import InputError
from raybio.evaluate.splits import Split, stratified_holdout


@dataclass
class ClassificationTask:
    name: str
    modality: str  # "dna" or "protein"
    classes: list[str]
    train: Split
    test: Split
    note: str = ""  # caveats shown beside results (e.g. "GB test split re-split 80/20")
    sources: tuple[str, ...] = ()  # files the sequences come from (checked against pretraining corpora)

    def fingerprint(self) -> str:
        """Hash of every sequence, label and split: a journal row is reused only for the very same task."""
        h = hashlib.sha256(self.name.encode())
        for split in (self.train, self.test):
            h.update("\n".join(split.sequences).encode())
            h.update(split.labels.tobytes())
        return h.hexdigest()[:16]


@dataclass
class RetrievalTask:
    """Paired sequences of two modalities (gene i encodes protein i)."""

    name: str
    genes: list[str]
    proteins: list[str]
    ids: list[str]
    note: str = ""
    sources: tuple[str, ...] = field(default=())

    def fingerprint(self) -> str:
        h = hashlib.sha256(self.name.encode())
        h.update("\n".join(self.genes + self.proteins).encode())
        return h.hexdigest()[:16]


Task = ClassificationTask | RetrievalTask


def check_task(task: ClassificationTask, source: str) -> ClassificationTask:
    """Raise `InputError` for an empty split, invalid characters, one class only or unknown test labels."""
    for split_name, split in (("train", task.train), ("test", task.test)):
        if len(split) == 0:
            raise InputError(f"{source}: the {split_name} split is empty; it needs at least one row per class")
        allowed = set(ALPHABETS[task.modality])
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
        guess_modality("".join(tr_seq + te_seq)),
        classes,
        Split(tr_seq, tr_y, rows=tr_rows),
        Split(te_seq, te_y, rows=te_rows),
        note,
        (source,),
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
    modality = _fasta_modality(path)
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


def _fasta_modality(path: Path) -> str:
    """The modality of a FASTA file's first 400 lines (`alphabet.guess_modality`)."""
    from raybio.data.storage import open_input

    with open_input(str(path)) as fh:
        body = b"".join(line.strip() for line, _ in zip(fh, range(400), strict=False) if not line.startswith(b">"))
    return guess_modality(body)


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
