"""A one-CPU-worker run trains in the calling process (raybio/train/local.py, what a sweep trial does)
and means what a one-worker TorchTrainer run means: the same losses at every report, the same
validation, token count, metric names and checkpoint files. Its checkpoints are registered only
once whole, the newest `train.num_to_keep` kept, and the run started again resumes from its
newest one, retracing the uninterrupted run exactly."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import ray
import ray.train
import torch

from raybio.config import load_config
from raybio.train.checkpoint import verify
from raybio.train.local import REGISTRY, train_in_process, trains_in_process
from raybio.train.ray_trainer import build_trainer
from raybio.tune.args import SMOKE

RUN = ["train.max_steps=20", "train.log_every=5", "train.eval_every=10", "train.checkpoint_every=10"]
TIMING = {"checkpoint_path", "setup_time_s", "eval_time_s", "checkpoint_time_s", "restore_time_s", "load_avg_1m"}


class _Reports(ray.train.UserCallback):
    """Appends every report of a TorchTrainer run to a JSON-lines file (the callback runs in Ray's controller)."""

    def __init__(self, path: str):
        self.path = path

    def after_report(self, run_context, metrics, checkpoint):
        with open(self.path, "a") as f:
            f.write(json.dumps({**metrics[0], "checkpoint": checkpoint.path if checkpoint else None}) + "\n")


def _one_thread(fn):
    """Run `fn` on one intra-op thread, as a one-CPU Ray worker does (same float summation order)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def both_paths(lambda_corpus, tmp_path_factory):
    uri, manifest, _ = lambda_corpus
    exp = load_config("tiny", overrides=[*SMOKE, *RUN])
    out = tmp_path_factory.mktemp("paths")
    local: list[dict] = []
    result = _one_thread(lambda: train_in_process(exp, uri, manifest, str(out), "local", sink=local.append))
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the controller cannot import tests/
    build_trainer(exp, uri, manifest, str(out), "ray", callbacks=[_Reports(str(out / "ray.jsonl"))]).fit()
    ray_reports = [json.loads(line) for line in (out / "ray.jsonl").read_text().splitlines()]
    return exp, out, local, result, ray_reports


def test_in_process_run_reports_what_a_one_worker_torchtrainer_run_reports(both_paths):
    _, _, local, _, ray_reports = both_paths
    assert [r["step"] for r in local] == [r["step"] for r in ray_reports] == [5, 10, 15, 20]
    for mine, theirs in zip(local, ray_reports, strict=True):
        assert set(mine) - TIMING == set(theirs) - TIMING - {"checkpoint"}
        for key in ("loss", "grad_norm", "lr", "val_loss", "val_loss_se", "init_val_loss", "tokens_seen", "val_step"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-5), (mine["step"], key)
        assert mine["world_size"] == theirs["world_size"] == 1
    # A report carries a checkpoint path exactly where the TorchTrainer run's carried a checkpoint.
    assert [("checkpoint_path" in r) for r in local] == [r["checkpoint"] is not None for r in ray_reports]


def test_in_process_checkpoints_hold_the_torchtrainer_files_and_weights(both_paths):
    _, out, local, result, ray_reports = both_paths
    mine, theirs = Path(local[-1]["checkpoint_path"]), Path(ray_reports[-1]["checkpoint"])
    assert mine == out / "local" / "checkpoint_step00000020" and result.checkpoint.path == str(mine)
    assert set(verify(mine)["files"]) == set(verify(theirs)["files"])
    a, b = torch.load(mine / "model.pt"), torch.load(theirs / "model.pt")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-7) for k in a)
    assert result.metrics["step"] == 20 and result.metrics["checkpoint_path"] == str(mine)


def test_restarted_in_process_run_resumes_from_its_newest_checkpoint(both_paths, lambda_corpus, tmp_path):
    exp, _, uninterrupted, _, _ = both_paths
    uri, manifest, _ = lambda_corpus
    exp = exp.model_copy(deep=True)
    exp.train.num_to_keep = 1
    seen: list[dict] = []

    def dies_after_the_first_checkpoint(metrics: dict) -> None:
        seen.append(metrics)
        if "checkpoint_path" in metrics:
            raise RuntimeError("the trial process died")

    with pytest.raises(RuntimeError, match="died"):
        _one_thread(lambda: train_in_process(exp, uri, manifest, str(tmp_path), "run", dies_after_the_first_checkpoint))
    assert _registered(tmp_path / "run") == ["checkpoint_step00000010"]

    resumed: list[dict] = []
    _one_thread(lambda: train_in_process(exp, uri, manifest, str(tmp_path), "run", resumed.append))
    assert [r["step"] for r in resumed] == [15, 20] and all(r["resumed_from_step"] == 10 for r in resumed)
    for mine, full in zip(resumed, uninterrupted[2:], strict=True):
        for key in ("loss", "val_loss", "tokens_seen", "init_val_loss"):
            assert mine[key] == pytest.approx(full[key], rel=1e-5), (mine["step"], key)
    # num_to_keep = 1: the older checkpoint is unregistered and deleted once the newer one is whole.
    assert _registered(tmp_path / "run") == ["checkpoint_step00000020"]
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint_step*")) == ["checkpoint_step00000020"]
    # Started once more with nothing left to train, it reports nothing and returns what it finished with.
    again: list[dict] = []
    result = _one_thread(lambda: train_in_process(exp, uri, manifest, str(tmp_path), "run", again.append))
    assert again == [] and result.checkpoint.path == str(tmp_path / "run" / "checkpoint_step00000020")
    assert result.metrics["step"] == 20 and result.metrics["loss"] == pytest.approx(resumed[-1]["loss"])


def _registered(run: Path) -> list[str]:
    return [c["name"] for c in json.loads((run / REGISTRY).read_text())["checkpoints"]]


def test_a_streamed_corpus_trains_as_the_same_corpus_read_whole(lambda_corpus, tmp_path):
    uri, manifest, _ = lambda_corpus
    losses = {}
    for loader in ("memory", "stream"):  # in read order: the two paths then deal the same batches
        exp = load_config(
            "tiny", overrides=[*SMOKE, "train.max_steps=10", "data.shuffle_buffer=0", f"data.loader={loader}"]
        )
        reports: list[dict] = []
        _one_thread(
            lambda exp=exp, r=reports: train_in_process(exp, uri, manifest, str(tmp_path), exp.data.loader, r.append)
        )
        losses[loader] = {r["step"]: (r["loss"], r["val_loss"]) for r in reports}
    assert list(losses["stream"]) == list(losses["memory"]) == [5, 10]
    for step, (loss, val) in losses["memory"].items():
        assert losses["stream"][step] == pytest.approx((loss, val), rel=1e-6)


@pytest.mark.parametrize(
    ("overrides", "in_process"),
    [
        ([], True),
        (["train.num_workers=2"], False),
        (["train.gpus_per_worker=1"], False),
        (["train.engine=deepspeed"], False),
    ],
)
def test_only_a_single_cpu_ddp_worker_trains_in_process(overrides, in_process):
    assert trains_in_process(load_config("tiny", overrides=overrides)) is in_process
