"""Helpers for the Hugging Face export tests: small trained checkpoints, and a process without raybio.

`write_trained_checkpoint` writes the directory format `raybio.models.streaming.load_checkpoint`
reads (model.pt + config.json with the experiment and tokenizer spec) after a few optimizer
steps on real tokens, so weights, norms and any aux-free expert bias are off their init.
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

from raybio.config import load_config
from raybio.data.fasta import read_fasta
from raybio.data.tokenizers import MASK_ID
from raybio.models.moe.router import update_expert_bias

BUNDLED = Path(__file__).resolve().parents[1] / "raybio" / "data" / "bundled"
CHILD = Path(__file__).with_name("hf_child.py")


def record(name: str = "lambda_phage_NC_001416.1.fa") -> str:
    """The first record of a bundled FASTA file, as text."""
    return next(read_fasta(BUNDLED / name)).seq


def token_batch(tok, batch: int, length: int, offset: int = 0) -> torch.Tensor:
    """`batch` consecutive windows of `length` raybio token ids from the phage lambda genome."""
    ids = tok.encode(record()).astype(np.int64)[offset : offset + batch * length]
    return torch.from_numpy(ids).view(batch, length)


def write_trained_checkpoint(directory: Path, overrides: list[str], steps: int = 2, seed: int = 0):
    """Build the tiny preset with `overrides`, take `steps` AdamW steps, save a checkpoint; returns the model."""
    exp = load_config("tiny", overrides=overrides)
    tok = exp.data.tokenizer.build()
    exp.model.vocab_size = tok.vocab_size
    torch.manual_seed(seed)
    model = exp.model.build()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(steps):
        ids = token_batch(tok, 4, 65, offset=step * 260)
        if exp.model.objective == "ntp":
            inputs, labels = ids[:, :-1], ids[:, 1:]
        else:
            masked = torch.rand(ids.shape, generator=torch.Generator().manual_seed(step)) < 0.15
            inputs, labels = ids.masked_fill(masked, MASK_ID), ids.masked_fill(~masked, -100)
        model(inputs, labels).loss.backward()
        opt.step()
        opt.zero_grad()
        update_expert_bias(model)
    directory.mkdir(parents=True)
    torch.save(model.state_dict(), directory / "model.pt")
    meta = {"experiment": exp.model_dump(), "tokenizer": tok.spec}
    (directory / "config.json").write_text(json.dumps(meta))
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
