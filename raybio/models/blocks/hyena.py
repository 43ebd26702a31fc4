"""`H`: HyenaLite long convolution + dense SwiGLU (gated) MLP."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raybio.models.blocks.attention import swiglu_flops
from raybio.models.blocks.registry import BlockSpec, register
from raybio.models.hyena import HyenaLite
from raybio.models.hyena.fftconv import fftconv_flops_per_token
from raybio.models.layers import SwiGLU

if TYPE_CHECKING:
    from raybio.models.config import ModelConfig


def hyena_flops(cfg: ModelConfig, seq_len: int) -> float:
    """In/out projections, the depthwise short conv (2 FLOPs per tap) and the FFT convolution, which
    FlopCounterMode sees neither of, analytically; filter generation is not counted."""
    D = cfg.d_model
    return 2 * D * 3 * D + 2 * 3 * D * cfg.hyena.short_conv + 2 * D * D + fftconv_flops_per_token(D, seq_len)


def _requires(cfg: ModelConfig) -> str | None:
    group = cfg.hyena.filter_groups
    if group and cfg.d_model % group:
        return f"hyena.filter_groups ({group}) must divide d_model ({cfg.d_model})"
    return None


HYENA = register(
    BlockSpec(
        letter="H",
        description="HyenaLite + gated MLP",
        mixer=lambda cfg: HyenaLite(cfg.d_model, cfg.hyena, cfg.objective == "ntp", cfg.max_seq_len),
        ffn=lambda cfg: SwiGLU(cfg.d_model, cfg.ffn_hidden),
        flops=lambda cfg, L: hyena_flops(cfg, L) + swiglu_flops(cfg.d_model, cfg.ffn_hidden),
        requires=_requires,
    )
)
