"""`--tracker mlflow|wandb`: a sweep smoke's trials and report, read back with the trackers' own clients."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from test_sweeps import run_smoke

from raybio.tune.trackers import tracker_callbacks

pytest.importorskip("mlflow")


def test_mlflow_runs_of_a_sweep_smoke_read_back_with_mlflows_client(ray_local, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()  # a local file store: file:///…
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores without it
    sweep = run_smoke(
        "routing", tmp_path / "runs", "--routers", "softmax_unnormalized", "deepseek_v3", "--tracker", "mlflow"
    )
    results = pd.read_parquet(sweep / "results.parquet").set_index("router")

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("routing")
    runs = client.search_runs([experiment.experiment_id])
    trials = {r.data.params["params/router"]: r for r in runs if "trial_name" in r.data.tags}
    assert sorted(trials) == ["deepseek_v3", "softmax_unnormalized"]
    for router, run in trials.items():
        assert run.data.params["params/top_k"] == "2"
        assert run.data.metrics["val_loss"] == pytest.approx(results.loc[router, "val_loss"], rel=1e-6)
        history = client.get_metric_history(run.info.run_id, "loss")
        assert len(history) >= 4 and [m.step for m in history] == sorted(m.step for m in history)

    (report_run,) = [r for r in runs if r.data.tags.get("raybio.kind") == "report"]
    assert report_run.data.params["search"] == "grid"
    artifacts = {a.path for a in client.list_artifacts(report_run.info.run_id)}
    assert {"report", "results.csv", "sweep.json"} <= artifacts
    local = client.download_artifacts(report_run.info.run_id, "report/report.md", str(tmp_path / "dl"))
    assert Path(local).read_text() == (sweep / "report" / "report.md").read_text()


@pytest.mark.slow
def test_wandb_offline_runs_of_a_sweep_smoke_log_the_trial_and_the_report(ray_local, tmp_path, monkeypatch):
    """W&B has no public reader for offline runs (wandb.Api reads a server), so this checks the runs'
    transaction logs: one per trial and one for the report, naming what each logged."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    run_smoke("routing", tmp_path / "runs", "--routers", "mixtral", "--top-k", "1", "--tracker", "wandb")
    logs = [next(r.glob("run-*.wandb")).read_bytes() for r in sorted((tmp_path / "wandb").glob("offline-run-*"))]
    report = [log for log in logs if b"routing-report" in log]
    trials = [log for log in logs if b"routing-report" not in log]
    assert len(report) == 1 and len(trials) == 1
    assert all(key in trials[0] for key in (b"mixtral", b"val_loss", b"tokens_per_s", b"router/layer0"))
    assert all(name in report[0] for name in (b"report.html", b"report.md", b"results.csv", b"sweep.json"))


def test_wandb_callback_is_ray_tunes_own_and_offline_mode_needs_no_key(monkeypatch):
    pytest.importorskip("wandb")
    from ray.air.integrations.wandb import WandbLoggerCallback

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    (callback,) = tracker_callbacks("wandb", "routing")
    assert isinstance(callback, WandbLoggerCallback) and callback.project == "routing"
    callback.setup()  # raises without an API key unless WANDB_MODE is offline
    assert os.environ["WANDB_MODE"] == "offline"
