"""Transformer building blocks: norms, rotary embeddings, attention, SwiGLU. No biases anywhere.

Shapes: B batch, L length, C chunk, P cached positions, D d_model, H heads, Q head dim, R rotary frequency pairs (Q/2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def init_weights(self) -> None:
        nn.init.ones_(self.weight)

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

    def init_weights(self) -> None:
        """Nothing to initialise: the norm has no parameters."""

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
        freqs_LR = torch.outer(t, inv_freq)
        self.register_buffer("cos_LR", freqs_LR.cos(), persistent=False)
        self.register_buffer("sin_LR", freqs_LR.sin(), persistent=False)

    def forward(self, x_BHLQ: torch.Tensor, offset: int = 0) -> torch.Tensor:
        L = x_BHLQ.shape[-2]
        if offset + L > self.cos_LR.shape[0]:
            raise ValueError(f"sequence of {offset + L} positions exceeds model.max_seq_len={self.cos_LR.shape[0]}")
        cos = self.cos_LR[offset : offset + L].to(x_BHLQ.dtype)
        sin = self.sin_LR[offset : offset + L].to(x_BHLQ.dtype)
        x1, x2 = x_BHLQ[..., 0::2], x_BHLQ[..., 1::2]
        out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
        return out.flatten(-2)


@dataclass
class KVWindow:
    """Streaming state of one attention layer: keys (un-rotated) and values of the most recent
    `window - 1` positions."""

    k_BHPQ: torch.Tensor
    v_BHPQ: torch.Tensor
    window: int

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.k_BHPQ, self.v_BHPQ))


class Attention(nn.Module):
    """Multi-head self-attention with RoPE; causal for NTP, bidirectional for MLM."""

    def __init__(self, d_model: int, n_heads: int, causal: bool):
        super().__init__()
        self.n_heads, self.causal = n_heads, causal
        self.wqkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.wo = nn.Linear(d_model, d_model, bias=False)

    def init_weights(self, std: float, out_std: float) -> None:
        """N(0, std) for the qkv projection; `out_std` for `wo`, which writes into the residual stream."""
        nn.init.normal_(self.wqkv.weight, std=std)
        nn.init.normal_(self.wo.weight, std=out_std)

    def _qkv(self, x_BLD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, L, D = x_BLD.shape
        qkv = self.wqkv(x_BLD).view(B, L, 3, self.n_heads, D // self.n_heads)
        return tuple(t.transpose(1, 2) for t in qkv.unbind(2))  # each B, H, L, Dh

    def _out(self, y_BHLQ: torch.Tensor) -> torch.Tensor:
        B, H, L, Dh = y_BHLQ.shape
        return self.wo(y_BHLQ.transpose(1, 2).reshape(B, L, H * Dh))

    def forward(self, x_BLD: torch.Tensor, rotary: Rotary, pad_mask_BL: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self._qkv(x_BLD)
        q, k = rotary(q), rotary(k)
        if pad_mask_BL is None:
            return self._out(F.scaled_dot_product_attention(q, k, v, is_causal=self.causal))
        L = x_BLD.shape[1]
        allowed_B1LL = ~pad_mask_BL[:, None, None, :].expand(-1, 1, L, -1)  # no query attends to padding
        if self.causal:
            allowed_B1LL = allowed_B1LL & torch.ones(L, L, dtype=torch.bool, device=x_BLD.device).tril()
        # A padded query row may be all False; let it see itself so SDPA returns numbers, not NaN.
        allowed_B1LL = allowed_B1LL | torch.eye(L, dtype=torch.bool, device=x_BLD.device)
        return self._out(F.scaled_dot_product_attention(q, k, v, attn_mask=allowed_B1LL))

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype, window: int) -> KVWindow:
        head_dim = self.wo.in_features // self.n_heads
        empty = torch.zeros(batch, self.n_heads, 0, head_dim, device=device, dtype=dtype)
        return KVWindow(empty, empty, window)

    def forward_chunk(self, x_BCD: torch.Tensor, cache: KVWindow, rope: Rotary) -> tuple[torch.Tensor, KVWindow]:
        """Causal sliding-window attention of a chunk over the cached window plus itself.

        Keys are cached un-rotated and RoPE is applied relative to the window's first position,
        which leaves every query·key product unchanged (RoPE depends only on the distance).
        """
        C = x_BCD.shape[1]
        q, k, v = self._qkv(x_BCD)
        k_all, v_all = torch.cat([cache.k_BHPQ, k], dim=2), torch.cat([cache.v_BHPQ, v], dim=2)
        P = cache.k_BHPQ.shape[2]
        q_pos = torch.arange(P, P + C, device=x_BCD.device)[:, None]
        k_pos = torch.arange(P + C, device=x_BCD.device)[None, :]
        allowed_CK = (k_pos <= q_pos) & (k_pos > q_pos - cache.window)
        y_BHCQ = F.scaled_dot_product_attention(rope(q, offset=P), rope(k_all), v_all, attn_mask=allowed_CK)
        keep = k_all.shape[2] - min(cache.window - 1, k_all.shape[2])
        return self._out(y_BHCQ), KVWindow(k_all[:, :, keep:], v_all[:, :, keep:], cache.window)


class SwiGLU(nn.Module):
    """Gated FFN: w2(silu(w1 x) * w3 x)."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(d_model, hidden, bias=False)
        self.w3 = nn.Linear(d_model, hidden, bias=False)
        self.w2 = nn.Linear(hidden, d_model, bias=False)

    def init_weights(self, std: float, out_std: float) -> None:
        """N(0, std) for the gate and up projections; `out_std` for `w2`, which writes into the residual stream."""
        for w, s in ((self.w1, std), (self.w3, std), (self.w2, out_std)):
            nn.init.normal_(w.weight, std=s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))
