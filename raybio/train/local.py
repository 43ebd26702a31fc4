"""A one-worker CPU run inside the calling process (a Tune trial), kept in storage the way Ray Train keeps a run.

A TorchTrainer with one CPU worker adds a controller, a worker process, a placement group and
their helper actors to every trial, and the trial process only waits for them. Here the trial
process trains itself with the same `Trainer`: the same model, engine (one process, so no DDP
wrapper, as in a one-worker group), data order, metrics and checkpoint files. The run's storage
is laid out like a Ray Train run's: checkpoints in `<storage>/<name>/checkpoint_stepNNNNNNNN`,
uploaded whole and only then registered in `checkpoints.json` (the newest `train.num_to_keep`
kept), so starting the same run again resumes from its newest complete checkpoint.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
import torch

from raybio.config import ExperimentConfig
from raybio.data import storage
from raybio.data.loader import read_split
from raybio.data.manifest import Manifest
from raybio.train.ray_trainer import local_data
from raybio.train.trainer import Trainer

REGISTRY = "checkpoints.json"  # the run's complete checkpoints, oldest first
PEAK_RSS_RESET = Path("/proc/self/clear_refs")  # Linux: writing "5" restarts the process's peak-RSS mark


def can_reset_peak_memory() -> bool:
    """Whether a process that trains one run after another can report each run's own peak RSS (Linux)."""
    return PEAK_RSS_RESET.exists()


def reset_peak_memory() -> None:
    """Restart this process's peak-RSS mark (what `peak_memory_bytes` reads on CPU) after handing what an
    earlier run in the process freed back to the OS, so a reused trial process reports its own run's peak."""
    gc.collect()
    if can_reset_peak_memory():
        with contextlib.suppress(OSError, AttributeError):  # glibc only (it keeps freed heap pages resident)
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        PEAK_RSS_RESET.write_text("5")


def trains_in_process(exp: ExperimentConfig) -> bool:
    """One CPU worker on the DDP engine: nothing a worker group would add (no process group, device or ZeRO)."""
    t = exp.train
    return t.num_workers == 1 and t.gpus_per_worker == 0 and t.engine == "ddp"


class StoredRun:
    """The `Reporter` of an in-process run: persists checkpoints under `run_uri` and hands every report
    (with `checkpoint_path`, as Ray's Tune callback adds it, when it carried a checkpoint) to `sink`.

    The registry lists each kept checkpoint with the report it was saved with, as Ray Train's checkpoint
    manager does, so a restarted run that has nothing left to train still returns its result.
    """

    def __init__(self, run_uri: str, num_to_keep: int, sink: Callable[[dict], None], s3=None):
        self.run_uri, self.num_to_keep, self.sink, self.s3 = run_uri, num_to_keep, sink, s3

    def checkpoints(self) -> list[dict]:
        """The run's registered checkpoints, oldest first: {"name": ..., "metrics": the report saved with it}."""
        return (storage.read_json(storage.join(self.run_uri, REGISTRY), self.s3) or {}).get("checkpoints", [])

    def report(self, metrics: dict, checkpoint_dir: Path | None = None, name: str | None = None) -> None:
        if checkpoint_dir is not None:
            metrics = {**metrics, "checkpoint_path": self._persist(checkpoint_dir, name, metrics)}
        self.sink(metrics)

    def _persist(self, directory: Path, name: str, metrics: dict) -> str:
        """Upload, then register (the registry never names a partial upload), then drop the oldest."""
        fs, path = storage.filesystem(storage.join(self.run_uri, name), self.s3)
        fs.create_dir(path, recursive=True)
        pafs.copy_files(str(directory), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
        entries = [c for c in self.checkpoints() if c["name"] != name]
        plain = {k: v.item() if hasattr(v, "item") else v for k, v in metrics.items()}  # numpy scalars -> JSON
        entries.append({"name": name, "metrics": {**plain, "checkpoint_path": path}})
        kept = entries[-self.num_to_keep :]
        storage.write_json(storage.join(self.run_uri, REGISTRY), {"checkpoints": kept}, self.s3)
        for old in entries[: -self.num_to_keep]:
            storage.delete_dir(storage.join(self.run_uri, old["name"]), self.s3)
        return path  # what Ray reports: an absolute path, or bucket/key without the scheme

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[Path | None]:
        entries = self.checkpoints()
        if not entries:
            yield None
            return
        uri = storage.join(self.run_uri, entries[-1]["name"])
        if not storage.is_remote(uri):
            yield Path(storage.local_path(uri))
            return
        fs, path = storage.filesystem(uri, self.s3)
        with tempfile.TemporaryDirectory(prefix="raybio-restore-") as tmp:
            pafs.copy_files(path, tmp, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
            yield Path(tmp)

    def result(self, last_report: dict | None) -> LocalResult:
        """What `TorchTrainer.fit` returns: the last report (the newest checkpoint's when this attempt
        reported nothing) and the newest checkpoint."""
        import ray.train

        entries = self.checkpoints()
        if not entries:
            return LocalResult(last_report or {}, None)
        newest = entries[-1]
        fs = storage.filesystem(self.run_uri, self.s3)[0]
        return LocalResult(
            last_report or newest["metrics"], ray.train.Checkpoint(newest["metrics"]["checkpoint_path"], filesystem=fs)
        )


@dataclass
class LocalResult:
    """What callers read of `TorchTrainer.fit`'s result: the last report and the newest checkpoint."""

    metrics: dict
    checkpoint: object  # a ray.train.Checkpoint, or None


def train_in_process(
    exp: ExperimentConfig, shards_uri: str, manifest: Manifest, storage_path: str, name: str, sink: Callable
) -> LocalResult:
    """Train `exp` (one CPU worker) in this process as run `name` under `storage_path`, resuming from the
    run's newest checkpoint if it has one; `sink` receives every report."""
    reports: list[dict] = []

    def keep(metrics: dict) -> None:
        reports[:] = [metrics]
        sink(metrics)

    reset_peak_memory()
    run = StoredRun(storage.join(storage_path, name), exp.train.num_to_keep, keep, exp.data.s3)
    if data := local_data(exp, shards_uri, manifest):
        train, val = data.shards()
    else:  # too big to hold: streamed by Ray Data in a fixed order, so a resumed run can skip to its position
        train = read_split(shards_uri, manifest, "train", mix=exp.data.mix, seed=exp.train.seed, s3=exp.data.s3)
        train.context.execution_options.preserve_order = True
        val = read_split(shards_uri, manifest, "val", s3=exp.data.s3)
    tokenizer_json = storage.read_bytes(storage.join(shards_uri, manifest.tokenizer.file), exp.data.s3)
    Trainer(exp, manifest, tokenizer_json, train, val, run, torch.device("cpu")).train()
    return run.result(reports[0] if reports else None)
