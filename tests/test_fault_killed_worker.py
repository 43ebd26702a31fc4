"""Fault tolerance on real Ray: a DeepSpeed worker SIGKILLed mid-run resumes from its last checkpoint
in S3 and retraces its steps exactly (and, slow, matches an uninterrupted DDP run); a damaged
checkpoint stops a run with a clear error."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import ray.cloudpickle
import ray.train

from raybio.config import deep_merge, validate
from raybio.train.ray_trainer import build_trainer

MAX_STEPS, LOG_EVERY, CHECKPOINT_EVERY, KILL_AFTER = 40, 2, 8, 12


class ReportLog(ray.train.UserCallback):
    """On the Train controller: append every report (time, step, loss, resume info) to a JSON-lines
    file and, once, SIGKILL a training worker right after the report of step `kill_after`."""

    def __init__(self, path: str, kill_after: int | None = None):
        self.path, self.kill_after, self.pids = path, kill_after, None

    def after_report(self, run_context, metrics, checkpoint):
        m = metrics[0]
        record = {key: m.get(key) for key in ("step", "loss", "resumed_from_step", "restore_time_s", "tokens_seen")}
        with open(self.path, "a") as f:
            f.write(json.dumps({"t": time.time(), "checkpoint": checkpoint is not None, **record}) + "\n")
        if self.kill_after is None or os.path.exists(self.path + ".killed"):
            return
        if self.pids is None:  # looked up early, so the kill itself is immediate
            from ray.util.state import list_actors

            # Name this cluster: other Ray instances may run on the same machine.
            address = ray.get_runtime_context().gcs_address
            alive = list_actors(address, filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
            self.pids = sorted(a.pid for a in alive)
        if m["step"] >= self.kill_after:
            Path(self.path + ".killed").write_text(json.dumps({"t": time.time(), "pid": self.pids[-1]}))
            os.kill(self.pids[-1], signal.SIGKILL)


def _experiment(corpus_exp, **train):
    train = {
        "num_workers": 2,
        "max_steps": MAX_STEPS,
        "log_every": LOG_EVERY,
        "checkpoint_every": CHECKPOINT_EVERY,
        "eval_every": 0,
        "warmup_steps": 4,
        "max_failures": 1,
        **train,
    }
    return validate(deep_merge(corpus_exp.model_dump(), {"train": train, "model": {"pattern": "A"}}))


def _fit(exp, corpus, storage: str, name: str, log: Path, **kw):
    shards_uri, manifest, _ = corpus
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    trainer = build_trainer(exp, shards_uri, manifest, storage, name, callbacks=[ReportLog(str(log), **kw)])
    result = trainer.fit()
    return result, [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture(scope="module")
def killed(ray_local, lambda_corpus, s3_server, tmp_path_factory):
    """A DeepSpeed ZeRO-2 run (every rank writes its part of each checkpoint) checkpointing to the
    local S3 server, one of whose workers is SIGKILLed after step KILL_AFTER: (result, records, kill)."""
    tmp = tmp_path_factory.mktemp("killed")
    exp = _experiment(lambda_corpus[2], engine="deepspeed", zero_stage=2)
    result, records = _fit(
        exp, lambda_corpus, s3_server.uri("runs"), "killed", tmp / "reports.jsonl", kill_after=KILL_AFTER
    )
    return result, records, json.loads((tmp / "reports.jsonl.killed").read_text())


def _attempts(records: list[dict]) -> tuple[list[dict], list[dict], int]:
    before = [r for r in records if r["resumed_from_step"] == 0]
    after = [r for r in records if r["resumed_from_step"] != 0]
    return before, after, max(r["step"] for r in before if r["checkpoint"])


def test_killed_worker_resumes_from_its_last_s3_checkpoint(killed, s3_server):
    result, records, kill = killed
    before, after, last_checkpoint = _attempts(records)

    # The run finished, its last checkpoint lives in the S3 bucket.
    assert result.metrics["step"] == MAX_STEPS and result.error is None
    assert result.checkpoint.path.startswith(f"{s3_server.bucket}/runs/killed/")
    # It resumed once, from the newest checkpoint written before the kill, and went on from there.
    assert {r["resumed_from_step"] for r in after} == {last_checkpoint}
    assert [r["step"] for r in after] == list(range(last_checkpoint + LOG_EVERY, MAX_STEPS + 1, LOG_EVERY))
    assert before[-1]["step"] >= KILL_AFTER > last_checkpoint
    # The steps trained twice (after the checkpoint, before the kill) have the same losses and token
    # counts both times: weights, optimizer, schedule, masking RNG and data position all came back.
    first = {r["step"]: r for r in before}
    again = [r for r in after if r["step"] in first]
    assert len(again) >= (KILL_AFTER - last_checkpoint) // LOG_EVERY
    for r in again:
        assert r["loss"] == pytest.approx(first[r["step"]]["loss"], rel=1e-6), r["step"]
        assert r["tokens_seen"] == first[r["step"]]["tokens_seen"]

    figures = {
        "steps_lost": before[-1]["step"] - last_checkpoint,
        "resume_s": round(after[0]["t"] - kill["t"], 1),
        "restore_in_worker_s": round(after[0]["restore_time_s"], 2),
    }
    print(f"\n[fault] killed worker: {json.dumps(figures)}")
    assert figures["steps_lost"] < CHECKPOINT_EVERY + 2 * LOG_EVERY


@pytest.mark.slow
def test_resumed_run_matches_an_uninterrupted_ddp_run(killed, lambda_corpus, tmp_path):
    result, records, _ = killed
    ref_result, ref_records = _fit(_experiment(lambda_corpus[2]), lambda_corpus, str(tmp_path), "ref", tmp_path / "r")
    ref_loss = {r["step"]: r["loss"] for r in ref_records}
    assert [r["step"] for r in ref_records] == list(range(LOG_EVERY, MAX_STEPS + 1, LOG_EVERY))
    for r in records:
        assert r["loss"] == pytest.approx(ref_loss[r["step"]], rel=1e-5), r["step"]
    assert result.metrics["tokens_seen"] == ref_result.metrics["tokens_seen"]
    assert result.metrics["val_loss"] == pytest.approx(ref_result.metrics["val_loss"], rel=1e-5)


def test_damaged_checkpoint_stops_the_run_with_a_clear_error(killed, lambda_corpus, tmp_path):
    result, _, _ = killed
    damaged = Path(result.checkpoint.to_directory(str(tmp_path / "damaged")))
    data = bytearray((damaged / "rank1.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (damaged / "rank1.pt").write_bytes(bytes(data))

    exp = _experiment(lambda_corpus[2], num_workers=1, max_failures=0)
    shards_uri, manifest, _ = lambda_corpus
    trainer = build_trainer(exp, shards_uri, manifest, str(tmp_path), "from_damaged", resume_from=str(damaged))
    with pytest.raises(Exception, match=r"CheckpointError: checkpoint .*damaged is corrupted: rank1\.pt"):
        trainer.fit()
