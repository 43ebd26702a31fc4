"""Ray Tune over raybio's Trainer: grid or Optuna search; a one-CPU-worker trial trains in its own Tune
process, any other (several workers, GPUs, DeepSpeed) launches a TorchTrainer run."""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import ray
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from raybio.cluster import init_ray, machine_line, max_concurrent_trials
from raybio.config import ExperimentConfig, validate
from raybio.data import storage
from raybio.data.prepare import default_shards_uri, prepare
from raybio.train.local import can_reset_peak_memory, train_in_process, trains_in_process
from raybio.train.ray_trainer import build_trainer
from raybio.tune.callbacks import OrderedTuneReportCallback, ProgressLineCallback, TensorBoardCallback, console_first
from raybio.tune.export import history_table, results_table
from raybio.tune.record import Claim, SweepMeta, SweepRecord
from raybio.tune.space import trial_experiment
from raybio.tune.trackers import Tracker, tracker_callbacks

# A trial that launches a TorchTrainer only waits for it; it needs a sliver of a CPU (0 CPU cannot
# be scheduled alongside the workers, 1 CPU starves them on small machines). A trial that trains
# in its own process holds its worker's CPUs instead.
TRIAL_DRIVER_CPU = 0.01


@dataclass
class SweepSpec:
    """What a sweep varies, over which base experiment, where results go, how it searches."""

    name: str
    axes: dict[str, list]
    base: ExperimentConfig
    question: str = ""
    claims: list[Claim] = field(default_factory=list)  # what the answer tests (raybio.analysis.answer)
    storage: str = "./runs"
    search: Literal["grid", "optuna"] = "grid"
    num_samples: int = 1
    # One metric, or several for a multi-objective Optuna search (Pareto front).
    metric: str | list[str] = "val_loss"
    mode: str | list[str] = "min"
    asha: bool = False
    seed: int = 0
    command: list[str] = field(default_factory=lambda: list(sys.argv))
    # Continue an interrupted sweep of the same name: finished trials are kept, not re-run.
    resume: bool = False
    # Also log trials (and, after the sweep, the report) to MLflow or W&B (raybio/tune/trackers.py).
    tracker: Tracker | None = None
    # Downstream tasks each trial's final checkpoint is evaluated on (raybio/evaluate), and their seeds.
    eval_tasks: list[str] = field(default_factory=list)
    eval_seeds: int = 3
    # Throughput probe after training ("off" where every trial had dedicated hardware).
    probe: Literal["after", "off"] = "after"
    probe_steps: int = 10
    probe_rounds: int = 5
    study: str = ""  # the sweeps/ script that ran it: its study-specific analysis (raybio.analysis.studies)

    @property
    def flop_budget(self) -> float | None:
        """The base experiment's train.flop_budget: every trial gets the steps that spend it (equal compute)."""
        return self.base.train.flop_budget

    @property
    def budget(self) -> str:
        if "train.flop_budget" in self.axes:
            return "own compute budget per trial (the train.flop_budget axis), each with its complete schedule"
        if self.flop_budget:
            return f"equal compute: {self.flop_budget:.3g} training FLOPs per trial"
        t = self.base.train
        tokens = t.max_steps * t.batch_size * t.num_workers * self.base.data.seq_len
        return f"equal tokens: {t.max_steps} steps = {tokens:,} tokens per trial"


def run_trial(
    config: dict,
    base: dict,
    storage_root_uri: str,
    train_storage: str,
    aws_env: storage.AWSEnvironment,
    eval_tasks: list[str] | None = None,
    eval_seeds: int = 3,
) -> None:
    """Tune trainable: apply this trial's axis values to the base config, prepare its corpus, train.

    The run is named after the trial (`<train_storage>/trial_<id>`), so a restarted trial resumes
    from its own newest checkpoint on either path.
    """
    aws_env.apply()  # object storage as the driver sees it
    exp = trial_experiment(validate(base), config["params"])
    # Idempotent: a no-op unless this trial's data config (e.g. seq_len) is new to the sweep.
    shards_uri = default_shards_uri(storage_root_uri, exp.data)
    manifest = prepare(exp.data, shards_uri, progress=False)
    name = f"trial_{tune.get_context().get_trial_id()}"
    if trains_in_process(exp):
        result = train_in_process(exp, shards_uri, manifest, train_storage, name, _report_to_tune)
    else:
        trainer = build_trainer(exp, shards_uri, manifest, train_storage, name, callbacks=[OrderedTuneReportCallback()])
        result = trainer.fit()
    if eval_tasks:  # --eval-tasks: downstream scores of the final checkpoint, reported as one more result
        from raybio.evaluate.runner import evaluate_train_result

        tune.report(evaluate_train_result(result, eval_tasks, eval_seeds))


