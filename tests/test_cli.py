"""The `raybio` command line: config errors exit cleanly, `embed` streams a genome through a checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import write_inference_checkpoint

from raybio.cli import main
from raybio.config import load_config
from raybio.data.fasta import read_fasta
from raybio.data.sources import resolve_source
from raybio.models.model import BioLM


def test_bad_override_exits_with_the_field_named(capsys):
    with pytest.raises(SystemExit, match=r"model.moe: top_k \(9\) must be <= num_experts"):
        main(["prepare", "--set", "model.moe.top_k=9"])


def test_prepare_flags_reach_the_config_and_bad_input_exits_naming_file_and_line(tmp_path, ray_local):
    bad = tmp_path / "bad.fa"
    bad.write_text(">ok\nACGTACGT\n>broken\nACGTJACGT\n")
    with pytest.raises(SystemExit, match=r"bad\.fa:4:5: invalid character 'J' in record 'broken'"):
        main(["prepare", "--storage", str(tmp_path), "--data", str(bad), "--tokenizer", "nucleotide"])


def test_embed_streams_a_genome_through_a_saved_checkpoint(tmp_path, capsys):
    exp = load_config(
        "tiny",
        overrides=[
            "model.objective=ntp",
            "model.pattern=HD",
            "model.n_layers=2",
            "model.d_model=32",
            "model.n_heads=4",
        ],
    )
    tok = exp.data.tokenizer.build()
    ckpt = write_inference_checkpoint(tmp_path / "ckpt", exp, BioLM(exp.model, tok.vocab_size), tok)
    out = tmp_path / "emb.npz"
    main(["embed", str(ckpt), resolve_source("bundled:phix"), "--out", str(out), "--chunk-tokens", "256"])
    emb = np.load(out)
    assert emb["ids"].tolist() == ["NC_001422.1"]
    assert emb["mean"].shape == (1, 32) and np.isfinite(emb["mean"]).all()
    (phix,) = read_fasta(resolve_source("bundled:phix"))
    assert emb["n_tokens"][0] == len(tok.encode(phix.seq))
    assert "embedded 1 record" in capsys.readouterr().out
