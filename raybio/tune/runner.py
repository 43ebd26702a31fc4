"""Ray Tune over Ray Train: one trial = one TorchTrainer run; grid or Optuna search."""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
import ray
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from raybio.analysis.curves import print_summary, write_sweep_curves
from raybio.cluster import init_ray, max_concurrent_trials
from raybio.config import ExperimentConfig, deep_merge, validate
from raybio.data import storage
from raybio.data.prepare import default_shards_uri, prepare
from raybio.train.trainer import build_trainer
from raybio.tune.callbacks import TensorBoardCallback
from raybio.tune.export import results_table, write_table
from raybio.tune.space import overrides_for

# The trial function only launches a TorchTrainer and waits; it needs a sliver of a CPU
# (0 CPU cannot be scheduled alongside the workers, 1 CPU starves them on small machines).
TRIAL_DRIVER_CPU = 0.01


@dataclass
class SweepSpec:
    """What a sweep varies, over which base experiment, where results go, how it searches."""

    name: str
    axes: dict[str, list]
    base: ExperimentConfig
    storage: str = "./runs"
    search: Literal["grid", "optuna"] = "grid"
    num_samples: int = 1
    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    seed: int = 0
    command: list[str] = field(default_factory=lambda: list(sys.argv))


def run_trial(config: dict, experiment: dict, shards_uri: str, manifest: dict, train_storage: str) -> None:
    """Tune trainable: apply this trial's axis values to the base config and train."""
    exp = validate(deep_merge(experiment, overrides_for(config["params"])))
    trial_id = tune.get_context().get_trial_id()
    trainer = build_trainer(
        exp, shards_uri, manifest, train_storage, name=f"trial_{trial_id}", callbacks=[TuneReportCallback()]
    )
    trainer.fit()


def storage_root(uri: str) -> str:
    """Absolute local path or URI: Ray needs absolute storage paths."""
    return uri if storage.is_remote(uri) else str(Path(uri).expanduser().resolve())


def run_sweep(spec: SweepSpec) -> pd.DataFrame:
    """Run the sweep to completion; write results table, TensorBoard and sweep.json; print a summary."""
    t0 = time.time()
    root = storage_root(spec.storage)
    sweep_uri = storage.join(root, spec.name)
    resources = init_ray()
    shards_uri = default_shards_uri(root, spec.base.data)
    manifest = prepare(spec.base.data, shards_uri)
    t = spec.base.train
    concurrency = max_concurrent_trials(resources, t.num_workers, t.cpus_per_worker, t.gpus_per_worker)

    if spec.search == "grid":
        params = {axis: tune.grid_search(values) for axis, values in spec.axes.items()}
        search_alg, num_samples = None, 1
    else:
        from ray.tune.search.optuna import OptunaSearch

        params = {axis: tune.choice(values) for axis, values in spec.axes.items()}
        search_alg = OptunaSearch(metric=spec.metric, mode=spec.mode, seed=spec.seed)
        num_samples = spec.num_samples

    tb_dir = _local_tensorboard_dir(root, spec.name)
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            experiment=spec.base.model_dump(),
            shards_uri=shards_uri,
            manifest=manifest,
            train_storage=storage.join(root, spec.name, "train_runs"),
        ),
        {"CPU": TRIAL_DRIVER_CPU},
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"params": params},
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.mode,
            search_alg=search_alg,
            num_samples=num_samples,
            max_concurrent_trials=concurrency,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=root,
            callbacks=[TensorBoardCallback(tb_dir)],
            verbose=1,
        ),
    )
    print(
        f"[raybio] sweep {spec.name!r}: axes {spec.axes}, search={spec.search}, "
        f"{concurrency} concurrent trial(s) of {t.num_workers} worker(s); results -> {sweep_uri}",
        flush=True,
    )
    grid = tuner.fit()

    df = results_table(grid, spec.base.model_dump())
    write_table(df, sweep_uri)
    write_sweep_curves(df, list(spec.axes), tb_dir)
    _publish_tensorboard(tb_dir, root, spec.name)
    storage.write_json(
        storage.join(sweep_uri, "sweep.json"),
        {
            "name": spec.name,
            "axes": spec.axes,
            "search": spec.search,
            "num_samples": num_samples,
            "metric": spec.metric,
            "base": spec.base.model_dump(),
            "corpus": {"shards": shards_uri, "tokens_train": manifest["splits"]["train"]["tokens"]},
            "budget": {"tokens_per_trial": _tokens_per_trial(spec.base)},
            "command": shlex.join(spec.command),
            "ray_version": ray.__version__,
            "wall_time_s": round(time.time() - t0, 1),
        },
    )
    print_summary(df, list(spec.axes))
    print(f"[raybio] results: {sweep_uri}/results.csv; TensorBoard: tensorboard --logdir {sweep_uri}/tensorboard")
    print(f"[raybio] sweep wall time {time.time() - t0:.0f} s", flush=True)
    return df


def _tokens_per_trial(exp: ExperimentConfig) -> int:
    t = exp.train
    return t.max_steps * t.batch_size * t.num_workers * exp.data.seq_len


def _local_tensorboard_dir(root: str, name: str) -> str:
    """Event files are written locally (to the storage itself when it is local)."""
    if storage.is_remote(root):
        import tempfile

        return str(Path(tempfile.mkdtemp(prefix="raybio-tb-")) / "tensorboard")
    return str(Path(root) / name / "tensorboard")


def _publish_tensorboard(tb_dir: str, root: str, name: str) -> None:
    """Copy locally written event files to remote storage (no-op for local storage)."""
    if not storage.is_remote(root):
        return
    import pyarrow.fs as pafs

    fs, path = storage.filesystem(storage.join(root, name, "tensorboard"))
    pafs.copy_files(tb_dir, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)

