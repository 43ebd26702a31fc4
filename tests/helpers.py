"""Plain helpers shared by several test modules (fixtures live in conftest.py).

Ray workers cannot import tests/, so tests that run these inside workers register this
module with `ray.cloudpickle.register_pickle_by_value`.
"""

from __future__ import annotations

import torch

from raybio.config import ExperimentConfig, TokenizerConfig, load_config
from raybio.data.tokenizers import IGNORE

ENGINE_VOCAB = 40
KMER_VOCAB = TokenizerConfig().build().vocab_size  # the real 3-mer vocabulary, so FASTA tests can use it


def train_random_batches(engine, gen: torch.Generator, steps: int) -> list[float]:
    """Take `steps` steps on batches and masks both drawn from `gen` (like the MLM masking
    generator), so restoring `gen` with a checkpoint replays the same batches."""
    losses = []
    for _ in range(steps):
        tokens = torch.randint(4, ENGINE_VOCAB, (4, 16), generator=gen)
        labels = torch.where(torch.rand(tokens.shape, generator=gen) < 0.3, tokens, IGNORE)
        out = engine.model(tokens, labels)
        engine.backward(out.loss)
        engine.step()
        losses.append(out.lm_loss.item())
    return losses


def small_exp(pattern: str, objective: str, *extra: str) -> ExperimentConfig:
    """A 4-block, width-32 experiment with a given pattern (letters or preset name) and objective."""
    return load_config(
        "tiny",
        overrides=[
            f"model.pattern={pattern}",
            f"model.objective={objective}",
            "model.d_model=32",
            "model.n_heads=2",
            "model.n_layers=4",
            "model.max_seq_len=256",
            "model.moe.num_experts=4",
            "model.hyena.num_modes=4",
            *extra,
        ],
    )


def write_inference_checkpoint(directory, exp: ExperimentConfig, model, tokenizer=None):
    """A checkpoint directory as training writes it for inference: model.pt + config.json + tokenizer.json."""
    from pathlib import Path

    from raybio.models.pretrained import WEIGHTS_FILE, inference_files

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), directory / WEIGHTS_FILE)
    for name, data in inference_files(exp.model_dump(), tokenizer or exp.data.tokenizer.build()).items():
        (directory / name).write_bytes(data)
    return directory


class LocalReporter:
    """The `Reporter` a Trainer uses outside Ray Train: metrics in a list, checkpoints copied under `root`."""

    def __init__(self, root):
        from pathlib import Path

        self.root, self.metrics, self.checkpoints = Path(root), [], []

    def report(self, metrics: dict, checkpoint_dir=None, name=None) -> None:
        import shutil

        self.metrics.append(dict(metrics))
        if checkpoint_dir is not None:
            shutil.copytree(checkpoint_dir, self.root / name)
            self.checkpoints.append(self.root / name)

    def latest_checkpoint(self):
        import contextlib

        return contextlib.nullcontext(self.checkpoints[-1] if self.checkpoints else None)
