"""Experiment trackers for sweeps: MLflow or Weights & Biases through Ray Tune's own logger callbacks.

`--tracker mlflow` adds `ray.air.integrations.mlflow.MLflowLoggerCallback`: one MLflow run
per trial in the experiment named after the sweep, with the trial's axis values as params
and every reported metric per training iteration. `--tracker wandb` adds
`WandbLoggerCallback` the same way (project = sweep name, one W&B run per trial, the
trial config logged). Where they log is each client's own setting: `MLFLOW_TRACKING_URI`
(MLflow's default is a local store in the working directory) and `WANDB_PROJECT`/`WANDB_MODE`/
`WANDB_API_KEY` (credentials are read by the client and never pass through raybio).

After the sweep, `log_report` adds one sweep-level run ("<sweep>/report") to the same
experiment or project holding the report (HTML, Markdown, plots), results.csv and
sweep.json as artifacts, and the sweep's axes and budget as params: trial runs keep the
per-trial curves, and the answer to the study lives beside them in one place.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Literal

import pandas as pd

from raybio.tune.record import SweepMeta

Tracker = Literal["mlflow", "wandb"]
TRACKERS = ("mlflow", "wandb")


def tracker_callbacks(tracker: Tracker | None, sweep_name: str) -> list:
    """Ray Tune logger callbacks for `tracker` (none for None)."""
    if tracker is None:
        return []
    if tracker == "mlflow":
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        return [MLflowLoggerCallback(experiment_name=sweep_name, tags={"raybio.sweep": sweep_name})]
    if tracker == "wandb":
        from ray.air.integrations.wandb import WandbLoggerCallback

        # Ray hands its logging actors only WANDB_API_KEY; the driver's mode and folder go as init kwargs.
        settings = {k: os.environ[v] for k, v in (("mode", "WANDB_MODE"), ("dir", "WANDB_DIR")) if v in os.environ}
        return [WandbLoggerCallback(project=sweep_name, group=sweep_name, log_config=True, **settings)]
    raise ValueError(f"unknown tracker {tracker!r}; choose one of {TRACKERS}")


def _sweep_params(sweep: dict) -> dict[str, str]:
    return {
        "axes": json.dumps(sweep["axes"]),
        "search": sweep["search"],
        "budget": sweep["budget"],
        "metric": json.dumps(sweep["metric"]),
    }


def log_report(meta: SweepMeta, report: dict[str, bytes], results: pd.DataFrame) -> None:
    """Log the finished sweep's report (file name -> bytes, as rendered), its results table and sweep.json as
    artifacts of one sweep-level run of `meta.tracker` (nothing is read back from the sweep's storage)."""
    if meta.tracker is None:
        return
    sweep = meta.model_dump()
    with tempfile.TemporaryDirectory(prefix="raybio-report-") as tmp:
        local = Path(tmp)
        (local / "report").mkdir()
        for name, data in report.items():
            (local / "report" / name).write_bytes(data)
        results.to_csv(local / "results.csv", index=False)
        (local / "sweep.json").write_text(json.dumps(sweep, indent=2, sort_keys=True))
        if meta.tracker == "mlflow":
            _mlflow_report(meta.name, sweep, local)
        else:
            _wandb_report(meta.name, sweep, local)


def _mlflow_report(sweep_name: str, sweep: dict, local: Path) -> None:
    from mlflow.tracking import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

    client = MlflowClient()  # the tracking URI the trial runs used (MLFLOW_TRACKING_URI or MLflow's default)
    experiment = client.get_experiment_by_name(sweep_name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(sweep_name)
    run = client.create_run(
        experiment_id,
        run_name=f"{sweep_name}/report",
        tags={"raybio.sweep": sweep_name, "raybio.kind": "report", MLFLOW_RUN_NOTE: sweep["question"]},
    )
    for key, value in _sweep_params(sweep).items():
        client.log_param(run.info.run_id, key, value)
    client.log_artifacts(run.info.run_id, str(local))
    client.set_terminated(run.info.run_id)


def _wandb_report(sweep_name: str, sweep: dict, local: Path) -> None:
    import wandb

    run = wandb.init(
        project=sweep_name,
        group=sweep_name,
        name=f"{sweep_name}/report",
        job_type="report",
        config=_sweep_params(sweep),
        notes=sweep["question"],
    )
    artifact = wandb.Artifact(f"{sweep_name}-report", type="report")
    artifact.add_dir(str(local))
    run.log_artifact(artifact)
    run.finish()
