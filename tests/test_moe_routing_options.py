"""The routing options of today's MoE models, each checked against a plain per-token reference.

The references loop over tokens and experts with Python lists, as the papers describe the rule,
so they share no code (and no vectorisation trick) with raybio/models/moe/router.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from raybio.config import ConfigError, MoEConfig, load_config
from raybio.models.moe.router import build_router
from raybio.tune.space import ROUTERS, trial_experiment

D = 16


def _router(**fields):
    torch.manual_seed(0)
    router = build_router(D, MoEConfig(**fields)).eval()
    x_TD = torch.randn(24, D)
    return router, x_TD


def _scores(router, x_TD, kind: str) -> list[list[float]]:
    logits = (x_TD.double() @ router.gate.weight.double().T).tolist()
    if kind == "softmax":
        return [[math.exp(v) / sum(math.exp(u) for u in row) for v in row] for row in logits]
    return [[1 / (1 + math.exp(-v)) for v in row] for row in logits]


def _reference(scores, top_k, *, n_group=None, topk_group=None, renormalise=True, scale=1.0, choice=None):
    """Per token: allowed groups (by the sum of each group's two best choice scores), then top-k, then gates."""
    choice = choice or scores
    out = []
    for s, c in zip(scores, choice, strict=True):
        E = len(s)
        allowed = list(range(E))
        if n_group:
            size = E // n_group
            groups = [list(range(g * size, (g + 1) * size)) for g in range(n_group)]
            group_score = [sum(sorted((c[e] for e in grp), reverse=True)[:2]) for grp in groups]
            best = sorted(range(n_group), key=lambda g: -group_score[g])[:topk_group]
            allowed = [e for g in best for e in groups[g]]
        chosen = sorted(allowed, key=lambda e: -c[e])[:top_k]
        gates = [s[e] for e in chosen]
        if renormalise:
            gates = [g / sum(gates) for g in gates]
        out.append({e: g * scale for e, g in zip(chosen, gates, strict=True)})
    return out


def _as_dicts(routing) -> list[dict[int, float]]:
    return [
        dict(zip(e, w, strict=True))
        for e, w in zip(routing.experts_TK.tolist(), routing.weights_TK.tolist(), strict=True)
    ]


def _assert_same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w)
        for e in w:
            assert g[e] == pytest.approx(w[e], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(("route_norm", "renormalise"), [("auto", True), (True, True), (False, False)])
def test_softmax_top2_renormalises_by_default_and_keeps_raw_probabilities_with_route_norm_off(route_norm, renormalise):
    router, x = _router(num_experts=8, top_k=2, route_norm=route_norm)
    want = _reference(_scores(router, x, "softmax"), 2, renormalise=renormalise)
    _assert_same(_as_dicts(router(x)), want)


def test_softmax_top1_keeps_p_by_default_and_gives_weight_one_with_route_norm_on():
    for route_norm in ("auto", False):  # Switch
        router, x = _router(num_experts=8, top_k=1, route_norm=route_norm)
        _assert_same(_as_dicts(router(x)), _reference(_scores(router, x, "softmax"), 1, renormalise=False))
    router, x = _router(num_experts=8, top_k=1, route_norm=True)  # Mixtral's rule at k = 1
    got = _as_dicts(router(x))
    _assert_same(got, _reference(_scores(router, x, "softmax"), 1, renormalise=True))
    assert all(list(g.values()) == [1.0] for g in got)


@pytest.mark.parametrize("kind", ["sigmoid", "aux_free"])
@pytest.mark.parametrize("k", [1, 2])
def test_sigmoid_routers_renormalise_by_default_at_any_k_and_keep_raw_scores_with_route_norm_off(kind, k):
    for route_norm, renormalise in (("auto", True), (False, False)):
        router, x = _router(num_experts=8, top_k=k, router=kind, route_norm=route_norm)
        want = _reference(_scores(router, x, "sigmoid"), k, renormalise=renormalise)
        _assert_same(_as_dicts(router(x)), want)


# Configs written before route_norm, and what the old fields meant (docs/moe.md, "Routing options").
LEGACY = [
    ({"top_k": 2, "norm_topk_prob": True, "top1_gate": "switch", "normalize_scores": True}, "auto"),
    ({"top_k": 2, "norm_topk_prob": False}, False),
    ({"top_k": 2, "top1_gate": "mixtral"}, "auto"),  # top1_gate acted at k = 1 only
    ({"top_k": 1, "norm_topk_prob": False}, "auto"),  # norm_topk_prob acted at k > 1 only
    ({"top_k": 1, "top1_gate": "mixtral"}, True),
    ({"router": "sigmoid", "normalize_scores": False}, False),
    ({"router": "aux_free", "top_k": 1, "normalize_scores": True}, "auto"),
]


@pytest.mark.parametrize(("old", "route_norm"), LEGACY)
def test_configs_written_before_route_norm_keep_their_meaning(old, route_norm):
    cfg = MoEConfig.model_validate({"num_experts": 8, **old})
    assert cfg.route_norm == route_norm
    assert not {"norm_topk_prob", "top1_gate", "normalize_scores"} & set(cfg.model_dump())


@pytest.mark.parametrize("kind", ["softmax", "sigmoid", "aux_free"])
def test_routed_scaling_factor_multiplies_every_routers_gates(kind):
    router, x = _router(num_experts=8, top_k=2, router=kind, routed_scaling_factor=2.5)
    scores = _scores(router, x, "softmax" if kind == "softmax" else "sigmoid")
    _assert_same(_as_dicts(router(x)), _reference(scores, 2, scale=2.5))


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_group_limited_routing_picks_only_inside_the_best_groups(kind):
    router, x = _router(num_experts=8, top_k=3, router=kind, n_group=4, topk_group=2)
    scores = _scores(router, x, kind)
    _assert_same(_as_dicts(router(x)), _reference(scores, 3, n_group=4, topk_group=2))
    # The restriction bites: unrestricted top-3 differs for some token.
    assert _reference(scores, 3) != _reference(scores, 3, n_group=4, topk_group=2)


def test_group_of_one_expert_scores_by_that_expert():
    router, x = _router(num_experts=4, top_k=2, router="sigmoid", n_group=4, topk_group=2)
    _assert_same(_as_dicts(router(x)), _reference(_scores(router, x, "sigmoid"), 2, n_group=4, topk_group=2))


def test_aux_free_groups_and_chooses_on_biased_scores_but_gates_with_raw_scores():
    router, x = _router(num_experts=8, top_k=2, router="aux_free", n_group=4, topk_group=2)
    router.expert_bias_E.copy_(torch.linspace(-0.3, 0.3, 8))
    scores = _scores(router, x, "sigmoid")
    biased = [[s + b for s, b in zip(row, router.expert_bias_E.tolist(), strict=True)] for row in scores]
    _assert_same(_as_dicts(router(x)), _reference(scores, 2, n_group=4, topk_group=2, choice=biased))


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"num_experts": 8, "n_group": 3, "topk_group": 1}, "divide num_experts"),
        ({"num_experts": 8, "top_k": 4, "n_group": 4, "topk_group": 1}, "fewer than top_k"),
        ({"num_experts": 8, "n_group": 4}, "both moe.n_group and moe.topk_group"),
        ({"num_experts": 8, "n_group": 2, "topk_group": 3}, "must be <= moe.n_group"),
        ({"route_norm": "sometimes"}, "route_norm"),
        ({"routed_scaling_factor": 0}, "greater than 0"),
    ],
)
def test_bad_routing_options_fail_with_a_message_naming_the_field(fields, says):
    overrides = [f"model.moe.{k}={v}" for k, v in fields.items()]
    with pytest.raises(ConfigError, match=says):
        load_config("tiny", overrides=overrides)


def test_routing_study_axis_builds_the_routers_of_todays_moe_models():
    base = load_config("tiny", overrides=["model.pattern=A", "model.moe.num_experts=8"])
    for name in ("softmax_unnormalized", "mixtral", "deepseek_v3"):
        moe = trial_experiment(base, {"router": name}).model.moe
        assert {k: getattr(moe, k) for k in ROUTERS[name]} == ROUTERS[name]
    dotted = trial_experiment(base, {"model.moe.routed_scaling_factor": 2.0})
    assert dotted.model.moe.routed_scaling_factor == 2.0
