"""Real Ray Train: two CPU workers stream the prepared genome and learn."""

from __future__ import annotations

from raybio.config import deep_merge, validate
from raybio.train.ray_trainer import build_trainer


def test_two_worker_trainer_learns_below_the_untrained_loss(ray_local, lambda_corpus, tmp_path):
    shards_uri, manifest, exp = lambda_corpus
    exp = validate(
        deep_merge(
            exp.model_dump(), {"train": {"num_workers": 2, "max_steps": 40, "lr": 3e-3}, "model": {"pattern": "A"}}
        )
    )
    result = build_trainer(exp, shards_uri, manifest, str(tmp_path), "two_workers").fit()

    m = result.metrics
    assert m["world_size"] == 2 and m["step"] == 40
    assert m["val_loss"] < m["init_val_loss"] - 0.05
    # Both workers' tokens are counted: 40 steps x 2 workers x 8 sequences x 64 tokens.
    assert m["tokens_seen"] == 40 * 2 * 8 * 64
    assert m["params_active"] < m["params_total"]
    for key in ("tokens_per_s", "step_time_s", "data_wait_s", "achieved_flops_per_s", "peak_memory_bytes"):
        assert m[key] > 0, key
    assert "mfu" not in m  # no GPU: no datasheet peak to divide by
    assert result.checkpoint is not None
    with result.checkpoint.as_directory() as d:
        state = __import__("torch").load(f"{d}/model.pt")
    assert any("w1_EDH" in k for k in state)
    # A one-machine cluster has no node to drain, so raybio starts Ray Train without its preemption watcher.
    from ray.util.state import list_actors

    this_cluster = ray_local.get_runtime_context().gcs_address  # not any other Ray on this machine
    actors = {a.class_name for a in list_actors(address=this_cluster, limit=1000)}
    assert {"TrainController", "RayTrainWorker"} <= actors and "PreemptionWatcher" not in actors
