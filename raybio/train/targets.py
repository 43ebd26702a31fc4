"""What the model learns from a window of tokens: MLM masking or next-token targets."""

from __future__ import annotations

import torch

from raybio.data.loader import mlm_mask, ntp_targets
from raybio.data.manifest import TokenizerSpec


class Targets:
    """Turns a (B, L) token batch into (inputs, labels) for `model.objective` ('mlm' or 'ntp')."""

    def __init__(self, objective: str, mask_prob: float, tokenizer: TokenizerSpec):
        self.objective = objective
        self.mask_prob = mask_prob
        self.tokenizer = tokenizer

    def __call__(self, tokens_BL: torch.Tensor, gen: torch.Generator, mask_only: bool = False):
        if self.objective == "ntp":
            return ntp_targets(tokens_BL)
        t = self.tokenizer
        return mlm_mask(tokens_BL, gen, t.mask_id, t.n_special, t.vocab_size, self.mask_prob, mask_only=mask_only)
