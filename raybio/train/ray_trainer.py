"""Build the Ray Train `TorchTrainer` for one experiment: workers, data, storage, checkpoints, retries."""

from __future__ import annotations

import ray.train
from ray.train.torch import TorchTrainer

from raybio.config import ExperimentConfig
from raybio.data import storage
from raybio.data.loader import LocalData, read_split, reads_whole
from raybio.data.manifest import Manifest
from raybio.train.reporting import progress_line
from raybio.train.trainer import train_loop_per_worker


def build_trainer(
    exp: ExperimentConfig,
    shards_uri: str,
    manifest: Manifest,
    storage_path: str,
    name: str,
    callbacks: list | None = None,
    resume_from: str | None = None,
) -> TorchTrainer:
    """A TorchTrainer whose workers stream `shards_uri` and run `train_loop_per_worker`.

    Checkpoints go to `<storage_path>/<name>` (local or s3://), the newest `train.num_to_keep`
    kept; a failed worker group restarts from the latest one up to `train.max_failures` times,
    and fitting again under the same name continues the run. `resume_from` (a checkpoint
    directory URI) starts a new run from that checkpoint instead.
    """
    t = exp.train
    use_gpu = t.gpus_per_worker > 0
    resources = {"CPU": t.cpus_per_worker, **({"GPU": t.gpus_per_worker} if use_gpu else {})}
    path, fs = storage.ray_storage(storage_path, exp.data.s3)
    local = local_data(exp, shards_uri, manifest)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "experiment": exp.model_dump(),
            "manifest": manifest,
            # The tokenizer travels with every checkpoint (a trained BPE cannot be rebuilt from its config).
            "tokenizer_json": storage.read_bytes(storage.join(shards_uri, manifest.tokenizer.file), exp.data.s3),
            # Used only while the run has no checkpoint of its own (Train V2 has no resume_from_checkpoint).
            "resume_from": _checkpoint(resume_from, exp) if resume_from else None,
            # A small corpus: every worker reads it whole (no Ray Data split coordinator or read tasks).
            "local_data": local,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=t.num_workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        **({} if local else _streamed_datasets(exp, shards_uri, manifest)),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=path,
            storage_filesystem=fs,
            callbacks=callbacks or [],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=t.num_to_keep),
            failure_config=ray.train.FailureConfig(max_failures=t.max_failures),
        ),
    )


class ProgressLine(ray.train.UserCallback):
    """`progress_line` at each validation and at the end of a run (`raybio train`).

    Ray Train calls it on its controller, whose output Ray forwards to the driver's console.
    """

    def __init__(self, max_steps: int):
        self.max_steps = max_steps

    def after_report(self, run_context, metrics, checkpoint):
        if line := progress_line(metrics[0], self.max_steps):
            print(line + (" (checkpoint saved)" if checkpoint is not None else ""), flush=True)


def local_data(exp: ExperimentConfig, shards_uri: str, manifest: Manifest) -> LocalData | None:
    """What workers read whole when the corpus is small enough (`data.loader`), else None (Ray Data streams it)."""
    if not reads_whole(manifest, exp.data.loader):
        return None
    # Credentials resolved here: Ray workers may have started before the AWS variables were set.
    s3 = storage.s3_options(exp.data.s3) if storage.is_remote(shards_uri) else None
    return LocalData(shards_uri, manifest, exp.data.mix, exp.train.seed, s3)


def _streamed_datasets(exp: ExperimentConfig, shards_uri: str, manifest: Manifest) -> dict:
    """TorchTrainer's datasets and their ingest: the train split streamed and split equally over the workers."""
    return {
        "datasets": {
            "train": read_split(shards_uri, manifest, "train", mix=exp.data.mix, seed=exp.train.seed, s3=exp.data.s3),
            "val": read_split(shards_uri, manifest, "val", s3=exp.data.s3),
        },
        # Every worker sees the whole (small) val split and evaluates its own stride of it.
        "dataset_config": ray.train.DataConfig(datasets_to_split=["train"], execution_options=_ordered_ingest()),
    }


def _ordered_ingest():
    """Ray Data ingest options with a deterministic split: every epoch deals the same rows to
    the same worker in the same order, which is what lets a resumed run skip to its position."""
    options = ray.train.DataConfig.default_ingest_options()
    options.preserve_order = True
    return options


def _checkpoint(uri: str, exp: ExperimentConfig) -> ray.train.Checkpoint:
    fs, path = storage.filesystem(uri, exp.data.s3)
    return ray.train.Checkpoint(path, filesystem=fs)
