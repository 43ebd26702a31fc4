"""Analytic FLOPs per token and parameter counts, from the config alone.

Convention: 2 FLOPs per multiply-accumulate of every matmul; elementwise work is not
counted (it is what `torch.utils.flop_counter.FlopCounterMode` counts too). Attention
scores are counted over the full L×L square, causal or not, since that is what SDPA's
math kernel executes. Training = 3 × forward (backward costs two forward matmuls).
HyenaLite (`H`): projections as above; the depthwise short conv at 2 FLOPs per tap and the
FFT convolution (`fftconv_flops_per_token`) analytically, since FlopCounterMode sees neither
(the short conv runs as shifted multiply-adds, the FFT is not a matmul); filter generation
is not counted (once per forward for the whole batch, cached at inference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from raybio.config import ModelConfig


@dataclass(frozen=True)
class FlopsPerToken:
    forward: float
    train: float
    by_block: dict


def fftconv_flops_per_token(channels: int, seq_len: int) -> float:
    """FFT long convolution per token: per channel and sequence, two forward rFFTs and one inverse
    of n = 2L points at 2.5·n·log2(n) real FLOPs each, plus the complex spectral product (6 FLOPs
    per bin). The filter's rFFT is really shared by the batch (and cached at inference), so this
    is the training-time upper bound."""
    n = 2 * seq_len
    per_channel = 3 * 2.5 * n * math.log2(n) + 6 * (n // 2 + 1)
    return channels * per_channel / seq_len


def block_forward_flops(kind: str, cfg: ModelConfig, seq_len: int) -> float:
    """Forward FLOPs per token of one block of type `kind`."""
    D, H = cfg.d_model, cfg.ffn_hidden
    if kind == "H":
        mixer = 2 * D * 3 * D + 2 * 3 * D * cfg.hyena.short_conv + 2 * D * D
        return mixer + fftconv_flops_per_token(D, seq_len) + 3 * 2 * D * H
    if kind not in "AD":
        raise NotImplementedError(f"no FLOPs formula for block type {kind!r}")
    mixer = 2 * D * 3 * D + 2 * D * D + 2 * 2 * seq_len * D
    if kind == "D":
        return mixer + 3 * 2 * D * H
    moe = cfg.moe
    He = moe.expert_hidden or H
    experts = (moe.top_k + moe.num_shared_experts) * 3 * 2 * D * He
    return mixer + 2 * D * moe.num_experts + experts


def flops_per_token(cfg: ModelConfig, seq_len: int) -> FlopsPerToken:
    """Forward and training FLOPs per token for a model config at a context length."""
    by_block = {kind: block_forward_flops(kind, cfg, seq_len) for kind in set(cfg.blocks)}
    fwd = sum(by_block[k] for k in cfg.blocks) + 2 * cfg.d_model * cfg.vocab_size
    return FlopsPerToken(forward=float(fwd), train=3.0 * fwd, by_block=by_block)


def param_counts(model) -> dict[str, int]:
    """Total parameters and parameters active per token (only top-k + shared experts count)."""
    from raybio.models.moe import MoE

    total = sum(p.numel() for p in model.parameters())
    inactive = 0
    for m in model.modules():
        if isinstance(m, MoE):
            # Per-expert size from one expert's slices, so an EP-sharded layer counts right too.
            # Shared experts (m.shared) are always active.
            per_expert = m.w1_EDH[0].numel() + m.w3_EDH[0].numel() + m.w2_EHD[0].numel()
            inactive += per_expert * (m.cfg.num_experts - m.cfg.top_k)
    return {"params_total": total, "params_active": total - inactive}
