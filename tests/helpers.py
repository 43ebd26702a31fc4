"""Plain helpers shared by several test modules (fixtures live in conftest.py).

Ray workers cannot import tests/, so tests that run these inside workers register this
module with `ray.cloudpickle.register_pickle_by_value`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import torch

from raybio.config import ExperimentConfig, TokenizerConfig, load_config
from raybio.data.fasta import read_fasta
from raybio.data.tokenizers import IGNORE, MASK_ID
from raybio.models.model import BioLM
from raybio.models.moe import attach_bias_update

ENGINE_VOCAB = 40
BUNDLED = Path(__file__).resolve().parents[1] / "raybio" / "data" / "bundled"
CHILD = Path(__file__).with_name("hf_child.py")
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


def record(name: str = "lambda_phage_NC_001416.1.fa") -> str:
    """The first record of a bundled FASTA file, as text."""
    return next(read_fasta(BUNDLED / name)).seq


def token_batch(tok, batch: int, length: int, offset: int = 0) -> torch.Tensor:
    """`batch` consecutive windows of `length` raybio token ids from the phage lambda genome."""
    ids = tok.encode(record()).astype(np.int64)[offset : offset + batch * length]
    return torch.from_numpy(ids).view(batch, length)


def write_trained_checkpoint(directory: Path, overrides: list[str], steps: int = 2, seed: int = 0):
    """Build the tiny preset with `overrides`, take `steps` AdamW steps (the optimizer's pre-hook moves any
    aux-free expert bias), save an inference checkpoint; returns (model, tokenizer)."""
    exp = load_config("tiny", overrides=overrides)
    tok = exp.data.tokenizer.build()
    torch.manual_seed(seed)
    model = BioLM(exp.model, tok.vocab_size)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    attach_bias_update(opt, model)
    for step in range(steps):
        ids = token_batch(tok, 4, 65, offset=step * 260)
        if exp.model.objective == "ntp":
            inputs, labels = ids[:, :-1], ids[:, 1:]
        else:
            masked = torch.rand(ids.shape, generator=torch.Generator().manual_seed(step)) < 0.15
            inputs, labels = ids.masked_fill(masked, MASK_ID), ids.masked_fill(~masked, IGNORE)
        model(inputs, labels).loss.backward()
        opt.step()
        opt.zero_grad()
    write_inference_checkpoint(directory, exp, model, tok)
    return model.eval(), tok


def run_without_raybio(job: dict, workdir: Path, timeout: int = 300) -> dict:
    """Run tests/hf_child.py on `job` in a fresh interpreter that cannot import raybio; its JSON answer.

    `-I -S` drops PYTHONPATH, the script's folder and site's .pth processing (raybio's editable
    install is a .pth hook); only the environment's site-packages are put back on sys.path.
    """
    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    job_file, answer = workdir / "job.json", workdir / "answer.json"
    job_file.write_text(json.dumps({**job, "site_packages": site, "answer": str(answer)}))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(workdir / "hf_home"))
    # One thread: on a shared small machine, OpenMP spin-waiting made the Trainer run 20x slower.
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(CHILD), str(job_file)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"child failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return json.loads(answer.read_text())


TINY_EVAL = {
    "model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "objective": "ntp", "max_seq_len": 192},
    "data": {"tokenizer": {"kind": "multiomic", "k": 3}},
}


def save_tiny_checkpoint(path: Path, steps: int = 30, seed: int = 0, overrides: dict = TINY_EVAL) -> Path:
    """A tiny BioLM (multi-omic vocabulary, so every task applies) trained `steps` next-token steps on
    promoter windows, saved as an inference checkpoint."""
    from raybio.evaluate.tasks import load_task

    torch.manual_seed(seed)
    exp = load_config("tiny", overrides=overrides)
    tok = exp.data.tokenizer.build()
    model = BioLM(exp.model, tok.vocab_size)
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
    return write_inference_checkpoint(path, exp, model, tok)
