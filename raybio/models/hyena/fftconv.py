"""Long convolutions through the FFT, causal or bidirectional, in fp32.

A filter of length L convolved with a sequence of length L by FFT needs n >= 2L - 1 points
to avoid circular wrap-around; we use n = 2L. The bidirectional (MLM) kernel is two-sided:
a causal filter h_f for lags 0..L-1 and a second filter h_b for lags -1..-(L-1) (the causal
filter of the reversed sequence). Both sides fit in one length-2L kernel (negative lags wrap
to its tail), so a bidirectional convolution costs exactly what a causal one costs.
"""

from __future__ import annotations

import torch


def kernel_spectrum(h_CL: torch.Tensor, bidirectional: bool) -> torch.Tensor:
    """rFFT (n = 2L) of the convolution kernel built from filter taps `h_CL` (fp32).

    Causal: `h_CL` holds F filters, tap t at lag t. Bidirectional: `h_CL` holds 2F filters,
    the first F for lags 0..L-1 and the last F for lags -1..-(L-1) (tap t at lag -(t+1)).
    Returns a complex (F, L + 1) spectrum.
    """
    C, L = h_CL.shape
    h_CL = h_CL.float()
    if not bidirectional:
        return torch.fft.rfft(h_CL, n=2 * L)
    fwd_FL, bwd_FL = h_CL.chunk(2, dim=0)
    # Index n - m of a length-n kernel holds lag -m; index L (lag ±L) is never used.
    kernel_FN = torch.cat([fwd_FL, fwd_FL.new_zeros(C // 2, 1), bwd_FL[:, : L - 1].flip(-1)], dim=-1)
    return torch.fft.rfft(kernel_FN, n=2 * L)


def fftconv(u_BDL: torch.Tensor, spectrum_FK: torch.Tensor) -> torch.Tensor:
    """Convolve each channel of `u_BDL` with its kernel; channels are split evenly over F filters.

    `spectrum_FK` comes from `kernel_spectrum` for the same L (K = L + 1). Channel d uses
    filter d // (D // F), so consecutive channels share a filter. Computed and returned in fp32.
    """
    B, D, L = u_BDL.shape
    F, K = spectrum_FK.shape
    if K != L + 1:
        raise ValueError(f"filter spectrum has {K} bins, expected L + 1 = {L + 1} for sequence length {L}")
    u_spec = torch.fft.rfft(u_BDL.float(), n=2 * L).view(B, F, D // F, K)
    y_spec = (u_spec * spectrum_FK[:, None, :]).view(B, D, K)
    return torch.fft.irfft(y_spec, n=2 * L)[..., :L]
