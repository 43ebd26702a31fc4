"""The human-readable report `raybio prepare` prints: sources, rejected records by reason, splits."""

from __future__ import annotations

from raybio.data.manifest import Manifest


def summary(manifest: Manifest, out_uri: str) -> str:
    """Sources, rejected records by reason (with an example each), repairs, splits and tokenizer."""
    lines = [f"[prepare] corpus {manifest.corpus_id} -> {out_uri}"]
    for s in manifest.sources:
        lines.append(f"  source {s.uri}: {'/'.join(s.modality)}, {s.records:,} records, {s.residues:,} residues")
    lines.append("  rejected records by reason:")
    for reason, n in manifest.rejected.items():
        example = manifest.rejected_examples.get(reason, "")
        lines.append(f"    {reason:<18} {n:>8,}" + (f"   e.g. {example}" if example else ""))
    lines += [f"  repaired: {note} {n:,}" for note, n in manifest.repairs.items() if n]
    for name, s in manifest.splits.items():
        mods = ", ".join(f"{m} {v.rows:,}" for m, v in s.modalities.items())
        lines.append(f"  {name}: {s.rows:,} windows ({mods}), {s.tokens:,} tokens in {len(s.shards)} shards")
    t = manifest.tokenizer
    lines.append(
        f"  tokenizer {t.kind} (vocab {t.vocab_size}, {t.dtype}, sha256 {t.sha256[:12]}); "
        f"dropped tail tokens {manifest.dropped_tail_tokens:,}; "
        f"skipped mostly-N/X windows {manifest.skipped_mostly_unknown_windows:,}"
    )
    return "\n".join(lines)
