"""A new block type is one registration: config validation, model assembly and FLOPs follow it."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from raybio.config import ConfigError, load_config
from raybio.models.blocks import BlockSpec, block_spec, has_experts, register, registered, unregister
from raybio.models.blocks.attention import swiglu_flops
from raybio.models.flops import flops_per_token
from raybio.models.layers import SwiGLU
from raybio.models.model import BioLM

VOCAB = 40


class TokenShift(nn.Module):
    """A toy mixer: each position sees a learned mix of itself and its left neighbour."""

    def __init__(self, d_model: int):
        super().__init__()
        self.mix = nn.Linear(2 * d_model, d_model, bias=False)

    def init_weights(self, std, out_std):
        nn.init.normal_(self.mix.weight, std=out_std)  # it writes into the residual stream

    def forward(self, x_BLD, rotary, pad_mask_BL=None):
        prev_BLD = torch.nn.functional.pad(x_BLD, (0, 0, 1, 0))[:, :-1]
        return self.mix(torch.cat([x_BLD, prev_BLD], dim=-1))


TOY = BlockSpec(
    letter="T",
    description="token shift + dense FFN",
    mixer=lambda cfg: TokenShift(cfg.d_model),
    ffn=lambda cfg: SwiGLU(cfg.d_model, cfg.ffn_hidden),
    flops=lambda cfg, L: 2 * 2 * cfg.d_model * cfg.d_model + swiglu_flops(cfg.d_model, cfg.ffn_hidden),
    requires=lambda cfg: "the toy block wants an even n_layers" if cfg.n_layers % 2 else None,
)


@pytest.fixture
def toy_block():
    register(TOY)
    yield TOY
    unregister("T")


def small(pattern: str, *extra: str):
    overrides = [f"model.pattern={pattern}", "model.d_model=32", "model.n_heads=2", "model.n_layers=2"]
    return load_config("tiny", overrides=[*overrides, *extra])


def test_a_registered_block_is_accepted_built_and_counted(toy_block):
    exp = small("TD")
    model = BioLM(exp.model, VOCAB)
    assert [b.kind for b in model.blocks] == ["T", "D"] and isinstance(model.blocks[0].mixer, TokenShift)
    x = torch.randint(0, VOCAB, (2, 16))
    out = model(x, x)
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.blocks[0].mixer.mix.weight.grad is not None
    math_sdpa = torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH)  # so attention is counted
    with FlopCounterMode(display=False) as counter, math_sdpa:
        model(x)
    assert flops_per_token(exp.model, 16, VOCAB).forward == pytest.approx(counter.get_total_flops() / x.numel())
    assert not has_experts("TD") and block_spec("T") is TOY


def test_a_block_states_its_own_requirements(toy_block):
    with pytest.raises(ConfigError, match="the toy block wants an even n_layers"):
        small("T", "model.n_layers=3")


def test_unknown_and_unregistered_letters_are_refused_with_the_known_ones():
    assert "T" not in registered()
    with pytest.raises(ConfigError, match=r"unknown block letters \['T'\]; allowed: D \(attention \+ dense FFN\)"):
        small("TD")


def test_a_letter_cannot_be_registered_twice(toy_block):
    other = BlockSpec("T", "another", TOY.mixer, TOY.ffn, TOY.flops)
    with pytest.raises(ValueError, match="already registered"):
        register(other)
    with pytest.raises(ValueError, match="one upper-case letter"):
        register(BlockSpec("tt", "bad", TOY.mixer, TOY.ffn, TOY.flops))
