"""Analytic FLOPs per token and parameter counts, from the config alone.

Convention: 2 FLOPs per multiply-accumulate of every matmul; elementwise work is not
counted (it is what `torch.utils.flop_counter.FlopCounterMode` counts too). Each block
type states its own forward FLOPs (`raybio.models.blocks`): attention scores over the full
L×L square, causal or not, since that is what SDPA's math kernel executes; HyenaLite's short
conv and FFT convolution analytically, since FlopCounterMode sees neither. Training =
3 × forward (backward costs two forward matmuls).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from raybio.models.blocks import block_spec

if TYPE_CHECKING:
    from raybio.models.config import ModelConfig


@dataclass(frozen=True)
class FlopsPerToken:
    forward: float
    train: float
    by_block: dict


def flops_per_token(cfg: ModelConfig, seq_len: int, vocab_size: int) -> FlopsPerToken:
    """Forward and training FLOPs per token for a model config at a context length and vocabulary."""
    by_block = {kind: block_spec(kind).flops(cfg, seq_len) for kind in set(cfg.blocks)}
    fwd = sum(by_block[k] for k in cfg.blocks) + 2 * cfg.d_model * vocab_size
    return FlopsPerToken(forward=float(fwd), train=3.0 * fwd, by_block=by_block)


def param_counts(model) -> dict[str, int]:
    """Total parameters and parameters active per token (only top-k + shared experts count)."""
    from raybio.models.moe import moe_layers

    total = sum(p.numel() for p in model.parameters())
    inactive = 0
    for m in moe_layers(model):
        # Per-expert size from one expert's slices, so an EP-sharded layer counts right too.
        # Shared experts (m.shared) are always active.
        per_expert = m.w1_EDH[0].numel() + m.w3_EDH[0].numel() + m.w2_EHD[0].numel()
        inactive += per_expert * (m.cfg.num_experts - m.cfg.top_k)
    return {"params_total": total, "params_active": total - inactive}
