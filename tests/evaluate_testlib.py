"""A tiny trained checkpoint for the downstream-evaluation tests (multi-omic vocabulary, so every task applies)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from raybio.config import load_config
from raybio.evaluate.tasks import load_task

TINY = {
    "model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "objective": "ntp", "max_seq_len": 192},
    "data": {"tokenizer": {"kind": "multiomic", "k": 3}},
}


def save_tiny_checkpoint(path: Path, steps: int = 30, seed: int = 0, overrides: dict = TINY) -> Path:
    """Build a tiny BioLM, train it `steps` next-token steps on promoter windows, save model.pt + config.json."""
    torch.manual_seed(seed)
    exp = load_config("tiny", overrides=overrides)
    tok = exp.data.tokenizer.build()
    exp.model.vocab_size = tok.vocab_size
    model = exp.model.build()
    seqs = [s for s in load_task("gb_nontata_promoters").train.sequences[:520] if "N" not in s]
    prefix = tok.modality_token_ids.get("dna", [])
    ids = torch.from_numpy(np.stack([np.r_[prefix, tok.encode(s[:240])].astype(np.int64) for s in seqs]))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(steps):
        batch = ids[(step * 16) % len(ids) :][:16]
        out = model(batch[:, :-1], batch[:, 1:])
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    path.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path / "model.pt")
    (path / "config.json").write_text(json.dumps({"experiment": exp.model_dump(mode="json"), "tokenizer": tok.spec}))
    return path
