"""Streaming FASTA / FASTA.gz reader on bytes, validating every record (see `validate.py`)."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from raybio.data.validate import InputError, Policy, Rejects, Validator


@dataclass(frozen=True)
class Record:
    id: str
    description: str
    seq: str
    source: str
    line: int = 0
    label: str = ""


def parse_fasta(stream: BinaryIO, path: str) -> Iterator[tuple[str, int, bytes, list[tuple[int, int]]]]:
    """Raw records: (header, header line, sequence bytes, [(line, cumulative length)])."""
    header: str | None = None
    header_line, chunks, lines, total, lineno = 0, [], [], 0, 0
    try:
        for lineno, raw in enumerate(stream, start=1):
            line = raw.strip()
            if not line or line[:1] == b";":  # blank or old-style comment line
                continue
            if line[:1] == b">":
                if header is not None:
                    yield header, header_line, b"".join(chunks), lines
                header = line[1:].strip().decode("utf-8", errors="replace")
                if not header:
                    raise InputError(f"{path}:{lineno}: empty FASTA header (a '>' line needs a record ID)")
                header_line, chunks, lines, total = lineno, [], [], 0
                continue
            if header is None:
                shown = line[:20].decode("ascii", errors="replace")
                raise InputError(f"{path}:{lineno}: not a FASTA file (expected a '>' header line, got {shown!r})")
            chunks.append(line)
            total += len(line)
            lines.append((lineno, total))
    except EOFError as err:
        raise InputError(
            f"{path}: truncated gzip file (data ends after line {lineno}: {err}); re-download or re-compress it"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise InputError(f"{path}: corrupt gzip data after line {lineno} ({err}); re-download the file") from None
    if header is None:
        raise InputError(f"{path}: no FASTA records found (empty file?)")
    yield header, header_line, b"".join(chunks), lines


def read_fasta(
    path: str | Path,
    modality: str = "dna",
    policy: Policy | None = None,
    rejects: Rejects | None = None,
    stream: BinaryIO | None = None,
) -> Iterator[Record]:
    """Validated records of a local FASTA / FASTA.gz file (or of an already opened `stream`).

    Records that fail validation are counted in `rejects` (see `validate.REASONS`) or raise
    `InputError` naming the file, line and column.
    """
    from raybio.data.storage import open_input

    path = str(path)
    rejects = rejects if rejects is not None else Rejects()
    check = Validator(modality, policy or Policy(), rejects, path).check
    with open_input(path) if stream is None else stream as fh:
        for header, line, seq, lines in parse_fasta(fh, path):
            rid, _, desc = header.partition(" ")
            clean = check(rid, seq, line, lines)
            if clean is not None:
                yield Record(id=rid, description=desc.strip(), seq=clean, source=path, line=line)
