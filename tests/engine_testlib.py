"""Helpers shared by the engine and checkpoint tests."""

from __future__ import annotations

import torch

VOCAB = 40


def train_random_batches(engine, gen: torch.Generator, steps: int) -> list[float]:
    """Take `steps` steps on batches and masks both drawn from `gen` (like the MLM masking
    generator), so restoring `gen` with a checkpoint replays the same batches."""
    losses = []
    for _ in range(steps):
        tokens = torch.randint(4, VOCAB, (4, 16), generator=gen)
        labels = torch.where(torch.rand(tokens.shape, generator=gen) < 0.3, tokens, -100)
        out = engine.model(tokens, labels)
        engine.backward(out.loss)
        engine.step()
        losses.append(out.lm_loss.item())
    return losses
