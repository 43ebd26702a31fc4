"""Router anatomy and report building blocks, against hand-computed references."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from raybio.analysis.report_tables import pareto_front
from raybio.config import load_config
from raybio.models.model import BioLM
from raybio.models.moe.recorder import RouterRecorder, js_by_layer, js_divergence, mean_pairwise_js


def test_js_divergence_matches_a_hand_computed_example():
    # P = (1/2, 1/2, 0), Q = (0, 1/2, 1/2): M = (1/4, 1/2, 1/4);
    # KL(P||M) = 1/2 ln 2 + 1/2 ln 1 = ln(2)/2, same for Q, so JS = ln(2)/2.
    assert js_divergence([1, 1, 0], [0, 1, 1]) == pytest.approx(math.log(2) / 2)
    assert js_divergence([3, 1], [3, 1]) == pytest.approx(0.0)
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(math.log(2))  # the maximum
    # Three tags: mean over the three pairs.
    dists = {"a": np.array([1, 1, 0]), "b": np.array([0, 1, 1]), "c": np.array([1, 1, 0])}
    assert mean_pairwise_js(dists) == pytest.approx((math.log(2) / 2 * 2 + 0) / 3)
    assert math.isnan(mean_pairwise_js({"only": np.array([1, 2])}))


def moe_model(pattern="ADA"):
    exp = load_config("tiny", overrides=[f"model.pattern={pattern}", "model.n_layers=3"])
    torch.manual_seed(0)
    return BioLM(exp.model, 72)


def test_router_recorder_captures_every_moe_layer_and_removes_its_hooks():
    model = moe_model()
    routers = [m.router for m in model.moe_layers()]
    assert len(routers) == 2
    tokens = torch.randint(7, 72, (4, 32))
    with RouterRecorder(model) as rec:
        assert all(len(r._forward_hooks) == 1 for r in routers)
        rec.set_batch(tokens, ["dna", "dna", "protein", "protein"])
        model(tokens)
    assert all(len(r._forward_hooks) == 0 for r in routers)
    usage = rec.usage()
    k = model.cfg.moe.top_k
    assert sorted(usage) == [0, 1]
    for per_tag in usage.values():
        assert sorted(per_tag) == ["dna", "protein"]
        assert all(c.sum() == 2 * 32 * k for c in per_tag.values())
    js = js_by_layer(usage)
    assert all(0 <= v <= math.log(2) for v in js.values())
    # The same forward pass without the recorder gives the same output: hooks only observe.
    with torch.no_grad():
        out1 = model(tokens).logits
    with RouterRecorder(model) as rec2, torch.no_grad():
        rec2.set_batch(tokens, ["x"] * 4)
        out2 = model(tokens).logits
    torch.testing.assert_close(out1, out2)


def test_router_recorder_refuses_models_without_moe_and_batches_without_tags():
    with pytest.raises(ValueError, match="no MoE layers"):
        RouterRecorder(moe_model("D"))
    model = moe_model()
    with RouterRecorder(model), pytest.raises(RuntimeError, match="set_batch"):
        model(torch.randint(7, 72, (1, 8)))


def test_expert_preferences_reports_enriched_tokens():
    model = moe_model("A")
    tokens = torch.randint(7, 71, (8, 16))
    with RouterRecorder(model) as rec, torch.no_grad():
        rec.set_batch(tokens, ["a"] * 4 + ["b"] * 4)
        model(tokens)
    vocab = [f"t{i}" for i in range(72)]
    prefs = rec.expert_preferences(vocab)[0]
    assert sum(p["slots"] for p in prefs) == tokens.numel() * model.cfg.moe.top_k
    used = [p for p in prefs if p["slots"]]
    assert all(p["top_tokens"][0][1] >= 1.0 for p in used)  # the top token is enriched, by definition


def test_pareto_front_keeps_only_undominated_trials():
    df = pd.DataFrame({"val_loss": [3.0, 3.5, 2.9, 3.6], "probe/tokens_per_s": [100, 200, 50, 150]})
    front = pareto_front(df)
    # Row 3 is beaten by row 1 on both objectives; the others each win somewhere.
    assert front.tolist() == [True, True, True, False]


def test_routing_divergence_is_set_against_its_permutation_null():
    from raybio.analysis.anatomy import trial_anatomy

    model = moe_model("A")
    gen = torch.Generator().manual_seed(0)
    # Disjoint vocabularies (DNA vs protein tokens): an untrained router already separates them.
    disjoint = torch.cat(
        [torch.randint(7, 30, (16, 32), generator=gen), torch.randint(40, 72, (16, 32), generator=gen)]
    )
    tags = ["dna"] * 16 + ["protein"] * 16
    out = trial_anatomy(model, disjoint, tags, [str(i) for i in range(72)])
    for layer, js in out["js_by_layer"].items():
        assert js > 3 * out["null_js_by_layer"][layer]  # far beyond what relabelled windows give
        assert out["js_p_perm_by_layer"][layer] == pytest.approx(1 / 51)  # no permutation reaches it
    # The same token distribution under both tags: the divergence is what chance gives.
    same = torch.randint(7, 72, (32, 32), generator=gen)
    out = trial_anatomy(model, same, tags, [str(i) for i in range(72)])
    for layer, js in out["js_by_layer"].items():
        assert js < 3 * out["null_js_by_layer"][layer] and out["js_p_perm_by_layer"][layer] > 0.05
