"""Corpus sources: bundled files, local paths, globs and s3:// URIs; FASTA and CSV; modality.

A configured source (a string or `SourceConfig`) expands to one or more files. Each file's
format comes from its extension (.csv/.tsv, optionally .gz, are CSV; anything else is
FASTA) and its modality from its residues unless declared. A source whose modality the
tokenizer cannot encode (protein given to a DNA tokenizer) is rejected before any work.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib import resources

from raybio.data import storage
from raybio.data.alphabet import guess_modality
from raybio.data.config import SourceConfig
from raybio.data.fasta import Record, parse_fasta, read_fasta
from raybio.data.validate import InputError, Policy, Rejects, Validator

BUNDLED = {
    "ecoli": "ecoli_K12_MG1655_NC_000913.2.fa.gz",
    "ecoli_proteins": "ecoli_mg1655_proteins.faa.gz",
    "human_chr22": "human_chr22_20-21Mb_GRCh37.fa.gz",
    "lambda": "lambda_phage_NC_001416.1.fa",
    "phix": "phiX174_NC_001422.1.fa",
}
SNIFF_RESIDUES = 1 << 16


def resolve_source(src: str) -> str:
    """Map `bundled:<name>` to the packaged file; other sources pass through."""
    if src.startswith("bundled:"):
        name = src.removeprefix("bundled:")
        if name not in BUNDLED:
            raise InputError(f"unknown bundled corpus {name!r}; choose one of {sorted(BUNDLED)}")
        return str(resources.files("raybio.data") / "bundled" / BUNDLED[name])
    return src


def source_config(src: str | SourceConfig) -> SourceConfig:
    return src if isinstance(src, SourceConfig) else SourceConfig(uri=src)


@dataclass(frozen=True)
class SourceFile:
    """One input file of one configured source, with its format and modality resolved."""

    uri: str
    source_index: int
    source_uri: str
    format: str
    modality: str
    sequence_column: str = "sequence"
    id_column: str | None = None
    label_column: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def expand(src: SourceConfig, s3=None) -> list[str]:
    """The files a source names; an error if there are none."""
    uri = resolve_source(src.uri)
    if storage.has_glob(uri):
        files = storage.glob(uri, s3)
        if not files:
            raise InputError(f"source {src.uri!r}: no files match this pattern")
        return files
    if not storage.exists(uri, s3):
        raise InputError(f"source {src.uri!r}: file not found")
    return [uri]


def file_format(uri: str, declared: str) -> str:
    if declared != "auto":
        return declared
    name = uri.lower().removesuffix(".gz")
    return "csv" if name.endswith((".csv", ".tsv")) else "fasta"


def sniff_modality(uri: str, fmt: str, src: SourceConfig, s3=None) -> str:
    """'dna' or 'protein' from the first residues of the file (whole-file errors surface here)."""
    seen, size = [], 0
    with storage.open_input(uri, s3) as fh:
        rows = _csv_rows(fh, uri, src) if fmt == "csv" else parse_fasta(fh, uri)
        with contextlib.closing(rows):
            for row in rows:
                seen.append(row[2])
                size += len(row[2])
                if size >= SNIFF_RESIDUES:
                    break
    return guess_modality(b"".join(seen))


def plan_sources(sources: list, kind: str, modalities: tuple[str, ...], s3=None) -> list[SourceFile]:
    """Expand every source into files with format and modality; check the tokenizer can encode them.

    `kind` and `modalities` describe the tokenizer (what it is called, what it encodes).
    """
    files = []
    for i, raw in enumerate(sources):
        src = source_config(raw)
        for uri in expand(src, s3):
            fmt = file_format(uri, src.format)
            modality = src.modality if src.modality != "auto" else sniff_modality(uri, fmt, src, s3)
            if modality not in modalities:
                how = "declared" if src.modality != "auto" else "detected from its residues"
                raise InputError(
                    f"{uri}: holds {modality} sequences ({how}), but tokenizer kind {kind!r} encodes "
                    f"{'/'.join(modalities)} only; use data.tokenizer.kind=multiomic for DNA + protein, "
                    f"kind=protein for protein alone, or remove this source"
                )
            files.append(
                SourceFile(
                    uri=uri,
                    source_index=i,
                    source_uri=src.uri,
                    format=fmt,
                    modality=modality,
                    sequence_column=src.sequence_column,
                    id_column=src.id_column,
                    label_column=src.label_column,
                )
            )
    return files


def iter_records(sf: SourceFile, policy: Policy, rejects: Rejects, s3=None, digest=None) -> Iterator[Record]:
    """Validated records of one source file (rejections counted in `rejects`)."""
    stream = storage.open_input(sf.uri, s3, digest=digest)
    if sf.format == "fasta":
        yield from read_fasta(sf.uri, sf.modality, policy, rejects, stream=stream)
        return
    check = Validator(sf.modality, policy, rejects, sf.uri).check
    src = SourceConfig(
        uri=sf.source_uri, sequence_column=sf.sequence_column, id_column=sf.id_column, label_column=sf.label_column
    )
    with stream:
        for rid, line, seq, label in _csv_rows(stream, sf.uri, src):
            clean = check(rid, seq, line, [(line, len(seq))])
            if clean is not None:
                yield Record(id=rid, description="", seq=clean, source=sf.uri, line=line, label=label)


def _csv_rows(stream, uri: str, src: SourceConfig) -> Iterator[tuple[str, int, bytes, str]]:
    """(id, line, sequence bytes, label) per CSV/TSV row; header required."""
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")
    delimiter = "\t" if uri.lower().removesuffix(".gz").endswith(".tsv") else ","
    reader = csv.DictReader(text, delimiter=delimiter)
    try:
        columns = reader.fieldnames or []
        if src.sequence_column not in columns:
            raise InputError(
                f"{uri}:1: no column {src.sequence_column!r} in the CSV header "
                f"(columns: {', '.join(columns) or 'none'}); set the source's sequence_column"
            )
        for col in (src.id_column,):
            if col and col not in columns:
                raise InputError(f"{uri}:1: no id column {col!r} in the CSV header (columns: {', '.join(columns)})")
        label_col = src.label_column if src.label_column in columns else None
        for n, row in enumerate(reader, start=1):
            rid = row[src.id_column] if src.id_column else f"row{n}"
            seq = (row[src.sequence_column] or "").strip().encode("ascii", errors="replace")
            yield rid, reader.line_num, seq, (row[label_col] or "") if label_col else ""
    except EOFError as err:
        raise InputError(f"{uri}: truncated gzip file ({err}); re-download or re-compress it") from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise InputError(f"{uri}: corrupt gzip data ({err}); re-download the file") from None
    finally:
        text.detach()
