"""HyenaLite building blocks against independent references: FFT conv, modal filter, filter cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raybio.config import HyenaConfig
from raybio.models.hyena import (
    HyenaLite,
    ImplicitFilter,
    ModalFilter,
    fftconv,
    fftconv_spectrum,
    kernel_spectrum,
    two_sided_kernel,
)
from raybio.models.hyena.shortconv import short_conv

pytestmark = pytest.mark.usefixtures("single_thread")


def direct_conv(u_BDL: np.ndarray, h_CL: np.ndarray, bidirectional: bool) -> np.ndarray:
    """y[t] = Σ_s u[s]·k(t - s) by explicit sums; k(lag) = h_fwd[lag] (lag >= 0), h_bwd[-lag - 1] (lag < 0)."""
    B, D, L = u_BDL.shape
    F = h_CL.shape[0] // (2 if bidirectional else 1)
    y = np.zeros((B, D, L))
    for d in range(D):
        f = d // (D // F)
        for t in range(L):
            for s in range(L):
                lag = t - s
                if lag >= 0:
                    y[:, d, t] += u_BDL[:, d, s] * h_CL[f, lag]
                elif bidirectional:
                    y[:, d, t] += u_BDL[:, d, s] * h_CL[F + f, -lag - 1]
    return y


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize(("L", "D", "F"), [(1, 4, 4), (7, 6, 3), (33, 4, 1)])
def test_fftconv_equals_direct_convolution(bidirectional, L, D, F):
    gen = torch.Generator().manual_seed(L)
    u_BDL = torch.randn(2, D, L, generator=gen)
    h_CL = torch.randn(F * (2 if bidirectional else 1), L, generator=gen)
    want = direct_conv(u_BDL.double().numpy(), h_CL.double().numpy(), bidirectional)
    from_kernel = fftconv(u_BDL, two_sided_kernel(h_CL, bidirectional))
    from_spectrum = fftconv_spectrum(u_BDL, kernel_spectrum(h_CL, bidirectional))
    np.testing.assert_allclose(from_kernel.numpy(), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(from_spectrum.numpy(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_fftconv_custom_backward_matches_autograd(bidirectional):
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(3, 6, 40, generator=gen, requires_grad=True)
    h = torch.randn(2 * (2 if bidirectional else 1), 40, generator=gen, requires_grad=True)
    g = torch.randn(3, 6, 40, generator=gen)
    grads = []
    for conv in (lambda: fftconv(u, two_sided_kernel(h, bidirectional)),
                 lambda: fftconv_spectrum(u, kernel_spectrum(h, bidirectional))):  # fmt: skip
        grads.append(torch.autograd.grad((conv() * g).sum(), (u, h)))
    for custom, reference in zip(*grads, strict=True):
        torch.testing.assert_close(custom, reference, rtol=1e-4, atol=1e-4)


def test_fftconv_rejects_inputs_of_another_length():
    with pytest.raises(ValueError, match="expected L \\+ 1 = 9"):
        fftconv_spectrum(torch.randn(1, 2, 8), kernel_spectrum(torch.randn(2, 16), False))
    with pytest.raises(ValueError, match="expected 2L = 16"):
        fftconv(torch.randn(1, 2, 8), torch.randn(2, 32))


@pytest.mark.parametrize("k", [1, 3, 4])
def test_short_conv_equals_causal_conv1d(k):
    gen = torch.Generator().manual_seed(k)
    z = torch.randn(2, 5, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, k, generator=gen, dtype=torch.float64, requires_grad=True)
    want = torch.nn.functional.conv1d(torch.nn.functional.pad(z, (k - 1, 0)), w[:, None], groups=5)
    torch.testing.assert_close(short_conv(z, w), want)
    assert torch.autograd.gradcheck(short_conv, (z, w))


@pytest.mark.parametrize("L", [1, 2, 50, 1000, 4097])
def test_modal_filter_equals_sum_of_damped_modes(L):
    torch.manual_seed(0)
    filt = ModalFilter(num_filters=6, num_modes=4, max_len=1024, bidirectional=False)
    t = torch.arange(L, dtype=torch.float64)
    want = (filt.residues()[:, :, None] * torch.exp(filt.poles()[:, :, None] * t)).real.sum(1)
    got = filt.impulse(L)
    assert got.dtype == torch.float32 and got.shape == (6, L)
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-6)


def test_modal_poles_are_stable_for_any_parameters():
    filt = ModalFilter(num_filters=3, num_modes=5, max_len=64, bidirectional=True)
    with torch.no_grad():
        filt.decay_CS.copy_(torch.linspace(-40, 40, filt.decay_CS.numel()).view_as(filt.decay_CS))
        filt.freq_CS.uniform_(-100, 100)
    assert (filt.poles().real < 0).all()
    assert torch.isfinite(filt.impulse(10_000)).all()


def test_spectrum_cached_without_grad_and_invalidated_by_optimizer_step():
    torch.manual_seed(0)
    op = HyenaLite(8, HyenaConfig(num_modes=4), causal=True, max_len=64)
    opt = torch.optim.SGD(op.parameters(), lr=0.1)
    with torch.no_grad():
        first = op.filter.spectrum(32)
        assert op.filter.spectrum(32) is first  # cache hit
    with_grad = op.filter.spectrum(32)
    assert with_grad is not first and with_grad.requires_grad  # training never uses the cache
    op(torch.randn(2, 32, 8)).square().mean().backward()
    opt.step()
    with torch.no_grad():
        after = op.filter.spectrum(32)
        fresh = kernel_spectrum(op.filter.impulse(32), bidirectional=False)
    assert not torch.allclose(after, first)
    torch.testing.assert_close(after, fresh)


def test_spectrum_cache_invalidated_by_load_state_dict():
    torch.manual_seed(0)
    a, b = (ModalFilter(4, 3, 64, bidirectional=False) for _ in range(2))
    with torch.no_grad():
        before = a.spectrum(16)
        a.load_state_dict(b.state_dict())
        torch.testing.assert_close(a.spectrum(16), b.spectrum(16))
    assert not torch.allclose(before, b.spectrum(16).detach())


def test_filters_stay_fp32_under_bf16_autocast():
    op = HyenaLite(8, HyenaConfig(num_modes=4), causal=False, max_len=64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert op.filter.spectrum(16).dtype == torch.complex64
        y = op(torch.randn(1, 16, 8))
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()


def test_implicit_filter_is_regenerated_and_windowed():
    torch.manual_seed(0)
    filt = ImplicitFilter(num_filters=4, max_len=256, bidirectional=False)
    with torch.no_grad():
        assert filt.spectrum(64) is not filt.spectrum(64)  # the original Hyena recomputes every call
        h = filt.impulse(256)
    # Each filter's exponential window ends at exp(-|δ|) <= 1e-2^(1/1.5) of its start.
    assert h.shape == (4, 256)
    assert (h[:, -16:].abs().amax(1) < h[:, :16].abs().amax(1)).all()
    with pytest.raises(ValueError, match="filter_emb_dim=4 must be odd"):
        ImplicitFilter(4, 64, False, emb_dim=4)
