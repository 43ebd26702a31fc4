"""DeepSpeed ZeRO 1/2/3 on 2 CPU Ray Train workers (gloo) takes the same steps as DDP, also with the
experts sharded over the two workers (expert parallelism), and each engine's checkpoint restores
into a fresh engine that continues exactly."""

from __future__ import annotations

import json
import sys

import helpers
import pytest
import ray.cloudpickle
import ray.train
from ray.train.torch import TorchTrainer

from raybio.models.model import BioLM

# (engine, ZeRO stage, moe.ep_size)
ENGINES = [("ddp", 0, 1), ("deepspeed", 1, 1), ("deepspeed", 2, 1), ("deepspeed", 3, 1), ("deepspeed", 2, 2)]
NAMES = [f"{e}{z}_ep{ep}" for e, z, ep in ENGINES]
STEPS, MORE = 4, 2


def _engines_worker(config: dict) -> None:
    """Every engine trains the same model on the same per-rank batches; rank 0 writes the losses."""
    from pathlib import Path

    import torch
    import torch.distributed as dist

    from raybio.config import load_config
    from raybio.train import checkpoint
    from raybio.train.engine import build_engine
    from raybio.train.state import TrainState, rng_state, set_rng_state

    rank, world = dist.get_rank(), dist.get_world_size()
    out: dict = {}
    for (engine_name, stage, ep), name in zip(config["engines"], NAMES, strict=True):
        engine_overrides = [f"train.engine={engine_name}", f"train.zero_stage={stage}", f"model.moe.ep_size={ep}"]
        exp = load_config("tiny", overrides=config["overrides"] + engine_overrides)

        def build(exp=exp):
            torch.manual_seed(0)
            return build_engine(BioLM(exp.model, helpers.ENGINE_VOCAB), exp, torch.device("cpu"))

        engine, gen = build(), torch.Generator().manual_seed(100 + rank)  # each rank its own batches
        losses = helpers.train_random_batches(engine, gen, STEPS)
        ckpt = Path(config["dir"]) / name
        ckpt.mkdir(exist_ok=True)
        rank_state = {"rng": rng_state(gen)}
        checkpoint.write(ckpt, engine, TrainState(step=STEPS, world_size=world), rank_state, rank, world, files={})
        continued = helpers.train_random_batches(engine, gen, MORE)

        fresh = build()
        _, rank_state = checkpoint.read(ckpt, fresh, rank, world)
        fresh_gen = torch.Generator()
        set_rng_state(rank_state["rng"], fresh_gen)
        resumed = helpers.train_random_batches(fresh, fresh_gen, MORE)
        weights = engine.full_state_dict()
        out[name] = {
            "losses": losses + continued,
            "resumed": resumed,
            "lr": engine.lr,
            "weight_sum": float(sum(v.double().sum() for v in weights.values())),
            "n_files": len(checkpoint.verify(ckpt)["files"]),
        }
    if rank == 0:
        Path(config["dir"], "result.json").write_text(json.dumps(out))


@pytest.fixture(scope="module")
def engine_runs(ray_local, tmp_path_factory):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.cloudpickle.register_pickle_by_value(helpers)  # workers cannot import tests/
    out = tmp_path_factory.mktemp("engines")
    overrides = [
        "model.d_model=32",
        "model.n_layers=2",
        "model.n_heads=2",
        "model.pattern=A",
        "model.moe.num_experts=4",
        "model.max_seq_len=16",
        "train.num_workers=2",
        "train.warmup_steps=2",
        "train.max_steps=10",
    ]
    trainer = TorchTrainer(
        _engines_worker,
        train_loop_config={"engines": ENGINES, "overrides": overrides, "dir": str(out)},
        scaling_config=ray.train.ScalingConfig(num_workers=2),
        run_config=ray.train.RunConfig(storage_path=str(out / "ray"), name="engines"),
    )
    trainer.fit()
    return json.loads((out / "result.json").read_text())


@pytest.mark.parametrize("name", NAMES[1:])
def test_zero_stage_takes_the_same_steps_as_ddp(engine_runs, name):
    ddp, zero = engine_runs[NAMES[0]], engine_runs[name]
    assert len(zero["losses"]) == STEPS + MORE
    assert zero["losses"] == pytest.approx(ddp["losses"], rel=1e-4)
    assert zero["lr"] == pytest.approx(ddp["lr"])
    assert zero["weight_sum"] == pytest.approx(ddp["weight_sum"], rel=1e-4)
    # It learns: the same random-token task, so only the trend is meaningful, not the value.
    assert zero["losses"][-1] < zero["losses"][0]


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_restores_into_a_fresh_engine(engine_runs, name):
    run = engine_runs[name]
    assert run["resumed"] == pytest.approx(run["losses"][STEPS:], rel=1e-5)
    # ZeRO partitions optimizer state per rank: more files than DDP's single copy.
    assert run["n_files"] >= (4 if name.startswith("ddp") else 6)
