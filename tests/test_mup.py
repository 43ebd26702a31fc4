"""µP: a learning rate tuned at a small width transfers to a 4x wider model; under the standard
parameterisation the optimum moves. Plus the parameterisation's own rules."""

from __future__ import annotations

import pytest
import torch

from raybio.config import load_config
from raybio.models import mup
from raybio.models.model import BioLM
from raybio.train.engine import build_engine

VOCAB, SEQ, BATCH, STEPS = 32, 32, 16, 60
BASE, WIDE = 16, 64  # head_dim 8 at both widths: width grows by adding heads
LR_EXPONENTS = range(-8, -2)  # lr = 2**e


def _exp(width: int, lr: float = 1e-3, mup_base: int | None = None, **model):
    overrides = {
        "model": {
            "d_model": width,
            "n_heads": width // 8,
            "n_layers": 2,
            "pattern": "D",
            "objective": "ntp",
            "max_seq_len": SEQ,
            "base_d_model": mup_base,
            **model,
        },
        # Clipping and weight decay off: the comparison is about the learning rate alone.
        "train": {"lr": lr, "warmup_steps": 5, "max_steps": STEPS, "weight_decay": 0.0, "grad_clip": 1e9},
    }
    return load_config("tiny", overrides=overrides)


def _markov_batches(n: int, seed: int) -> list[torch.Tensor]:
    """Sequences from a fixed random bigram chain with peaked transitions: learnable in tens of steps."""
    transitions = torch.softmax(3.0 * torch.randn(VOCAB, VOCAB, generator=torch.Generator().manual_seed(1234)), -1)
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        x = torch.zeros(BATCH, SEQ + 1, dtype=torch.long)
        x[:, 0] = torch.randint(0, VOCAB, (BATCH,), generator=gen)
        for t in range(1, SEQ + 1):
            x[:, t] = torch.multinomial(transitions[x[:, t - 1]], 1, generator=gen).squeeze(1)
        batches.append(x)
    return batches


@pytest.fixture(scope="module")
def sweeps():
    """Eval loss after STEPS steps for every LR: the base width, the wide model under SP and under µP."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matmuls: one thread is faster and the same on any machine
    train, held_out = _markov_batches(STEPS, seed=0), _markov_batches(4, seed=99)

    def final_loss(exp) -> float:
        torch.manual_seed(0)
        engine = build_engine(BioLM(exp.model, VOCAB), exp, torch.device("cpu"))
        for x in train:
            out = engine.model(x[:, :-1], x[:, 1:])
            engine.backward(out.loss)
            engine.step()
        with torch.no_grad():
            return sum(engine.model(x[:, :-1], x[:, 1:]).lm_loss.item() for x in held_out) / len(held_out)

    try:
        return {
            name: {e: final_loss(_exp(width, 2.0**e, base)) for e in LR_EXPONENTS}
            for name, width, base in [("base", BASE, None), ("sp", WIDE, None), ("mup", WIDE, BASE)]
        }
    finally:
        torch.set_num_threads(threads)


def _argmin(losses: dict[int, float]) -> int:
    return min(losses, key=losses.get)


def test_learning_rate_tuned_small_transfers_under_mup_not_sp(sweeps):
    table = "\n".join(f"{n:>4}: " + " ".join(f"{v:.3f}" for v in s.values()) for n, s in sweeps.items())
    print(f"\nloss after {STEPS} steps at lr = 2^{list(LR_EXPONENTS)}\n{table}")
    best = _argmin(sweeps["base"])
    # The optimum of the wide model stays within a factor 2 of the small one's under µP ...
    assert abs(_argmin(sweeps["mup"]) - best) <= 1
    # ... and moves down by at least 4x under the standard parameterisation.
    assert _argmin(sweeps["sp"]) <= best - 2
    # Using the small model's LR at the wide width: µP loses < 2% to its own optimum, SP > 10%.
    mup_opt, sp_opt = min(sweeps["mup"].values()), min(sweeps["sp"].values())
    assert sweeps["mup"][best] < 1.02 * mup_opt
    assert sweeps["sp"][best] > 1.10 * sp_opt
    # The wide µP model is at least as good as the small one at the shared optimum (width helps).
    assert mup_opt <= min(sweeps["base"].values())


def test_mup_at_the_base_width_is_the_standard_parameterisation():
    torch.manual_seed(0)
    sp = BioLM(_exp(BASE).model, VOCAB)
    torch.manual_seed(0)
    same = BioLM(_exp(BASE, mup_base=BASE).model, VOCAB)
    x = torch.randint(0, VOCAB, (2, SEQ))
    assert torch.equal(sp(x).logits, same(x).logits)
    groups = mup.param_groups(same, _exp(BASE, mup_base=BASE).model, lr=1e-3, weight_decay=0.1)
    assert {g["name"]: g["lr"] for g in groups} == {"matrix": 1e-3, "vector": 1e-3}


def test_mup_scales_hidden_matrices_and_logits_but_not_embeddings():
    cfg = _exp(WIDE, mup_base=BASE).model
    hidden = mup.hidden_params(BioLM(cfg, VOCAB), cfg)
    assert hidden and all(
        n.startswith("blocks.") and n.endswith(("wqkv.weight", "wo.weight", "w1.weight", "w2.weight", "w3.weight"))
        for n in hidden
    )
    assert "embed.weight" not in hidden
    groups = {g["name"]: g for g in mup.param_groups(BioLM(cfg, VOCAB), cfg, lr=1e-3, weight_decay=0.1)}
    assert groups["hidden"]["lr"] == pytest.approx(1e-3 / 4) and groups["hidden"]["weight_decay"] == pytest.approx(0.4)
    assert groups["matrix"]["lr"] == 1e-3  # the (tied) embedding
    # Init: hidden matrices std / sqrt(m); output logits x 1/m against the same weights without the hook.
    torch.manual_seed(0)
    sp = BioLM(_exp(WIDE).model, VOCAB)
    torch.manual_seed(0)
    mp = BioLM(cfg, VOCAB)
    assert mp.blocks[0].mixer.wqkv.weight.std().item() == pytest.approx(sp.blocks[0].mixer.wqkv.weight.std().item() / 2)
    assert torch.equal(mp.embed.weight, sp.embed.weight)
    x_BLD = torch.randn(2, 5, WIDE)
    assert torch.allclose(mp.head(x_BLD), sp.head(x_BLD) / 4)
