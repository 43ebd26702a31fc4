"""Training checkpoints that resume exactly and are never picked up half-written.

One checkpoint is one directory, assembled by Ray Train from every worker's files
(`ray.train.report(..., checkpoint=...)` merges the ranks' directories in the run's storage,
local or s3://):

    model.pt                        full weights (rank 0; also what DDP resumes from)
    engine.pt | deepspeed/state/*   optimizer and LR-scheduler state (`Engine.save`)
    config.json, tokenizer.json     the experiment and the tokenizer, for inference (rank 0;
                                    `raybio.models.pretrained.load_pretrained` reads them)
    rank{r}.pt                      rank r's RNG states (MLM masking, torch, numpy, python)
                                    and token counter
    train_state.json                step, data position (epoch, batches consumed in it),
                                    carried-over metrics (rank 0)
    checksums.json                  size and sha256 of every file above, written last (rank 0)

A checkpoint counts only with a `checksums.json` whose every file is present with the recorded
size and hash; `verify` raises `CheckpointError` otherwise. Ray Train registers a checkpoint
only after every worker's upload finished, so a run never resumes from a torn upload; the
checksum file also catches a checkpoint damaged in storage or copied incompletely.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from raybio.config import ExperimentConfig, saved_experiment
from raybio.data import storage
from raybio.models.pretrained import CONFIG_FILE
from raybio.train.state import TrainState

CHECKSUMS = "checksums.json"
TRAIN_STATE = "train_state.json"
FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint is incomplete or corrupted; the message names the file and what to do."""


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
        if p.is_file() and p.name != CHECKSUMS
    }


def _gather(obj, world: int) -> list:
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def write(
    directory: Path, engine, state: TrainState, rank_state: dict, rank: int, world: int, files: dict[str, bytes]
) -> None:
    """Write this rank's share of a checkpoint into `directory`; rank 0 adds checksums.json last.

    Collective: every rank must call it. `files` (name -> bytes) are written by rank 0 beside
    the weights: the inference files (config.json, tokenizer.json) of raybio/models/pretrained.py.
    """
    engine.save(directory, rank)
    torch.save(rank_state, directory / f"rank{rank}.pt")
    if rank == 0:
        (directory / TRAIN_STATE).write_text(json.dumps(state.shared_dict(), indent=2))
        for name, data in files.items():
            (directory / name).write_bytes(data)
    if world > 1:
        dist.barrier()  # every rank's files are complete before anyone hashes (ranks may share a directory)
    files: dict[str, dict] = {}
    for r, records in enumerate(_gather(_file_records(directory), world)):
        for path, rec in records.items():
            if path in files and files[path] != rec:
                raise CheckpointError(f"rank {r} wrote {path} unlike a lower rank did; per-rank names must be unique")
            files[path] = rec
    if rank == 0:
        checksums = {"format": FORMAT, "step": state.step, "world_size": world, "time": time.time(), "files": files}
        (directory / CHECKSUMS).write_text(json.dumps(checksums, indent=2, sort_keys=True))


def verify(directory: Path) -> dict:
    """The checksums of a complete, intact checkpoint, or `CheckpointError` saying what is wrong."""
    path = Path(directory) / CHECKSUMS
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {directory} is incomplete: it has no {CHECKSUMS} (written last, so the checkpoint was "
            f"interrupted while being written or copied); resume from an earlier checkpoint or start afresh"
        )
    try:
        checksums = json.loads(path.read_text())
        files = checksums["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint {directory}: {CHECKSUMS} is unreadable ({err}); it is corrupted") from err
    for name, rec in files.items():
        p = Path(directory) / name
        if not p.is_file():
            raise CheckpointError(f"checkpoint {directory} is incomplete: {name} is missing")
        if p.stat().st_size != rec["bytes"] or sha256(p) != rec["sha256"]:
            raise CheckpointError(
                f"checkpoint {directory} is corrupted: {name} does not match the sha256/size in {CHECKSUMS}; "
                f"resume from an earlier checkpoint or start afresh"
            )
    return checksums


def read(directory: Path, engine, rank: int, world: int) -> tuple[TrainState, dict]:
    """Verify the checkpoint, load the engine state, return the train state and this rank's state."""
    checksums = verify(directory)
    if checksums["world_size"] != world:
        raise CheckpointError(
            f"checkpoint {directory} was written by {checksums['world_size']} workers, this run has {world}; "
            f"resume with train.num_workers={checksums['world_size']}"
        )
    engine.load(directory)
    state = read_train_state(str(directory))
    # Our own verified file; it holds RNG tuples that the weights-only unpickler refuses.
    rank_state = torch.load(directory / f"rank{rank}.pt", weights_only=False)
    return state, rank_state


class Checkpointer:
    """Decides when this rank checkpoints, and writes its share through the run's reporter.

    Every `every` steps (a multiple of log_every; 0 = only at the end) and at the final step.
    """

    def __init__(self, every: int, reporter, files: dict[str, bytes], rank: int = 0, world: int = 1):
        self.every, self.reporter, self.files, self.rank, self.world = every, reporter, files, rank, world
        self.seconds = 0.0  # spent writing and persisting checkpoints in this run

    def should_save(self, step: int, final: bool) -> bool:
        return final or bool(self.every and step % self.every == 0)

    def save(self, metrics: dict, engine, state: TrainState, rank_state: dict) -> None:
        """Collective: report `metrics` with a checkpoint of the current step from every rank."""
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="raybio-ckpt-") as tmp:
            write(Path(tmp), engine, state, rank_state, self.rank, self.world, self.files)
            # This save's upload happens inside the report, so the report carries its write time only.
            metrics = {**metrics, "checkpoint_time_s": self.seconds + time.perf_counter() - t0}
            self.reporter.report(metrics, checkpoint_dir=Path(tmp), name=f"checkpoint_step{state.step:08d}")
        self.seconds += time.perf_counter() - t0

    def restore(self, engine) -> tuple[TrainState, dict] | None:
        """The latest checkpoint of the run (after a failure or a restart), loaded into `engine`, if any."""
        with self.reporter.latest_checkpoint() as directory:
            return None if directory is None else read(directory, engine, self.rank, self.world)


def read_train_state(uri: str) -> TrainState:
    """The shared train state (step, data position, carried metrics) of a checkpoint directory or URI."""
    return TrainState(**json.loads(storage.read_bytes(storage.join(uri, TRAIN_STATE))))


def read_experiment(uri: str) -> ExperimentConfig:
    """The experiment a checkpoint directory or URI was trained with."""
    return saved_experiment(json.loads(storage.read_bytes(storage.join(uri, CONFIG_FILE)))["experiment"])
