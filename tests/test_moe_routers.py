"""Each router against a plain per-token Python reference, and the aux-loss-free bias update."""

from __future__ import annotations

import math

import pytest
import torch

from raybio.config import MoEConfig
from raybio.models.moe import aux_free_routers, update_expert_biases
from raybio.models.moe.router import build_router

D = 12


def make_router(**cfg):
    torch.manual_seed(0)
    router = build_router(D, MoEConfig(**cfg))
    torch.nn.init.normal_(router.gate.weight, std=0.5)
    return router


def top_k(scores: list[float], k: int) -> list[int]:
    return sorted(range(len(scores)), key=lambda e: -scores[e])[:k]


def reference(router, x_TD: torch.Tensor, bias: list[float] | None = None):
    """Route token by token with Python floats; returns (experts, gates, balance_loss, z_loss)."""
    cfg = router.cfg
    W = router.gate.weight.tolist()
    experts, gates, probs, lse = [], [], [], []
    for x in x_TD.tolist():
        logits = [sum(w * v for w, v in zip(row, x, strict=True)) for row in W]
        if cfg.router == "softmax":
            m = max(logits)
            z = sum(math.exp(v - m) for v in logits)
            s = [math.exp(v - m) / z for v in logits]
            lse.append(m + math.log(z))
        else:
            s = [1 / (1 + math.exp(-v)) for v in logits]
        choose = [a + b for a, b in zip(s, bias, strict=True)] if bias else s
        chosen = top_k(choose, cfg.top_k)
        g = [s[e] for e in chosen]
        # route_norm "auto": softmax renormalises from k = 2 on (Switch keeps p at k = 1), sigmoid always.
        renorm = cfg.route_norm if cfg.route_norm != "auto" else cfg.router != "softmax" or cfg.top_k > 1
        if renorm:
            g = [v / sum(g) for v in g]
        experts.append(chosen)
        gates.append(g)
        probs.append(s)
    E, T, k = cfg.num_experts, len(experts), cfg.top_k
    frac = [sum(e in row for row in experts) / (T * k) for e in range(E)]
    mean_p = [sum(p[e] for p in probs) / T for e in range(E)]
    balance = E * sum(f * p for f, p in zip(frac, mean_p, strict=True))
    z = sum(v * v for v in lse) / T if lse else 0.0
    return experts, gates, balance, z


def check(router, x_TD, bias=None):
    out = router(x_TD)
    experts, gates, balance, z = reference(router, x_TD, bias)
    assert out.experts_TK.tolist() == experts
    torch.testing.assert_close(out.weights_TK, torch.tensor(gates), rtol=1e-5, atol=1e-6)
    return out, balance, z


@pytest.mark.parametrize("k", [1, 2, 3])
def test_softmax_router_matches_reference_with_switch_and_z_losses(k):
    router = make_router(num_experts=6, top_k=k, aux_loss_coef=0.1, z_loss_coef=0.01)
    x = torch.randn(20, D)
    out, balance, z = check(router, x)
    assert out.balance_loss.item() == pytest.approx(balance, rel=1e-5)
    assert out.z_loss.item() == pytest.approx(z, rel=1e-5)
    assert out.aux_loss.item() == pytest.approx(0.1 * balance + 0.01 * z, rel=1e-5)
    # The losses train the gate: they carry a gradient.
    out.aux_loss.backward()
    assert router.gate.weight.grad.abs().sum() > 0


def test_softmax_router_adds_no_loss_in_eval_and_jitters_only_in_training():
    router = make_router(num_experts=6, top_k=2, jitter=0.5)
    x = torch.randn(50, D)
    router.eval()
    out = router(x)
    assert out.aux_loss.item() == 0.0
    check(router, x)  # eval: no jitter, exactly the reference
    router.train()
    assert router(x).experts_TK.tolist() != out.experts_TK.tolist()  # heavy jitter changes some choices


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("k", [1, 2])
def test_sigmoid_router_matches_reference(normalize, k):
    router = make_router(num_experts=5, top_k=k, router="sigmoid", route_norm=normalize)
    out, _, _ = check(router, torch.randn(16, D))
    assert out.aux_loss.item() == 0.0
    if normalize:
        torch.testing.assert_close(out.weights_TK.sum(-1), torch.ones(16))


def test_aux_free_bias_chooses_experts_but_not_gates():
    router = make_router(num_experts=5, top_k=2, router="aux_free")
    bias = [0.0, 0.3, -0.2, 0.05, 0.0]
    router.expert_bias_E.copy_(torch.tensor(bias))
    x = torch.randn(30, D)
    out, _, _ = check(router, x, bias)
    plain, _, _, _ = reference(router, x)
    assert out.experts_TK.tolist() != plain  # the bias did change some choices
    assert out.aux_loss.item() == 0.0


def test_aux_free_bias_moves_toward_balance_once_per_step():
    router = make_router(num_experts=4, top_k=1, router="aux_free", bias_update_rate=0.01)
    x = torch.randn(64, D)
    load = torch.bincount(router(x).experts_TK.reshape(-1), minlength=4).float()
    update_expert_biases(aux_free_routers(router))
    want = 0.01 * torch.sign(load.mean() - load)
    torch.testing.assert_close(router.expert_bias_E, want)
    assert (router.expert_bias_E[load > load.mean()] < 0).all()


def test_aux_free_bias_update_is_the_same_with_gradient_accumulation():
    """Two micro-batches then one step == one batch of both: counts accumulate until the update."""
    whole = make_router(num_experts=4, top_k=2, router="aux_free", bias_update_rate=0.01)
    accum = make_router(num_experts=4, top_k=2, router="aux_free", bias_update_rate=0.01)
    for _ in range(3):  # three optimizer steps
        x = torch.randn(40, D)
        whole(x)
        update_expert_biases(aux_free_routers(whole))
        accum(x[:15])
        accum(x[15:])
        assert accum.pending_load_E.sum().item() == 40 * 2  # both micro-batches' slots await the update
        update_expert_biases(aux_free_routers(accum))
        torch.testing.assert_close(accum.expert_bias_E, whole.expert_bias_E)
    # Eval passes do not count toward balance.
    accum.eval()
    accum(torch.randn(40, D))
    before = accum.expert_bias_E.clone()
    update_expert_biases(aux_free_routers(accum))
    torch.testing.assert_close(accum.expert_bias_E, before)


def test_aux_free_biases_of_all_layers_step_with_the_optimizer_in_one_all_reduce(monkeypatch):
    import socket

    import torch.distributed as dist

    from raybio.config import load_config
    from raybio.models.model import BioLM
    from raybio.models.moe import balance
    from raybio.train.engine import build_optimizer

    exp = load_config("tiny", overrides=["model.pattern=A", "model.n_layers=3", "model.moe.router=aux_free",
                                         "model.moe.num_experts=4", "model.moe.top_k=1"])  # fmt: skip
    model = BioLM(exp.model, 40)
    optimizer = build_optimizer(model, exp)  # registers the bias step as a step pre-hook
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    calls = []
    real = dist.all_reduce
    monkeypatch.setattr(balance.dist, "all_reduce", lambda t, *a, **k: (calls.append(t.numel()), real(t, *a, **k)))
    try:
        x = torch.randint(0, 40, (4, 32))
        model(x, x).loss.backward()
        optimizer.step()
    finally:
        dist.destroy_process_group()
    assert calls == [3 * 4]  # every layer's loads in one collective
    biases = [r.expert_bias_E for r in aux_free_routers(model)]
    assert len(biases) == 3 and all(b.abs().sum() > 0 for b in biases)
    assert all(r.pending_load_E is None for r in aux_free_routers(model))