def _report_to_tune(metrics: dict) -> None:
    tune.report(console_first(metrics))


def _search(spec: SweepSpec):
    """(param space, search algorithm, num_samples, tune metric, tune mode, scheduler)."""
    multi = isinstance(spec.metric, list)
    scheduler = None
    if spec.asha:
        if multi:
            raise ValueError("ASHA early stopping needs a single metric; drop --asha for multi-objective search")
        from ray.tune.schedulers import ASHAScheduler

        # Train loss is reported at every log step, so rungs compare like with like.
        scheduler = ASHAScheduler(time_attr="step", metric="loss", mode="min", grace_period=max(1, _grace(spec)))
    if spec.search == "grid":
        if multi:
            raise ValueError("a multi-objective sweep needs --search optuna")
        params = {axis: tune.grid_search(values) for axis, values in spec.axes.items()}
        return params, None, 1, spec.metric, spec.mode, scheduler
    from ray.tune.search.optuna import OptunaSearch

    params = {axis: tune.choice(values) for axis, values in spec.axes.items()}
    search_alg = OptunaSearch(metric=spec.metric, mode=spec.mode, seed=spec.seed)
    # Tune itself tracks one metric; the searcher owns the (possibly multiple) objectives.
    return params, search_alg, spec.num_samples, None if multi else spec.metric, None if multi else spec.mode, scheduler


def _grace(spec: SweepSpec) -> int:
    return spec.base.train.max_steps // 4 // spec.base.train.log_every * spec.base.train.log_every


def run_sweep(spec: SweepSpec) -> SweepRecord:
    """Run the sweep to completion; save and return its record (analysis adds the rest)."""
    t0 = time.time()
    root = storage.absolute(spec.storage)
    resources = init_ray()
    prepare(spec.base.data, default_shards_uri(root, spec.base.data))
    t = spec.base.train
    concurrency = max_concurrent_trials(resources, t.num_workers, t.cpus_per_worker, t.gpus_per_worker)
    tb_dir = _local_tensorboard_dir(root, spec.name)
    tuner = _tuner(spec, root, tb_dir, concurrency)
    uri = storage.join(root, spec.name)
    print(
        f"[raybio] sweep {spec.name!r}: axes {spec.axes}, search={spec.search}, {spec.budget}; "
        f"{concurrency} concurrent trial(s) of {t.num_workers} worker(s); results -> {uri}",
        flush=True,
    )
    t_fit = time.time()
    grid = tuner.fit()
    fit_wall_s = round(time.time() - t_fit, 1)
    meta = sweep_meta(spec, wall_time_s=round(time.time() - t0, 1), fit_wall_time_s=fit_wall_s, concurrency=concurrency)
    record = SweepRecord(uri, meta, results_table(grid, spec.base), history_table(grid), tb_dir=tb_dir)
    record.save()  # the trials' results are safe before analysis starts
    return record


