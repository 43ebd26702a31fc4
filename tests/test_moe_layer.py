"""The MoE layer: dispatch and shared experts against a per-token reference, backends against each
other, capacity drops, router metrics, dead experts, resharding of expert tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from raybio.config import MoEConfig, load_config
from raybio.models.model import BioLM
from raybio.models.moe import MoE, router_metrics
from raybio.models.moe.experts import ExpertShard

D, H = 16, 32


def make_moe(**cfg) -> MoE:
    torch.manual_seed(0)
    moe = MoE(D, H, MoEConfig(**cfg))
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return moe


def swiglu(x, w1, w3, w2):
    return (F.silu(x @ w1) * (x @ w3)) @ w2


def per_token_reference(moe: MoE, x_TD: torch.Tensor) -> torch.Tensor:
    """Token by token: the router's choices, capacity counted in token order, shared experts one by one
    (differentiable: gradients reach the input and every weight, the router's through its gates)."""
    cfg = moe.cfg
    routing = moe.router(x_TD)
    T, k, E = x_TD.shape[0], cfg.top_k, cfg.num_experts
    capacity = math.ceil(cfg.capacity_factor * T * k / E) if cfg.capacity_factor else T * k
    taken = [0] * E
    out = torch.zeros_like(x_TD)
    for t in range(T):
        for g, e in zip(routing.weights_TK[t], routing.experts_TK[t].tolist(), strict=True):  # g keeps its grad
            if taken[e] < capacity:
                taken[e] += 1
                out[t] += g * swiglu(x_TD[t], moe.w1_EDH[e], moe.w3_EDH[e], moe.w2_EHD[e])
        for s in range(cfg.num_shared_experts):
            rows = slice(s * H, (s + 1) * H)
            sh = moe.shared
            out[t] += swiglu(x_TD[t], sh.w1.weight[rows].T, sh.w3.weight[rows].T, sh.w2.weight[:, rows].T)
    return out


@pytest.mark.parametrize(
    "cfg",
    [
        {"router": "softmax", "top_k": 2},
        {"router": "sigmoid", "top_k": 3, "num_shared_experts": 2},
        {"router": "aux_free", "top_k": 1, "num_shared_experts": 1},
        {"router": "softmax", "top_k": 2, "capacity_factor": 0.5},
    ],
    ids=["softmax", "sigmoid+2shared", "auxfree+1shared", "capacity"],
)
@pytest.mark.parametrize("backend", ["torch", "loop"])
def test_moe_equals_per_token_reference(cfg, backend):
    moe = make_moe(num_experts=6, backend=backend, **cfg)
    x = torch.randn(3, 9, D)
    got = moe(x).reshape(-1, D)
    want = per_token_reference(moe, x.reshape(-1, D))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("capacity_factor", [None, 0.5], ids=["dropless-gathers", "capacity-index-add"])
def test_moe_gradients_equal_the_per_token_references(capacity_factor):
    # Dropless, dispatch and combine are gathers in both directions (custom backward); with drops, index_add.
    moe = make_moe(num_experts=6, top_k=2, capacity_factor=capacity_factor)
    x = torch.randn(3, 9, D)
    grads = []
    for forward in (lambda xi: moe(xi).reshape(-1, D), lambda xi: per_token_reference(moe, xi.reshape(-1, D))):
        moe.zero_grad()
        xi = x.clone().requires_grad_()
        y = forward(xi)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        grads.append([xi.grad, *(p.grad for p in moe.parameters())])
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_grouped_and_loop_backends_agree_in_forward_and_gradients():
    torch.manual_seed(1)
    x = torch.randn(1, 5, D)
    outs, grads = [], []
    for backend in ("torch", "loop"):
        moe = make_moe(num_experts=16, top_k=2, backend=backend)  # 10 slots over 16 experts: some get none
        assert moe.backend_name(x) == {"torch": "grouped", "loop": "loop"}[backend]
        xi = x.clone().requires_grad_()
        y = moe(xi)
        (y.sum() + (y**2).sum()).backward()  # .sum() hands the experts an expanded (zero-stride) gradient
        outs.append(y)
        grads.append([xi.grad, *(p.grad for p in moe.parameters())])
    assert (moe.tokens_per_expert == 0).any()
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_grouped_backend_in_bf16_autocast_matches_loop():
    x = torch.randn(2, 16, D)
    ys = []
    for backend in ("torch", "loop"):
        moe = make_moe(num_experts=8, top_k=2, backend=backend)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ys.append(moe(x))
    torch.testing.assert_close(ys[0], ys[1], rtol=2e-2, atol=2e-2)


def test_unaligned_sizes_fall_back_to_the_loop():
    moe = MoE(10, 6, MoEConfig(num_experts=4, top_k=2, backend="torch"))  # 6 floats = 24 bytes: not 16-aligned
    x = torch.randn(1, 5, 10)
    assert moe.backend_name(x) == "loop"
    assert moe(x).shape == x.shape


def test_megablocks_without_cuda_is_a_clear_error():
    pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    moe = make_moe(num_experts=4, top_k=2, backend="megablocks")
    with pytest.raises(ImportError, match=r"raybio\[gpu\]"):
        moe(torch.randn(1, 4, D))
    # auto quietly means torch where MegaBlocks cannot run.
    assert make_moe(num_experts=4, backend="auto").backend_name(torch.randn(4, D)) == "grouped"


def test_flop_counter_counts_grouped_experts():
    moe = make_moe(num_experts=8, top_k=2, num_shared_experts=1, backend="torch")
    x = torch.randn(1, 32, D)
    with FlopCounterMode(display=False) as counter:
        moe(x)
    T = 32
    want = 2 * T * D * 8 + (2 + 1) * T * 3 * 2 * D * H  # router + routed and shared SwiGLUs
    assert counter.get_total_flops() == want


def test_capacity_drops_are_counted_and_reported():
    moe = make_moe(num_experts=4, top_k=1, router="aux_free", capacity_factor=1.0)
    moe.router.expert_bias_E.copy_(torch.tensor([10.0, 0, 0, 0]))  # every token picks expert 0
    x = torch.randn(1, 12, D)
    y = moe(x)
    capacity = math.ceil(1.0 * 12 * 1 / 4)
    # The first `capacity` tokens are served; the rest overflow and get no expert output.
    assert (y[0, :capacity].abs().sum(-1) > 0).all()
    assert (y[0, capacity:] == 0).all()
    assert moe.tokens_per_expert.tolist() == [capacity, 0, 0, 0]
    m = router_metrics(moe)
    assert m["router/layer0/drop_fraction"] == pytest.approx((12 - capacity) / 12)
    assert m["router/layer0/tokens_e0"] == 12  # routed load, before the drop


def test_router_metrics_match_a_hand_computation():
    moe = make_moe(num_experts=4, top_k=2, aux_loss_coef=0.1, z_loss_coef=0.01)
    xs = [torch.randn(1, 10, D), torch.randn(1, 10, D)]
    loads, ents, bal, z = [], [], [], []
    for x in xs:
        moe(x)
        r = moe.router(x.reshape(-1, D))
        loads.append(torch.bincount(r.experts_TK.reshape(-1), minlength=4).double())
        ents.append(-(r.probs_TE * r.probs_TE.log()).sum(-1).mean().item())
        bal.append(r.balance_loss.item())
        z.append(r.z_loss.item())
    m = router_metrics(moe)
    load = (loads[0] + loads[1]) / 2
    for j in range(4):
        assert m[f"router/layer0/tokens_e{j}"] == pytest.approx(load[j].item())
    assert m["router/layer0/max_over_mean_load"] == pytest.approx((load.max() / load.mean()).item())
    assert m["router/layer0/load_cv"] == pytest.approx((load.std(unbiased=False) / load.mean()).item())
    assert m["router/layer0/routing_entropy"] == pytest.approx(sum(ents) / 2, rel=1e-5)
    assert m["router/layer0/aux_loss"] == pytest.approx(sum(bal) / 2, rel=1e-5)
    assert m["router/layer0/z_loss"] == pytest.approx(sum(z) / 2, rel=1e-5)
    assert m["router/layer0/drop_fraction"] == 0.0
    assert m["router/layer0/dead_experts"] == 0.0
    assert router_metrics(moe) == {}  # a new window, with no training pass in it yet


def test_dead_experts_are_those_unused_for_a_whole_window():
    moe = make_moe(num_experts=4, top_k=1, router="aux_free", dead_expert_window=3)
    moe.router.expert_bias_E.copy_(torch.tensor([0.0, 0, 0, -10]))  # expert 3 is never chosen
    x = torch.randn(1, 40, D)
    dead = []
    for _ in range(4):
        moe(x)
        dead.append(router_metrics(moe)["router/layer0/dead_experts"])
    assert dead == [0, 0, 1, 1]  # dead once unused for 3 passes, across metric windows
    moe.router.expert_bias_E.zero_()
    moe.router.expert_bias_E[3] = 10.0  # now everyone picks it: it revives, the others start idling
    moe(x)
    assert router_metrics(moe)["router/layer0/dead_experts"] == 0


def test_expert_tensors_reshard_between_ep_sizes():
    """Full tensors -> EP=2 shards -> gathered -> EP=4 shards: every step keeps the same experts."""
    exp = load_config("tiny", overrides=["model.pattern=A", "model.moe.num_experts=8"])
    torch.manual_seed(0)
    full = BioLM(exp.model, 40)
    state = full.state_dict()

    def sharded(size: int) -> list:
        models = []
        for rank in range(size):
            m = BioLM(exp.model, 40)
            for moe in m.moe_layers():
                moe.shard_experts(ExpertShard(rank, size, None))
            m.load_state_dict(state)
            models.append(m)
        return models

    two = sharded(2)
    assert two[1].moe_layers()[0].w1_EDH.shape[0] == 4
    key = "blocks.0.ffn.experts.w2_EHD"
    gathered = torch.cat([m.state_dict()[key] for m in two])
    torch.testing.assert_close(gathered, state[key])
    state = {**state, key: gathered}
    four = sharded(4)
    torch.testing.assert_close(four[3].state_dict()[key], state[key][6:8])
    # Non-expert weights are untouched by sharding.
    torch.testing.assert_close(
        four[2].state_dict()["blocks.0.ffn.router.gate.weight"], state["blocks.0.ffn.router.gate.weight"]
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_megablocks_backend_equals_native_on_gpu():
    pytest.importorskip("megablocks")
    x = torch.randn(4, 64, 128, device="cuda")
    outs, grads = [], []
    for backend in ("megablocks", "torch"):
        torch.manual_seed(0)
        moe = MoE(128, 256, MoEConfig(num_experts=8, top_k=2, backend=backend)).cuda()
        xi = x.clone().requires_grad_()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = moe(xi)
        y.float().square().sum().backward()
        outs.append(y.float())
        grads.append([xi.grad, moe.w1_EDH.grad, moe.w2_EHD.grad])
    torch.testing.assert_close(outs[0], outs[1], rtol=2e-2, atol=2e-2)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a.float(), b.float(), rtol=5e-2, atol=5e-2)
