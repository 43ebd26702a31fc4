"""Every downstream task by name or path: the bundled registry (`bundled.py`) and custom CSV / FASTA files."""

from __future__ import annotations

from pathlib import Path

from raybio.data.validate import InputError
from raybio.evaluate.bundled import TASKS
from raybio.evaluate.task_types import ClassificationTask, RetrievalTask, Task, load_csv_task, load_fasta_task

# The task types stay importable from here (where they lived before task_types.py).
__all__ = ["ClassificationTask", "RetrievalTask", "Task", "load_task"]


def load_task(name_or_path: str, exclude_sha256: frozenset[str] = frozenset()) -> Task:
    """A bundled task by name, or a custom task from a CSV / FASTA path.

    `exclude_sha256`: files (by checksum) a bundled task must not draw from — the evaluated
    checkpoints' pretraining sources (the species task then leaves those genomes out).
    """
    if name_or_path in TASKS:
        return TASKS[name_or_path](exclude_sha256)
    path = Path(name_or_path)
    if not path.is_file():
        raise InputError(f"unknown task {name_or_path!r}: not a bundled task ({', '.join(TASKS)}) nor a file")
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] in (".csv", ".tsv"):
        return load_csv_task(path)
    return load_fasta_task(path)
