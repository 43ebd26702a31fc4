"""Build the Ray Train `TorchTrainer` for one experiment."""

from __future__ import annotations

import ray.train
from ray.train.torch import TorchTrainer

from raybio.config import ExperimentConfig
from raybio.data.loader import read_split
from raybio.train.loop import train_loop_per_worker


def build_trainer(
    exp: ExperimentConfig,
    shards_uri: str,
    manifest: dict,
    storage_path: str,
    name: str,
    callbacks: list | None = None,
) -> TorchTrainer:
    """A TorchTrainer whose workers stream `shards_uri` and run `train_loop_per_worker`."""
    t = exp.train
    use_gpu = t.gpus_per_worker > 0
    resources = {"CPU": t.cpus_per_worker, **({"GPU": t.gpus_per_worker} if use_gpu else {})}
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"experiment": exp.model_dump(), "manifest": manifest},
        scaling_config=ray.train.ScalingConfig(
            num_workers=t.num_workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        datasets={"train": read_split(shards_uri, manifest, "train"), "val": read_split(shards_uri, manifest, "val")},
        # Every worker sees the whole (small) val split and evaluates its own stride of it.
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage_path,
            callbacks=callbacks or [],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
        ),
    )
