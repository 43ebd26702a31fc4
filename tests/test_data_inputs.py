"""Bad input gets a clear error or an explicit count, never silence: one test per kind of bad input."""

from __future__ import annotations

import gzip

import pytest

from raybio.config import DataConfig, SourceConfig
from raybio.data.fasta import read_fasta
from raybio.data.prepare import prepare
from raybio.data.sources import expand, iter_records, plan_sources, resolve_source
from raybio.data.summary import summary
from raybio.data.validate import REASONS, InputError, Policy, Rejects


def records(path, modality="dna", **policy):
    rejects = Rejects()
    recs = list(read_fasta(path, modality, Policy(**policy), rejects))
    return recs, rejects


def test_not_a_fasta_file(tmp_path):
    path = tmp_path / "table.txt"
    path.write_text("id,seq\n1,ACGT\n")
    expected = r"table\.txt:1: not a FASTA file \(expected a '>' header line, got 'id,seq'\)"
    with pytest.raises(InputError, match=expected):
        records(path)


def test_binary_file_is_not_fasta(tmp_path):
    path = tmp_path / "image.fa"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(InputError, match=r"image\.fa:1: not a FASTA file"):
        records(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.fa"
    path.write_text("\n\n")
    with pytest.raises(InputError, match=r"empty\.fa: no FASTA records found"):
        records(path)


def test_invalid_character_names_file_line_column_and_record(tmp_path):
    path = tmp_path / "bad.fa"
    path.write_text(">r1 ok\nACGT\nACGT\n>r2\nACGTAC\nAC!GT\n")
    with pytest.raises(InputError, match=r"bad\.fa:6:3: invalid character '!' in record 'r2'; allowed: ACGTN"):
        records(path)


def test_invalid_character_can_be_skipped_and_counted(tmp_path):
    path = tmp_path / "bad.fa"
    path.write_text(">r1\nACGT\n>r2\nACXT\n>r3\nGG\n")
    recs, rejects = records(path, on_invalid="skip")
    assert [r.id for r in recs] == ["r1", "r3"]
    assert rejects.counts == {"invalid_character": 1}
    assert "bad.fa:4:3: invalid character 'X' in record 'r2'" in rejects.examples["invalid_character"]


def test_iupac_codes_error_by_default_and_map_to_n_on_request(tmp_path):
    path = tmp_path / "iupac.fa"
    path.write_text(">r1\nACRYGT\n>r2\nacgtswkmbdhv\n")
    with pytest.raises(InputError, match=r"iupac\.fa:2:3: invalid character 'R'.*IUPAC ambiguity code.*iupac_to_n"):
        records(path)
    recs, rejects = records(path, iupac_to_n=True)
    assert [r.seq for r in recs] == ["ACNNGT", "ACGTNNNNNNNN"]
    assert rejects.notes["iupac_mapped"] == 2 and not rejects.counts


def test_protein_iupac_and_trailing_stop(tmp_path):
    path = tmp_path / "p.faa"
    path.write_text(">p1\nMKBZ*\n>p2\nMKV\n")
    recs, rejects = records(path, "protein", iupac_to_n=True)
    assert [r.seq for r in recs] == ["MKXX", "MKV"]
    assert rejects.notes == {"trailing_stop_removed": 1, "iupac_mapped": 1}


def test_empty_records_are_counted(tmp_path):
    path = tmp_path / "e.fa"
    path.write_text(">r1\n>r2\nACGT\n>r3\n\n")
    recs, rejects = records(path)
    assert [r.id for r in recs] == ["r2"]
    assert rejects.counts == {"empty": 2}
    assert rejects.examples["empty"].endswith("e.fa:1: record 'r1' has no sequence")


def test_empty_header_is_an_error(tmp_path):
    path = tmp_path / "h.fa"
    path.write_text(">r1\nACGT\n>\nACGT\n")
    with pytest.raises(InputError, match=r"h\.fa:3: empty FASTA header"):
        records(path)


def test_truncated_gzip(tmp_path):
    whole = gzip.compress((">r1\n" + "ACGT" * 20000 + "\n").encode())
    path = tmp_path / "cut.fa.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match=r"cut\.fa\.gz: truncated gzip file .*re-download or re-compress"):
        records(path)


def test_gzip_is_detected_by_content_not_name(tmp_path):
    path = tmp_path / "genome.fa"  # gzip data without a .gz suffix
    path.write_bytes(gzip.compress(b">r1\nACGT\n"))
    assert [r.seq for r in records(path)[0]] == ["ACGT"]


def test_duplicate_ids_are_counted_and_the_first_kept(tmp_path):
    path = tmp_path / "d.fa"
    path.write_text(">r1 first\nACGT\n>r2\nGG\n>r1 again\nTTTT\n")
    recs, rejects = records(path)
    assert [(r.id, r.seq) for r in recs] == [("r1", "ACGT"), ("r2", "GG")]
    assert rejects.counts == {"duplicate_id": 1}
    assert "d.fa:5: duplicate record ID 'r1'" in rejects.examples["duplicate_id"]


def test_too_short_records_are_counted(tmp_path):
    path = tmp_path / "s.fa"
    path.write_text(">r1\nACGTACGTAC\n>r2\nACG\n")
    recs, rejects = records(path, min_length=5)
    assert [r.id for r in recs] == ["r1"]
    assert rejects.counts == {"too_short": 1}
    assert "record 'r2' has 3 residues < data.min_length=5" in rejects.examples["too_short"]


def test_protein_given_to_a_dna_tokenizer(tmp_path):
    faa = resolve_source("bundled:ecoli_proteins")
    with pytest.raises(InputError, match=r"holds protein sequences \(detected from its residues\), but tokenizer "):
        plan_sources([faa], "kmer", ("dna",))
    # Declared DNA but protein inside: the first bad residue, with the hint.
    src = SourceConfig(uri=faa, modality="dna")
    (sf,) = plan_sources([src], "kmer", ("dna",))
    with pytest.raises(InputError, match=r":2:\d+: invalid character '\w' in record .*looks like protein"):
        next(iter_records(sf, Policy(), Rejects()))


def test_csv_source_with_labels(tmp_path):
    path = tmp_path / "promoters.csv"
    path.write_text("sequence,label\nACGTAC,1\nGGGTTT,0\n")
    (sf,) = plan_sources([str(path)], "kmer", ("dna",))
    assert (sf.format, sf.modality) == ("csv", "dna")
    recs = list(iter_records(sf, Policy(), Rejects()))
    assert [(r.id, r.seq, r.label, r.line) for r in recs] == [("row1", "ACGTAC", "1", 2), ("row2", "GGGTTT", "0", 3)]


def test_csv_without_the_sequence_column(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("seq,label\nACGT,1\n")
    with pytest.raises(InputError, match=r"x\.csv:1: no column 'sequence' in the CSV header \(columns: seq, label\)"):
        plan_sources([str(path)], "kmer", ("dna",))


def test_globs_and_missing_files(tmp_path):
    for name in ("b.fa", "a.fa", "c.txt"):
        (tmp_path / name).write_text(">r\nACGT\n")
    assert [p.rsplit("/", 1)[1] for p in expand(SourceConfig(uri=str(tmp_path / "*.fa")))] == ["a.fa", "b.fa"]
    with pytest.raises(InputError, match=r"no files match this pattern"):
        expand(SourceConfig(uri=str(tmp_path / "*.fasta")))
    with pytest.raises(InputError, match=r"source '.*nope\.fa': file not found"):
        expand(SourceConfig(uri=str(tmp_path / "nope.fa")))
    with pytest.raises(InputError, match=r"unknown bundled corpus 'mouse'"):
        resolve_source("bundled:mouse")


def test_prepare_summary_lists_every_rejected_count_by_reason(tmp_path, ray_local):
    good = "ACGT" * 100
    oks = "".join(f">ok{i}\n{good}\n" for i in range(12))
    path = tmp_path / "mixed.fa"
    path.write_text(f">empty\n>dup\n{good}\n>dup\n{good}\n>short\nACG\n>bad\nAC!T{good}\n{oks}")
    cfg = DataConfig(sources=[str(path)], seq_len=16, val_fraction=0.5, min_length=10, on_invalid="skip")
    manifest = prepare(cfg, str(tmp_path / "out"), progress=False)
    assert manifest.rejected == {"empty": 1, "invalid_character": 1, "too_short": 1, "duplicate_id": 1}
    assert manifest.sources[0].records == 13  # dup and ok0..ok11
    text = summary(manifest, "out")
    for reason in REASONS:
        assert f"    {reason:<18} {1:>8,}   e.g. " in text
    assert "mixed.fa:9:3: invalid character '!' in record 'bad'" in text


def test_prepare_raises_bad_input_from_inside_ray_as_itself(tmp_path, ray_local):
    path = tmp_path / "late.fa"  # the bad record comes after the part the planner sniffs
    path.write_text(">ok\n" + "ACGT" * 20000 + "\n>bad\nACGU\n")
    one_line = r"^[^\n]*late\.fa:4:4: invalid character 'U' in record 'bad'; allowed: ACGTN; or set [^\n]*$"
    with pytest.raises(InputError, match=one_line):
        prepare(DataConfig(sources=[str(path)], seq_len=16), str(tmp_path / "out"), progress=False)
