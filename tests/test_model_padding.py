"""Padding never changes what the real tokens see: a padded batch equals the unpadded sequences."""

from __future__ import annotations

import pytest
import torch

from raybio.config import load_config
from raybio.models.model import BioLM

VOCAB = 40


@pytest.mark.parametrize("pattern", ["D", "A", "H", "AHHH"])
@pytest.mark.parametrize("objective", ["mlm", "ntp"])
def test_padded_positions_do_not_reach_real_ones(pattern, objective):
    exp = load_config("tiny", overrides=[f"model.pattern={pattern}", f"model.objective={objective}",
                                         "model.d_model=32", "model.n_heads=2", "model.moe.num_experts=4"])  # fmt: skip
    torch.manual_seed(0)
    model = BioLM(exp.model, VOCAB).eval()
    ids = torch.randint(7, VOCAB, (3, 24))
    lengths = [24, 17, 9]
    pad = torch.arange(24)[None, :] >= torch.tensor(lengths)[:, None]
    with torch.no_grad():
        padded = model.hidden_states(ids.masked_fill(pad, 0), pad)
        for i, n in enumerate(lengths):
            alone = model.hidden_states(ids[i : i + 1, :n])[0]
            torch.testing.assert_close(padded[i, :n], alone, rtol=1e-4, atol=1e-5)
    assert torch.isfinite(padded).all()  # padded rows too (no all-masked attention row)
