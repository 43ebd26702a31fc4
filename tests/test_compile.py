"""`train.compile`: a compiled BioLM computes what the eager one computes — loss and every gradient, for each
block type (MoE with grouped experts through the `raybio::grouped_mm` custom op, HyenaLite's FFT path) — and a
compiled run's checkpoints load into an uncompiled model."""

from __future__ import annotations

import pytest
import torch
from helpers import ENGINE_VOCAB as VOCAB
from helpers import small_exp, train_random_batches

from raybio.config import ConfigError, load_config
from raybio.models.model import BioLM
from raybio.models.moe import moe_layers
from raybio.models.moe.backends import grouped_mm
from raybio.train import checkpoint
from raybio.train.engine import COMPILE_MIN_STEPS, build_engine, compile_blocks, compile_enabled
from raybio.train.state import TrainState, rng_state


def twins(pattern: str, objective: str) -> tuple[BioLM, BioLM]:
    """The same model twice (same weights); the second with its blocks compiled."""
    exp = small_exp(pattern, objective)
    torch.manual_seed(0)
    eager = BioLM(exp.model, VOCAB)
    compiled = BioLM(exp.model, VOCAB)
    compiled.load_state_dict(eager.state_dict())
    compile_blocks(compiled)
    return eager, compiled


def loss_and_grads(model: BioLM, ids: torch.Tensor, objective: str) -> tuple[torch.Tensor, dict]:
    inputs, labels = (ids[:, :-1], ids[:, 1:]) if objective == "ntp" else (ids, ids.where(ids % 3 == 0, -100))
    model.zero_grad(set_to_none=True)
    out = model(inputs, labels)
    out.loss.backward()
    return out.loss.detach(), {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize(("pattern", "objective"), [("D", "mlm"), ("A", "ntp"), ("H", "ntp"), ("AHHH", "mlm")])
def test_a_compiled_model_matches_eager_in_loss_and_every_gradient(pattern, objective):
    eager, compiled = twins(pattern, objective)
    ids = torch.randint(4, VOCAB, (4, 65), generator=torch.Generator().manual_seed(1))
    for layer in moe_layers(compiled):  # A blocks run the grouped experts, the op a compiled graph keeps whole
        assert layer.backend_name(ids.float()) == "grouped"
    want_loss, want = loss_and_grads(eager, ids, objective)
    got_loss, got = loss_and_grads(compiled, ids, objective)
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-5, atol=1e-6)
    assert got.keys() == want.keys() and all(g is not None for g in got.values())
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=name)


def test_the_grouped_mm_op_matches_a_per_expert_matmul_forward_and_backward():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(10, 8, generator=gen, requires_grad=True)
    b = torch.randn(3, 8, 4, generator=gen, requires_grad=True)
    offs = torch.tensor([4, 4, 10], dtype=torch.int32)  # expert 1 gets no rows
    g = torch.randn(10, 4, generator=gen)
    (grouped_mm(a, b, offs) * g).sum().backward()
    ref_a, ref_b = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    ref = torch.cat([ref_a[0:4] @ ref_b[0], ref_a[4:4] @ ref_b[1], ref_a[4:10] @ ref_b[2]])
    (ref * g).sum().backward()
    torch.testing.assert_close(a.grad, ref_a.grad)
    torch.testing.assert_close(b.grad, ref_b.grad)
    assert torch.equal(b.grad[1], torch.zeros(8, 4))
    torch.library.opcheck(grouped_mm, (a.detach(), b.detach(), offs))


def test_a_compiled_runs_checkpoint_loads_into_an_uncompiled_model(tmp_path):
    exp = load_config(
        "tiny",
        overrides={
            "model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "pattern": "AH", "max_seq_len": 16},
            "train": {"max_steps": 20, "warmup_steps": 2, "compile": True},
            "data": {"seq_len": 16},
        },
    )
    torch.manual_seed(0)
    engine = build_engine(BioLM(exp.model, VOCAB), exp, torch.device("cpu"))
    gen = torch.Generator().manual_seed(7)
    train_random_batches(engine, gen, 2)
    state = TrainState(step=2, metrics={"initial": {}})
    checkpoint.write(tmp_path, engine, state, {"rng": rng_state(gen), "tokens_seen": 0}, rank=0, world=1, files={})
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert not [k for k in saved if "_orig_mod" in k]
    plain = BioLM(exp.model, VOCAB)
    plain.load_state_dict(saved)  # strict: every key matches the uncompiled module tree
    eager_exp = exp.model_copy(update={"train": exp.train.model_copy(update={"compile": False})})
    uncompiled = build_engine(BioLM(exp.model, VOCAB), eager_exp, torch.device("cpu"))
    checkpoint.read(tmp_path, uncompiled, rank=0, world=1)
    for (name, p), q in zip(engine.raw_model.named_parameters(), plain.parameters(), strict=True):
        assert torch.equal(p, q), name
    ids = torch.randint(4, VOCAB, (2, 16), generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(uncompiled.raw_model(ids).logits, engine.raw_model(ids).logits)


def test_compile_auto_compiles_long_ddp_runs_only_and_true_needs_ddp():
    tiny, long = load_config("tiny").train, load_config("omni-20m").train
    assert tiny.compile == long.compile == "auto"
    assert not compile_enabled(tiny) and tiny.max_steps < COMPILE_MIN_STEPS  # 200 steps: the warm-up would not pay
    assert compile_enabled(long) and long.max_steps >= COMPILE_MIN_STEPS
    assert not compile_enabled(long.model_copy(update={"engine": "deepspeed"}))
    assert not compile_enabled(long.model_copy(update={"compile": False}))
    assert compile_enabled(tiny.model_copy(update={"compile": True}))
    with pytest.raises(ConfigError, match=r"train\.compile=true needs train\.engine=ddp"):
        load_config("tiny", overrides=["train.engine=deepspeed", "train.compile=true"])
