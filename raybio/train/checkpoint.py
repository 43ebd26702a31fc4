"""Training checkpoints that resume exactly and are never picked up half-written.

One checkpoint is one directory, assembled by Ray Train from every worker's files
(`ray.train.report(..., checkpoint=...)` merges the ranks' directories in the run's storage,
local or s3://):

    model.pt                        full weights (rank 0; also what DDP resumes from)
    engine.pt | deepspeed/state/*   optimizer and LR-scheduler state (`Engine.save`)
    config.json                     the experiment and tokenizer, for inference (rank 0)
    rank{r}.pt                      rank r's RNG states (MLM masking, torch, numpy, python)
                                    and token counter
    train_state.json                step, data position (epoch, batches consumed in it),
                                    carried-over metrics (rank 0)
    MANIFEST.json                   size and sha256 of every file above, written last (rank 0)

A checkpoint counts only with a manifest whose every file is present with the recorded
size and hash; `verify` raises `CheckpointError` otherwise. Ray Train registers a checkpoint
only after every worker's upload finished, so a run never resumes from a torn upload; the
manifest also catches a checkpoint damaged in storage or copied incompletely.
"""

from __future__ import annotations

import hashlib
import json
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

MANIFEST = "MANIFEST.json"
TRAIN_STATE = "train_state.json"
FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint is incomplete or corrupted; the message names the file and what to do."""


@dataclass
class TrainState:
    """Where training stands: the step and the data position, identical on every rank."""

    step: int = 0
    epoch: int = 0  # passes over the train split started before this one
    batch_in_epoch: int = 0  # batches of the current epoch already trained on
    world_size: int = 1
    metrics: dict = field(default_factory=dict)  # carried into later reports (init/latest val loss)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_records(directory: Path) -> dict[str, dict]:
    return {
        p.relative_to(directory).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256(p)}
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def _gather(obj, world: int) -> list:
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def rng_state(gen: torch.Generator) -> dict:
    """Every RNG a rank draws from: the MLM masking generator and the global ones."""
    np_state = np.random.get_state()
    state = {
        "mlm": gen.get_state(),
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, gen: torch.Generator) -> None:
    gen.set_state(state["mlm"])
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write(
    directory: Path, engine, state: TrainState, rank_state: dict, rank: int, world: int, export: dict | None = None
) -> None:
    """Write this rank's share of a checkpoint into `directory`; rank 0 adds the manifest last.

    Collective: every rank must call it. `export` maps file names to JSON-able objects that
    rank 0 writes beside the weights (e.g. the experiment config).
    """
    engine.save(directory, rank)
    torch.save(rank_state, directory / f"rank{rank}.pt")
    if rank == 0:
        (directory / TRAIN_STATE).write_text(json.dumps(asdict(state), indent=2))
        for name, obj in (export or {}).items():
            (directory / name).write_text(json.dumps(obj, indent=2))
    if world > 1:
        dist.barrier()  # every rank's files are complete before anyone hashes (ranks may share a directory)
    files: dict[str, dict] = {}
    for r, records in enumerate(_gather(_file_records(directory), world)):
        for path, rec in records.items():
            if path in files and files[path] != rec:
                raise CheckpointError(f"rank {r} wrote {path} unlike a lower rank did; per-rank names must be unique")
            files[path] = rec
    if rank == 0:
        manifest = {"format": FORMAT, "step": state.step, "world_size": world, "time": time.time(), "files": files}
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))


def verify(directory: Path) -> dict:
    """The manifest of a complete, intact checkpoint, or `CheckpointError` saying what is wrong."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {directory} is incomplete: it has no {MANIFEST} (written last, so the checkpoint was "
            f"interrupted while being written or copied); resume from an earlier checkpoint or start afresh"
        )
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint {directory}: {MANIFEST} is unreadable ({err}); it is corrupted") from err
    for name, rec in files.items():
        p = Path(directory) / name
        if not p.is_file():
            raise CheckpointError(f"checkpoint {directory} is incomplete: {name} is missing")
        if p.stat().st_size != rec["bytes"] or sha256(p) != rec["sha256"]:
            raise CheckpointError(
                f"checkpoint {directory} is corrupted: {name} does not match the sha256/size in {MANIFEST}; "
                f"resume from an earlier checkpoint or start afresh"
            )
    return manifest


def read(directory: Path, engine, rank: int, world: int) -> tuple[TrainState, dict]:
    """Verify the checkpoint, load the engine state, return the train state and this rank's state."""
    manifest = verify(directory)
    if manifest["world_size"] != world:
        raise CheckpointError(
            f"checkpoint {directory} was written by {manifest['world_size']} workers, this run has {world}; "
            f"resume with train.num_workers={manifest['world_size']}"
        )
    engine.load(directory)
    state = TrainState(**json.loads((directory / TRAIN_STATE).read_text()))
    # Our own verified file; it holds RNG tuples that the weights-only unpickler refuses.
    rank_state = torch.load(directory / f"rank{rank}.pt", weights_only=False)
    return state, rank_state


def report(metrics: dict, engine, state: TrainState, rank_state: dict, rank: int, world: int, export: dict) -> None:
    """`ray.train.report` with a checkpoint of the current step from every rank."""
    import ray.train

    with tempfile.TemporaryDirectory(prefix="raybio-ckpt-") as tmp:
        write(Path(tmp), engine, state, rank_state, rank, world, export)
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(tmp),
            checkpoint_dir_name=f"checkpoint_step{state.step:08d}",
        )


def restore(engine, rank: int, world: int, fallback=None) -> tuple[TrainState, dict] | None:
    """Load the run's latest reported checkpoint (after a failure or on a restarted run), else
    `fallback` (a `ray.train.Checkpoint` to start a new run from), if any."""
    import ray.train

    checkpoint = ray.train.get_checkpoint() or fallback
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        return read(Path(d), engine, rank, world)
