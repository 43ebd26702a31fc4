"""Helpers shared by the tests/test_hyena_*.py files."""

from __future__ import annotations

import torch

from raybio.config import ExperimentConfig, TokenizerConfig, load_config

VOCAB = TokenizerConfig().build().vocab_size  # the real 3-mer vocabulary, so FASTA tests can use it


def small_exp(pattern: str, objective: str, *extra: str) -> ExperimentConfig:
    """A 4-block, width-32 experiment with a given pattern (letters or preset name) and objective."""
    return load_config(
        "tiny",
        overrides=[
            f"model.pattern={pattern}",
            f"model.objective={objective}",
            f"model.vocab_size={VOCAB}",
            "model.d_model=32",
            "model.n_heads=2",
            "model.n_layers=4",
            "model.max_seq_len=256",
            "model.moe.num_experts=4",
            "model.hyena.num_modes=4",
            *extra,
        ],
    )


def single_thread():
    """Module fixture body: tiny models gain nothing from intra-op threads, and on a shared
    2-core machine two spinning OpenMP threads measured 10-25x slower than one."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
