"""BioLM against independent references: analytic FLOPs vs FlopCounterMode, active parameters, config errors.

(The MoE layer against a per-token loop is tests/test_moe_layer.py; its routers, tests/test_moe_routers.py.)"""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from raybio.config import ConfigError, load_config
from raybio.models.flops import flops_per_token, param_counts
from raybio.models.model import BioLM


@pytest.mark.parametrize("pattern", ["D", "A", "DA"])
@pytest.mark.parametrize("objective", ["mlm", "ntp"])
def test_analytic_flops_match_flop_counter(pattern, objective):
    L = 128
    exp = load_config(
        "tiny",
        overrides=[
            f"model.pattern={pattern}",
            f"model.objective={objective}",
            "model.n_layers=2",
        ],
    )
    model = BioLM(exp.model, 72)
    x = torch.randint(0, 72, (2, L))
    # The math SDPA backend runs attention as matmuls the counter can see.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(x)
    measured = counter.get_total_flops() / x.numel()
    analytic = flops_per_token(exp.model, L, 72)
    assert analytic.forward == pytest.approx(measured, rel=0.02)
    assert analytic.train == 3 * analytic.forward


def test_active_params_count_only_routed_experts():
    exp = load_config("tiny", overrides=["model.pattern=A", "model.moe.num_experts=8"])
    counts = param_counts(BioLM(exp.model, 72))
    D, H, layers = 128, 512, 4
    per_expert = 3 * D * H
    # Default top-2 of 8 experts leaves 6 experts' weights idle for each token in each layer.
    assert counts["params_total"] - counts["params_active"] == layers * 6 * per_expert


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.moe.top_k=9", r"model.moe: top_k \(9\) must be <= num_experts \(8\)"),
        ("model.n_heads=5", r"model: d_model \(128\) must be divisible by n_heads \(5\)"),
        ("model.pattern=AXD", r"unknown block letters \['X'\]; allowed: D \(attention \+ dense FFN\)"),
        ("model.objective=clm", r"model.objective: Input should be 'mlm' or 'ntp'"),
        ("train.lr=-1", r"train.lr: Input should be greater than 0"),
        ("train.lrate=1", r"train.lrate: Extra inputs are not permitted"),
    ],
)
def test_config_errors_name_the_field_and_the_allowed_values(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", overrides=[override])


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ConfigError, match=r"unknown preset 'huge'; choose one of \[.*'omni-116m'.*'tiny'\]"):
        load_config("huge")
