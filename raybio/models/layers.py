"""Transformer building blocks: norms, rotary embeddings, attention, SwiGLU. No biases anywhere."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 so bf16 activations do not lose the small-variance channels.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.type_as(x) * self.weight


class NonParametricLayerNorm(nn.Module):
    """OLMo's LayerNorm without learnable scale or shift."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), (self.dim,), eps=self.eps).type_as(x)


def make_norm(kind: str, dim: int) -> nn.Module:
    return RMSNorm(dim) if kind == "rmsnorm" else NonParametricLayerNorm(dim)


class Rotary(nn.Module):
    """Rotary position embedding tables, shared by every attention layer."""

    def __init__(self, head_dim: int, max_len: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        t = torch.arange(max_len, dtype=torch.float32)
        freqs_LH = torch.outer(t, inv_freq)
        self.register_buffer("cos_LH", freqs_LH.cos(), persistent=False)
        self.register_buffer("sin_LH", freqs_LH.sin(), persistent=False)

    def forward(self, x_BHLD: torch.Tensor, offset: int = 0) -> torch.Tensor:
        L = x_BHLD.shape[-2]
        if offset + L > self.cos_LH.shape[0]:
            raise ValueError(f"sequence of {offset + L} positions exceeds model.max_seq_len={self.cos_LH.shape[0]}")
        cos = self.cos_LH[offset : offset + L].to(x_BHLD.dtype)
        sin = self.sin_LH[offset : offset + L].to(x_BHLD.dtype)
        x1, x2 = x_BHLD[..., 0::2], x_BHLD[..., 1::2]
        out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
        return out.flatten(-2)


class Attention(nn.Module):
    """Multi-head self-attention with RoPE; causal for NTP, bidirectional for MLM."""

    def __init__(self, d_model: int, n_heads: int, causal: bool):
        super().__init__()
        self.n_heads, self.causal = n_heads, causal
        self.wqkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.wo = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x_BLD: torch.Tensor, rotary: Rotary) -> torch.Tensor:
        B, L, D = x_BLD.shape
        qkv = self.wqkv(x_BLD).view(B, L, 3, self.n_heads, D // self.n_heads)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))  # each B,H,L,Dh
        q, k = rotary(q), rotary(k)
        y_BHLD = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.wo(y_BHLD.transpose(1, 2).reshape(B, L, D))


class SwiGLU(nn.Module):
    """Gated FFN: w2(silu(w1 x) * w3 x)."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(d_model, hidden, bias=False)
        self.w3 = nn.Linear(d_model, hidden, bias=False)
        self.w2 = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))
