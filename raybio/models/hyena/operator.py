"""The HyenaLite sequence mixer (the `H` block's mixer).

    z = ShortConv_k(W_in x)            W_in: D -> 3D, causal depthwise conv, k = 3
    x2, x1, v = split(z)
    y = x2 ⊙ (h ∗ (x1 ⊙ v) + ω ⊙ x1 ⊙ v)
    out = W_o y

The block supplies the pre-norm, residual and gated MLP. `h ∗` is causal for NTP and
two-sided for MLM (see fftconv.py); the short conv is causal in both modes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from raybio.config import HyenaConfig
from raybio.models.hyena.fftconv import fftconv
from raybio.models.hyena.filters import ImplicitFilter, LongFilter, ModalFilter


def make_filter(cfg: HyenaConfig, num_filters: int, max_len: int, bidirectional: bool) -> LongFilter:
    if cfg.filter == "modal":
        return ModalFilter(num_filters, cfg.num_modes, max_len, bidirectional)
    return ImplicitFilter(num_filters, max_len, bidirectional, cfg.filter_emb_dim, cfg.filter_order)


@dataclass
class HyenaState:
    """Streaming state of one HyenaLite layer: O(channels), independent of the stream's length."""

    fir_BCK: torch.Tensor  # last k - 1 projected inputs, for the short conv
    modal_BFGS: torch.Tensor  # complex modal state per channel (filter f, channel g within it) and mode

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.fir_BCK, self.modal_BFGS))


class HyenaLite(nn.Module):
    """Order-2 Hyena with a modal (or implicit) long filter; causal when `causal`, else bidirectional."""

    def __init__(self, d_model: int, cfg: HyenaConfig, causal: bool, max_len: int):
        super().__init__()
        group = cfg.filter_groups or 1
        if d_model % group:
            raise ValueError(f"hyena.filter_groups={group} must divide d_model={d_model}")
        self.d_model, self.causal, self.kernel = d_model, causal, cfg.short_conv
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=False)
        self.short_conv = nn.Conv1d(3 * d_model, 3 * d_model, cfg.short_conv, groups=3 * d_model, bias=False)
        self.omega = nn.Parameter(torch.ones(d_model))
        self.filter = make_filter(cfg, d_model // group, max_len, bidirectional=not causal)
        self.wo = nn.Linear(d_model, d_model, bias=False)

    def reset_filter_parameters(self) -> None:
        """Initialise what a generic N(0, 0.02) matrix init must not touch: short conv, ω, long filter."""
        self.short_conv.reset_parameters()
        nn.init.ones_(self.omega)
        self.filter.reset_parameters()

    def _split(self, z_BCL: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Short-conv output -> (gate x2, convolution input u = x1 ⊙ v), both B, D, L."""
        x2, x1, v = z_BCL.chunk(3, dim=1)
        return x2, x1 * v

    def _output(self, x2_BDL: torch.Tensor, u_BDL: torch.Tensor, hu_BDL: torch.Tensor) -> torch.Tensor:
        """y = x2 ⊙ (h ∗ u + ω ⊙ u), projected out; returns B, L, D."""
        y_BDL = hu_BDL + self.omega[:, None].float() * u_BDL.float()
        return self.wo((x2_BDL * y_BDL.to(x2_BDL.dtype)).transpose(1, 2))

    def forward(self, x_BLD: torch.Tensor, rotary: object = None) -> torch.Tensor:
        """Mix a whole sequence. `rotary` is accepted for the block interface and unused."""
        L = x_BLD.shape[1]
        z_BCL = self.in_proj(x_BLD).transpose(1, 2)
        x2_BDL, u_BDL = self._split(self.short_conv(F.pad(z_BCL, (self.kernel - 1, 0))))
        return self._output(x2_BDL, u_BDL, fftconv(u_BDL, self.filter.spectrum(L)))

    def init_state(self, batch: int, device: torch.device) -> HyenaState:
        """An empty stream (all-zero history)."""
        if not isinstance(self.filter, ModalFilter) or not self.causal:
            raise ValueError(
                "streaming inference needs hyena.filter='modal' and objective='ntp' (a causal modal filter); "
                f"this layer has filter={type(self.filter).__name__}, causal={self.causal}"
            )
        f = self.filter
        return HyenaState(
            fir_BCK=torch.zeros(batch, 3 * self.d_model, self.kernel - 1, device=device),
            modal_BFGS=torch.zeros(
                batch, f.num_filters, self.d_model // f.num_filters, f.num_modes, dtype=torch.complex64, device=device
            ),
        )

    def forward_chunk(self, x_BCD: torch.Tensor, state: HyenaState) -> tuple[torch.Tensor, HyenaState]:
        """Mix the next chunk of a stream (any length >= 1); equals `forward` on the concatenated stream."""
        z_BCL = torch.cat([state.fir_BCK.to(x_BCD.dtype), self.in_proj(x_BCD).transpose(1, 2)], dim=-1)
        fir_BCK = z_BCL[..., z_BCL.shape[-1] - (self.kernel - 1) :]
        x2_BDL, u_BDL = self._split(self.short_conv(z_BCL))
        hu_BDL, modal_BFGS = self.filter.chunk_response(u_BDL, state.modal_BFGS)
        return self._output(x2_BDL, u_BDL, hu_BDL), HyenaState(fir_BCK=fir_BCK, modal_BFGS=modal_BFGS)
