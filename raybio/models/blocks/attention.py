"""`D`: multi-head attention (RoPE) + dense SwiGLU FFN; the attention FLOPs every attention block shares."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raybio.models.blocks.registry import BlockSpec, register
from raybio.models.layers import Attention, SwiGLU

if TYPE_CHECKING:
    from raybio.models.config import ModelConfig


def attention(cfg: ModelConfig) -> Attention:
    return Attention(cfg.d_model, cfg.n_heads, causal=cfg.objective == "ntp")


def attention_flops(cfg: ModelConfig, seq_len: int) -> float:
    """qkv and output projections, plus scores and values over the full L×L square (what SDPA's math kernel runs)."""
    D = cfg.d_model
    return 2 * D * 3 * D + 2 * D * D + 2 * 2 * seq_len * D


def swiglu_flops(d_model: int, hidden: int) -> float:
    return 3 * 2 * d_model * hidden


DENSE = register(
    BlockSpec(
        letter="D",
        description="attention + dense FFN",
        mixer=attention,
        ffn=lambda cfg: SwiGLU(cfg.d_model, cfg.ffn_hidden),
        flops=lambda cfg, L: attention_flops(cfg, L) + swiglu_flops(cfg.d_model, cfg.ffn_hidden),
    )
)
