"""The HyenaLite sequence mixer (the `H` block's mixer).

    z = ShortConv_k(W_in x)            W_in: D -> 3D, causal depthwise conv, k = 3
    x2, x1, v = split(z)
    y = x2 ⊙ (h ∗ (x1 ⊙ v) + ω ⊙ x1 ⊙ v)
    out = W_o y

The block supplies the pre-norm, residual and gated MLP. `h ∗` is causal for NTP and
two-sided for MLM (see fftconv.py); the short conv is causal in both modes.

Shapes: B batch, L length, C chunk (streaming) or, in `z_BCL`/`fir_BCK`/`short_conv_CK`, the 3·D projected
channels, D d_model, K short-conv taps, F/G/S filter groups, channels per group and modes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from raybio.models.hyena.fftconv import fftconv, fftconv_spectrum
from raybio.models.hyena.filters import ImplicitFilter, LongFilter, ModalFilter
from raybio.models.hyena.shortconv import short_conv

if TYPE_CHECKING:
    from raybio.models.config import HyenaConfig


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
    """Order-2 Hyena with a modal (or implicit) long filter; causal when `causal`, else bidirectional.

    Activations run channels-first (B, C, L) between the projections, so the short conv and the
    FFTs work on contiguous rows; the projections read and write (B, L, D) through transposed
    matmul operands, which BLAS takes without copies.
    """

    def __init__(self, d_model: int, cfg: HyenaConfig, causal: bool, max_len: int):
        super().__init__()
        group = cfg.filter_groups or 1
        if d_model % group:
            raise ValueError(f"hyena.filter_groups={group} must divide d_model={d_model}")
        self.d_model, self.causal, self.kernel = d_model, causal, cfg.short_conv
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=False)
        self.short_conv_CK = nn.Parameter(torch.empty(3 * d_model, cfg.short_conv))
        self.omega = nn.Parameter(torch.ones(d_model))
        self.filter = make_filter(cfg, d_model // group, max_len, bidirectional=not causal)
        self.wo = nn.Linear(d_model, d_model, bias=False)
        self._init_conv_and_filter()  # standalone, the projections keep nn.Linear's init

    def init_weights(self, std: float, out_std: float) -> None:
        """Projections N(0, std), `wo` (into the residual stream) N(0, out_std); the short conv, ω and
        the long filter have their own init, whatever `std` is."""
        nn.init.normal_(self.in_proj.weight, std=std)
        self._init_conv_and_filter()
        nn.init.normal_(self.wo.weight, std=out_std)

    def _init_conv_and_filter(self) -> None:
        bound = self.kernel**-0.5  # nn.Conv1d's default for a depthwise conv (fan_in = k)
        nn.init.uniform_(self.short_conv_CK, -bound, bound)
        nn.init.ones_(self.omega)
        self.filter.reset_parameters()

    def _project_in(self, x_BLD: torch.Tensor) -> torch.Tensor:
        """W_in·xᵀ as (B, 3D, L), contiguous. An explicit bmm: torch.matmul declines to fold the batch
        when the weight requires grad and then copies, which made this step 2-4x slower on CPU."""
        return torch.bmm(self.in_proj.weight.expand(x_BLD.shape[0], -1, -1), x_BLD.mT)

    @staticmethod
    def _split(z_BCL: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Short-conv output -> (gate x2, long-conv input u = x1 ⊙ v), both (B, D, L)."""
        x2_BDL, x1_BDL, v_BDL = z_BCL.chunk(3, dim=1)
        return x2_BDL, x1_BDL * v_BDL

    def _output(self, x2_BDL: torch.Tensor, u_BDL: torch.Tensor, hu_BDL: torch.Tensor) -> torch.Tensor:
        """y = x2 ⊙ (h ∗ u + ω ⊙ u), projected out; returns (B, L, D)."""
        y_BDL = torch.addcmul(hu_BDL, self.omega[:, None].float(), u_BDL.float())
        return self.wo((x2_BDL * y_BDL.to(x2_BDL.dtype)).mT)

    def long_conv(self, u_BDL: torch.Tensor) -> torch.Tensor:
        """h ∗ u in fp32: from the cached spectrum at inference, through the custom-backward FFT in training."""
        L = u_BDL.shape[-1]
        if self.filter.needs_grad():
            return fftconv(u_BDL, self.filter.kernel(L))
        return fftconv_spectrum(u_BDL, self.filter.spectrum(L))

    def forward(
        self, x_BLD: torch.Tensor, rotary: object = None, pad_mask_BL: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mix a whole sequence. `rotary` is accepted for the block interface and unused.

        Padding: the causal short conv carries real values into the first padding positions, and a
        bidirectional long convolution would carry them back; zeroing the long convolution's input
        there makes padding contribute nothing to the real positions (the long conv is linear in it).
        """
        x2_BDL, u_BDL = self._split(short_conv(self._project_in(x_BLD), self.short_conv_CK))
        if pad_mask_BL is not None:
            u_BDL = u_BDL.masked_fill(pad_mask_BL[:, None, :], 0.0)
        return self._output(x2_BDL, u_BDL, self.long_conv(u_BDL))

    def init_state(self, batch: int, device: torch.device, dtype: object = None, window: object = None) -> HyenaState:
        """An empty stream (all-zero history); `dtype` and `window` belong to the attention interface."""
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

    def forward_chunk(
        self, x_BCD: torch.Tensor, state: HyenaState, rope: object = None
    ) -> tuple[torch.Tensor, HyenaState]:
        """Mix the next chunk of a stream (any length >= 1); equals `forward` on the concatenated stream."""
        C = x_BCD.shape[1]
        z_BCL = torch.cat([state.fir_BCK.to(x_BCD.dtype), self._project_in(x_BCD)], dim=-1)
        fir_BCK = z_BCL[..., z_BCL.shape[-1] - (self.kernel - 1) :]
        # The first k - 1 outputs only exist to consume the carried FIR history.
        x2_BDL, u_BDL = self._split(short_conv(z_BCL, self.short_conv_CK)[..., -C:])
        hu_BDL, modal_BFGS = self.filter.chunk_response(u_BDL, state.modal_BFGS)
        return self._output(x2_BDL, u_BDL, hu_BDL), HyenaState(fir_BCK=fir_BCK, modal_BFGS=modal_BFGS)
