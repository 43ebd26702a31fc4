"""Causal depthwise short convolution (HyenaLite's k = 3 FIR filter) as shifted multiply-adds.

y[c, t] = Σ_i w[c, i]·z[c, t - (k - 1) + i], with zeros before the start. For k = 3 this runs
fwd+bwd in about half the time of `F.conv1d(groups=C)` on CPU and needs no padded copy. It
is elementwise work, so FlopCounterMode does not see it (flops.py counts it analytically).

Shapes: B batch, C channels, L length, K taps.
"""

from __future__ import annotations

import torch


class _ShortConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z_BCL: torch.Tensor, w_CK: torch.Tensor) -> torch.Tensor:
        K, L = w_CK.shape[1], z_BCL.shape[-1]
        y_BCL = z_BCL * w_CK[:, K - 1, None]
        for i in range(K - 1):
            shift = K - 1 - i
            if shift < L:
                y_BCL[..., shift:].addcmul_(z_BCL[..., : L - shift], w_CK[:, i, None])
        ctx.save_for_backward(z_BCL, w_CK)
        return y_BCL

    @staticmethod
    def backward(ctx, g_BCL: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z_BCL, w_CK = ctx.saved_tensors
        K, L = w_CK.shape[1], z_BCL.shape[-1]
        grad_z = g_BCL * w_CK[:, K - 1, None]
        grad_w = torch.zeros_like(w_CK)
        # einsum reduces without materialising the product (3x faster than mul + sum here).
        grad_w[:, K - 1] = torch.einsum("bcl,bcl->c", g_BCL, z_BCL)
        for i in range(K - 1):
            shift = K - 1 - i
            if shift < L:
                grad_z[..., : L - shift].addcmul_(g_BCL[..., shift:], w_CK[:, i, None])
                grad_w[:, i] = torch.einsum("bcl,bcl->c", g_BCL[..., shift:], z_BCL[..., : L - shift])
        return grad_z, grad_w


def short_conv(z_BCL: torch.Tensor, w_CK: torch.Tensor) -> torch.Tensor:
    """Causal depthwise convolution of `z_BCL` (channels, then time) with per-channel taps `w_CK`."""
    return _ShortConv.apply(z_BCL.contiguous(), w_CK.to(z_BCL.dtype))
