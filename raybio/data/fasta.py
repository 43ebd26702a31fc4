"""Streaming FASTA / FASTA.gz reader with validation that names file, line and character."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DNA_ALPHABET = frozenset("ACGTN")
PROTEIN_ALPHABET = frozenset("ACDEFGHIKLMNPQRSTVWYX")


class FastaError(ValueError):
    """Malformed FASTA input; the message names the file and line."""


@dataclass(frozen=True)
class Record:
    id: str
    description: str
    seq: str
    source: str


def open_text(path: str | Path) -> io.TextIOBase:
    """Open a local or fsspec path as text, transparently gunzipping `.gz`."""
    path = str(path)
    if "://" in path:
        import fsspec

        raw = fsspec.open(path, "rb").open()
    else:
        raw = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    if path.endswith(".gz"):
        raw = gzip.GzipFile(fileobj=raw)
    return io.TextIOWrapper(raw, encoding="ascii", errors="strict")


def read_fasta(path: str | Path, alphabet: frozenset[str] = DNA_ALPHABET) -> Iterator[Record]:
    """Yield records one at a time (upper-cased), checking every residue against `alphabet`."""
    header: str | None = None
    chunks: list[str] = []
    lineno = 0
    try:
        with open_text(path) as fh:
            for lineno, line in enumerate(fh, start=1):
                line = line.strip()
                if not line:
                    continue
                if line.startswith(">"):
                    if header is not None:
                        yield _record(header, chunks, path)
                    header, chunks = line[1:].strip(), []
                    if not header:
                        raise FastaError(f"{path}:{lineno}: empty FASTA header")
                    continue
                if header is None:
                    raise FastaError(
                        f"{path}:{lineno}: not a FASTA file (expected a '>' header line, got {line[:20]!r})"
                    )
                seq = line.upper()
                bad = set(seq) - alphabet
                if bad:
                    ch = next(c for c in seq if c in bad)
                    col = seq.index(ch) + 1
                    raise FastaError(
                        f"{path}:{lineno}:{col}: invalid character {ch!r} in record "
                        f"{header.split()[0]!r}; allowed: {''.join(sorted(alphabet))}"
                    )
                chunks.append(seq)
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as err:
        raise FastaError(f"{path}:{lineno}: cannot read as FASTA text ({err})") from None
    if header is None:
        raise FastaError(f"{path}: no FASTA records found")
    yield _record(header, chunks, path)


def _record(header: str, chunks: list[str], path: str | Path) -> Record:
    rid, _, desc = header.partition(" ")
    return Record(id=rid, description=desc, seq="".join(chunks), source=str(path))
