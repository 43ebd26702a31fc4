"""Fine-tune throughput vs a bare PyTorch loop, and the wall time of `raybio evaluate`.

1. Sequences/s of raybio's fine-tune epoch (`raybio.evaluate.protocols.train_epoch`: length
   buckets, right padding, mean pooling, linear head, AdamW) against a bare PyTorch loop over
   the same model, the same pre-padded batches and the same optimizer: forward, cross-entropy,
   backward, step, nothing else. Measured interleaved (A B A B ...) so machine load hits both
   alike; the median of each is compared. Goal: finetune_over_bare_torch >= 0.9.
2. Wall time of `raybio evaluate` (the CLI, on local Ray) of a `tiny`-preset checkpoint over
   all bundled tasks with 3 seeds, the untrained backbone and baselines included, every
   trainable model tuned over its default grid on seed 0. Goal: evaluate_tiny_all_tasks_s < 600
   on 2 cores (set before the grids and the untrained backbone doubled the work). The
   checkpoint is the tiny preset (multi-omic vocabulary, so every task
   applies) at random initialisation: wall time does not depend on what the weights learned.

The last line is one JSON object: {"benchmark": "finetune", "ratios": {...}, "conditions": {...}}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see moe_layer.py: spinning threads distort shared-core timings

import numpy as np
import torch
import torch.nn.functional as F

from raybio.config import load_config
from raybio.evaluate import backbone as bb
from raybio.evaluate.protocols import Loader, adamw, train_epoch
from raybio.evaluate.tasks import load_task
from raybio.models.model import BioLM
from raybio.models.pretrained import WEIGHTS_FILE, inference_files

GOALS = {"finetune_over_bare_torch": 0.9, "evaluate_tiny_all_tasks_s": 600.0}
TINY = {"data": {"tokenizer": {"kind": "multiomic", "k": 3}}}


def tiny_model():
    exp = load_config("tiny", overrides=TINY)
    tok = exp.data.tokenizer.build()
    torch.manual_seed(0)
    return exp, BioLM(exp.model, tok.vocab_size), tok


def bare_epoch(module, batches, opt) -> int:
    module.train()
    for ids_BL, mask_BL, y in batches:
        loss = F.cross_entropy(module(ids_BL, mask_BL).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return sum(len(b[2]) for b in batches)


def throughput(n_seqs: int, batch_size: int, rounds: int) -> dict:
    _, model, tok = tiny_model()
    task = load_task("gb_nontata_promoters")
    seqs = task.train.sequences[:n_seqs]
    ids = bb.encode(tok, seqs, "dna", model.cfg.max_seq_len, "benchmark").ids
    labels = task.train.labels[:n_seqs]
    loader = Loader(labels, batch_size, ids=ids, pad_id=tok.pad_id)
    # The bare loop gets the very batches raybio would build, padded in advance.
    batches = [(*bb.pad(ids, idx, tok.pad_id), torch.from_numpy(labels[idx])) for idx in bb.length_batches(
        np.array([len(x) for x in ids]), batch_size, np.random.default_rng(0))]  # fmt: skip
    module = bb.SequenceClassifier(model, 2)
    opt = adamw(module, 1e-4, 0.01)
    rng = np.random.default_rng(0)
    train_epoch(module, loader, opt, rng)  # warm-up (allocator, autograd graph caches)
    out = {"raybio": [], "bare": []}
    for _ in range(rounds):
        for name in ("raybio", "bare"):
            t0 = time.perf_counter()
            n = train_epoch(module, loader, opt, rng) if name == "raybio" else bare_epoch(module, batches, opt)
            out[name].append(n / (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in out.items()} | {"samples": out}


def write_checkpoint(path: Path) -> Path:
    """An untrained tiny checkpoint in the files training writes for inference (weights, config, tokenizer)."""
    exp, model, tok = tiny_model()
    path.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path / WEIGHTS_FILE)
    for name, data in inference_files(exp.model_dump(mode="json"), tok).items():
        (path / name).write_bytes(data)
    return path


def evaluate_wall_time(quick: bool, workdir: Path) -> tuple[float, list[str]]:
    ckpt = write_checkpoint(workdir / "tiny")
    if quick:
        extra = ["--tasks", "protein_family", "species", "--seeds", "1", "--epochs", "1", "--max-train", "200"]
    else:
        extra = ["--seeds", "3"]
    args = ["evaluate", str(ckpt), *extra, "--out", str(workdir / "out")]
    cmd = [sys.executable, "-c", "from raybio.cli import main; main()", *args]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")]))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    runs = workdir / "out" / "downstream.csv"
    if proc.returncode or not runs.is_file():
        sys.exit(f"raybio evaluate failed:\n{proc.stderr[-3000:]}")
    print(proc.stdout)
    return wall, args


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer sequences, 2 tasks x 1 seed for the wall time (< 90 s)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # one Ray run = one CPU and one thread; compare like with like
    n_seqs, rounds = (128, 2) if args.quick else (2048, 5)
    tp = throughput(n_seqs, 32, rounds)
    ratio = tp["raybio"] / tp["bare"]
    print(f"fine-tune epoch: raybio {tp['raybio']:.0f} seq/s, bare torch {tp['bare']:.0f} seq/s, ratio {ratio:.3f}")
    with tempfile.TemporaryDirectory() as tmp:
        wall, cmd = evaluate_wall_time(args.quick, Path(tmp))
    print(f"raybio evaluate wall time: {wall:.0f} s")
    ratios = {"finetune_over_bare_torch": round(ratio, 3), "evaluate_tiny_all_tasks_s": round(wall, 1)}
    conditions = {
        "quick": args.quick,
        "device": "cpu",
        "torch_threads": 1,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "model": "tiny preset (d_model 128, 4 layers), multiomic k=3",
        "throughput_seqs": n_seqs,
        "batch_size": 32,
        "rounds": rounds,
        "seq_per_s": {"raybio": round(tp["raybio"], 1), "bare_torch": round(tp["bare"], 1)},
        "evaluate_command": " ".join(["raybio", *cmd]),
        "evaluate_scope": "2 tasks x 1 seed, 1 epoch, 200 train rows"
        if args.quick
        else "all bundled tasks x 3 seeds, default grids",
        "goals": GOALS,
    }
    print(json.dumps({"benchmark": "finetune", "ratios": ratios, "conditions": conditions}))


if __name__ == "__main__":
    main()
