"""On one GPU: DeepSpeed ZeRO keeps bf16 weights with fp32 master copies and follows DDP's bf16-autocast
trajectory within bf16 tolerance; its checkpoint restores. Skipped without CUDA."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist

from raybio.config import load_config
from raybio.models.model import BioLM
from raybio.train import checkpoint
from raybio.train.engine import build_engine

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.fixture(scope="module")
def single_process_group():
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29561", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    dist.init_process_group("nccl", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _train(engine_name: str, stage: int, steps: int = 6):
    overrides = [
        "model.d_model=128",
        "model.n_layers=2",
        "model.pattern=A",
        "model.max_seq_len=64",
        f"train.engine={engine_name}",
        f"train.zero_stage={stage}",
    ]
    exp = load_config("tiny", overrides=overrides)
    torch.manual_seed(0)
    engine = build_engine(BioLM(exp.model, 64), exp, torch.device("cuda", 0))
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        tokens = torch.randint(4, 64, (8, 64), generator=gen).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = engine.model(tokens, tokens)
        engine.backward(out.loss)
        engine.step()
        losses.append(out.lm_loss.item())
    return engine, losses


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_deepspeed_bf16_follows_ddp_on_gpu(single_process_group, stage, tmp_path):
    _, ddp = _train("ddp", 0)
    engine, zero = _train("deepspeed", stage)
    assert next(engine.raw_model.parameters()).dtype == torch.bfloat16
    assert zero == pytest.approx(ddp, rel=2e-2)  # bf16 weights vs fp32 weights under bf16 autocast
    assert zero[-1] < zero[0]
    checkpoint.write(tmp_path, engine, checkpoint.TrainState(step=6), {}, rank=0, world=1)
    fresh, _ = _train("deepspeed", stage, steps=0)
    checkpoint.read(tmp_path, fresh, rank=0, world=1)
    before, after = engine.full_state_dict(), fresh.full_state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
