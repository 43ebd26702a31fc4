"""`A`: multi-head attention + a routed mixture of SwiGLU experts (top-k + shared experts)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raybio.models.blocks.attention import attention, attention_flops, swiglu_flops
from raybio.models.blocks.registry import BlockSpec, register
from raybio.models.moe import MoE

if TYPE_CHECKING:
    from raybio.models.config import ModelConfig


def moe_flops(cfg: ModelConfig) -> float:
    """Router logits plus the top-k and shared experts each token runs through."""
    moe = cfg.moe
    hidden = moe.expert_hidden or cfg.ffn_hidden
    return 2 * cfg.d_model * moe.num_experts + (moe.top_k + moe.num_shared_experts) * swiglu_flops(cfg.d_model, hidden)


def _requires(cfg: ModelConfig) -> str | None:
    if cfg.moe.num_experts < 2:
        return "pattern uses MoE blocks 'A' but moe.num_experts < 2; use 'D' for a dense FFN"
    return None


MOE = register(
    BlockSpec(
        letter="A",
        description="attention + MoE FFN",
        mixer=attention,
        ffn=lambda cfg: MoE(cfg.d_model, cfg.ffn_hidden, cfg.moe),
        flops=lambda cfg, L: attention_flops(cfg, L) + moe_flops(cfg),
        has_experts=True,
        requires=_requires,
    )
)
