"""A node holding both training workers is removed from a 2-node `ray.cluster_utils.Cluster`; once a
replacement node joins, the run resumes from its last checkpoint and finishes with the loss
trajectory of an uninterrupted run. Runs in a subprocess: it needs a cluster of its own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration  # starts Ray in subprocesses

DRIVER = r"""
import json, os, sys, threading, time
from pathlib import Path

import ray
import ray.cloudpickle
import ray.train
from ray.cluster_utils import Cluster

from raybio.config import load_config
from raybio.data.prepare import prepare
from raybio.train.ray_trainer import build_trainer
from raybio.tune.args import SMOKE

out = Path(sys.argv[1])
LOG = out / "reports.jsonl"


class ReportLog(ray.train.UserCallback):
    def after_report(self, run_context, metrics, checkpoint):
        m = metrics[0]
        rec = {"t": time.time(), "checkpoint": checkpoint is not None}
        rec.update({k: m.get(k) for k in ("step", "loss", "resumed_from_step", "restore_time_s", "tokens_seen")})
        with open(LOG, "a") as f:
            f.write(json.dumps(rec) + "\n")


def reports():
    return [json.loads(line) for line in LOG.read_text().splitlines()] if LOG.exists() else []


# The head keeps the driver, the Train controller (pinned to the driver's node) and data reads;
# the two 1-CPU training workers only fit on the worker node.
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
doomed = cluster.add_node(num_cpus=2)
ray.init(address=cluster.address)
cluster.wait_for_nodes()

exp = load_config("tiny", overrides=SMOKE + [
    "train.num_workers=2", "train.max_steps=40", "train.log_every=2", "train.checkpoint_every=8",
    "train.warmup_steps=4", "train.max_failures=2", "model.pattern=A",
])
manifest = prepare(exp.data, str(out / "corpus"), progress=False)
events = {}


def chaos():
    # On the main thread (Cluster.add_node installs signal handlers) while the run trains in another.
    while not any(r["step"] >= 12 for r in reports()):
        time.sleep(0.2)
    events["removed"] = time.time()
    cluster.remove_node(doomed)
    time.sleep(5)  # the run notices, tears down, and waits for two CPUs
    events["added"] = time.time()
    cluster.add_node(num_cpus=2)


ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
runs = {}
for name, fault in (("reference", False), ("node_lost", True)):
    LOG = out / f"{name}.jsonl"
    trainer = build_trainer(exp, str(out / "corpus"), manifest, str(out / "runs"), name, [ReportLog()])
    results = []
    thread = threading.Thread(target=lambda: results.append(trainer.fit()))
    thread.start()
    if fault:
        chaos()
    thread.join()
    final = {k: results[0].metrics[k] for k in ("step", "tokens_seen", "val_loss")}
    runs[name] = {"records": reports(), "final": final}
(out / "result.json").write_text(json.dumps({"runs": runs, "events": events}))
ray.shutdown()
cluster.shutdown()
"""


@pytest.mark.slow
def test_removed_node_run_resumes_on_a_new_node(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, timeout=600)
    result = json.loads((tmp_path / "result.json").read_text())
    ref, lost, events = result["runs"]["reference"], result["runs"]["node_lost"], result["events"]

    before = [r for r in lost["records"] if r["resumed_from_step"] == 0]
    after = [r for r in lost["records"] if r["resumed_from_step"] != 0]
    last_checkpoint = max(r["step"] for r in before if r["checkpoint"])
    assert lost["final"] == pytest.approx(ref["final"], rel=1e-5)
    assert {r["resumed_from_step"] for r in after} == {last_checkpoint}
    assert [r["step"] for r in after] == list(range(last_checkpoint + 2, 41, 2))
    ref_loss = {r["step"]: r["loss"] for r in ref["records"]}
    for r in lost["records"]:
        assert r["loss"] == pytest.approx(ref_loss[r["step"]], rel=1e-5), r["step"]
    figures = {
        "steps_lost": before[-1]["step"] - last_checkpoint,
        "resume_after_node_added_s": round(after[0]["t"] - events["added"], 1),
        "node_removed_to_resumed_s": round(after[0]["t"] - events["removed"], 1),
    }
    print(f"\n[fault] removed node: {json.dumps(figures)}")