def _tuner(spec: SweepSpec, root: str, tb_dir: str, concurrency: int) -> tune.Tuner:
    """A new Tuner over the sweep's trials, or the interrupted one of the same name with `spec.resume`."""
    params, search_alg, num_samples, metric, mode, scheduler = _search(spec)
    # s3:// goes to Tune as a bucket path plus a filesystem: that is how Ray honours a custom endpoint.
    tune_path, tune_fs = storage.ray_storage(root, spec.base.data.s3)
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            base=spec.base.model_dump(),
            storage_root_uri=root,
            train_storage=storage.join(root, spec.name, "train_runs"),
            aws_env=storage.AWSEnvironment.capture(),  # through the object store: never logged
            eval_tasks=spec.eval_tasks,
            eval_seeds=spec.eval_seeds,
        ),
        _trial_resources(spec.base),
    )
    restore_path = storage.join(tune_path, spec.name)
    if spec.resume and tune.Tuner.can_restore(restore_path, storage_filesystem=tune_fs):
        # Unfinished and errored trials run again (resuming their Train checkpoints); finished ones are kept.
        return tune.Tuner.restore(restore_path, trainable=trainable, resume_errored=True, storage_filesystem=tune_fs)
    callbacks = [
        # Tune's own TensorBoard logger is off (raybio.cluster.init_ray): raybio writes one event file per trial.
        CSVLoggerCallback(),
        JsonLoggerCallback(),
        TensorBoardCallback(tb_dir),
        ProgressLineCallback(list(spec.axes), spec.base),
        *tracker_callbacks(spec.tracker, spec.name),
    ]
    return tune.Tuner(
        trainable,
        param_space={"params": params},
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            search_alg=search_alg,
            scheduler=scheduler,
            num_samples=num_samples,
            max_concurrent_trials=concurrency,
            # A finished trial's process (torch and raybio imported, resources held) runs the next trial. Only
            # where each trial still measures its own peak memory (raybio.train.local.reset_peak_memory).
            reuse_actors=trains_in_process(spec.base) and can_reset_peak_memory(),
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=tune_path,
            storage_filesystem=tune_fs,
            callbacks=callbacks,
            # Tune's console: its configuration table and errors (each failed trial with its error file). Above
            # that Tune prints a status table every 30 s and every metric of each finished trial; raybio prints
            # one line per trial start, validation and end instead (ProgressLineCallback).
            verbose=0,
            # Restarts of a failed trial, each resuming its run from its newest checkpoint (_trial_retries).
            failure_config=tune.FailureConfig(max_failures=_trial_retries(spec.base)),
        ),
    )


def _trial_resources(base: ExperimentConfig):
    """Per trial: its worker's CPUs when it trains in its own process, else a sliver for the TorchTrainer's driver."""

    def resources(config: dict) -> tune.PlacementGroupFactory:
        exp = trial_experiment(base, (config or {}).get("params", {}))
        cpus = exp.train.cpus_per_worker if trains_in_process(exp) else TRIAL_DRIVER_CPU
        return tune.PlacementGroupFactory([{"CPU": cpus}])

    return resources


def _trial_retries(base: ExperimentConfig) -> int:
    """Trial restarts (each from the trial's newest checkpoint). A TorchTrainer trial restarts its worker group
    `train.max_failures` times itself and Tune restarts it once more when its driver is lost; a trial that
    trains in its own process is its worker, so Tune gives it those restarts too."""
    t = base.train
    if not trains_in_process(base):
        return 1
    return -1 if t.max_failures == -1 else t.max_failures + 1


# SweepMeta fields that are the SweepSpec's own, as run.
META_FIELDS = ("name", "question", "claims", "axes", "search", "metric", "mode", "asha", "budget", "flop_budget",
               "probe", "probe_steps", "probe_rounds", "tracker", "study")  # fmt: skip


def sweep_meta(spec: SweepSpec, *, wall_time_s: float, fit_wall_time_s: float, concurrency: int) -> SweepMeta:
    return SweepMeta(
        **{f: getattr(spec, f) for f in META_FIELDS},
        num_samples=spec.num_samples if spec.search == "optuna" else 1,
        base=spec.base.model_dump(),
        command=shlex.join(spec.command),
        ray_version=ray.__version__,
        wall_time_s=wall_time_s,
        fit_wall_time_s=fit_wall_time_s,
        concurrent_trials=concurrency,
        machine=machine_line(),
    )


def _local_tensorboard_dir(root: str, name: str) -> str:
    """Event files are written locally (to the storage itself when it is local)."""
    if storage.is_remote(root):
        import tempfile

        return str(Path(tempfile.mkdtemp(prefix="raybio-tb-")) / "tensorboard")
    return str(Path(root) / name / "tensorboard")
