"""Long-convolution filters for HyenaLite: the modal filter and the original implicit filter.

Both produce fp32 taps h_CL for a length L and, through `LongFilter.spectrum`, the rFFT of
the convolution kernel. The modal spectrum is cached while no gradient can flow into the
filter (inference, `torch.no_grad()`), keyed on every parameter's storage and in-place
version counter, so an optimizer step or `load_state_dict` invalidates it; in training it is
recomputed on every call and never stale. The implicit filter follows the original Hyena and
regenerates its taps on every call — the cost the modal filter is designed to remove.

Shapes: C filters, S modes, L length (Q blocks of T taps), F/G filter groups and the channels in each, B batch,
E positional features; parameter names keep these letters (they are checkpoint keys).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from raybio.models.hyena.fftconv import fftconv_spectrum, two_sided_kernel

_STEPS: dict[tuple[int, str], torch.Tensor] = {}


def step_index(n: int, device: torch.device) -> torch.Tensor:
    """0, 1, ..., n - 1 in fp32: the time index, built once per length and device and shared by every layer."""
    if torch.compiler.is_compiling():  # free inside a graph; the cache would make each layer's graph differ
        return torch.arange(n, dtype=torch.float32, device=device)
    key = (n, str(device))
    if key not in _STEPS:
        if len(_STEPS) >= 64:  # many distinct lengths (streaming chunks): keep the cache small
            _STEPS.clear()
        _STEPS[key] = torch.arange(n, dtype=torch.float32, device=device)
    return _STEPS[key]


def split_length(L: int) -> tuple[int, int]:
    """(Q, T) with t = T·q + j, T the power of two at or above sqrt(L), Q·T >= L (== for powers of two)."""
    T = 1 << ((L - 1).bit_length() + 1) // 2
    return -(-L // T), T


class LongFilter(nn.Module):
    """Base class: subclasses implement `impulse(L)`; this adds the two-sided kernel and caching."""

    caches_spectrum = True

    def __init__(self, bidirectional: bool):
        super().__init__()
        self.bidirectional = bidirectional
        self._spectra: dict[int, tuple[tuple, torch.Tensor]] = {}

    def impulse(self, L: int) -> torch.Tensor:
        """fp32 taps (C, L): F causal filters, then F reverse filters when bidirectional."""
        raise NotImplementedError

    def needs_grad(self) -> bool:
        """Whether autograd will track the filter now (training): then it is never cached."""
        return torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())

    def _param_key(self) -> tuple:
        return tuple((str(p.device), p.data_ptr(), p._version) for p in self.parameters())

    def kernel(self, L: int) -> torch.Tensor:
        """The real (F, 2L) convolution kernel, always freshly computed (see `two_sided_kernel`)."""
        # Filters are fp32 even under bf16 autocast: long, slowly decaying taps need the mantissa.
        with torch.autocast(next(self.parameters()).device.type, enabled=False):
            return two_sided_kernel(self.impulse(L), self.bidirectional)

    def spectrum(self, L: int) -> torch.Tensor:
        """Complex (F, L + 1) rFFT of the kernel; cached while no gradient is needed."""
        if not self.caches_spectrum or self.needs_grad():
            return torch.fft.rfft(self.kernel(L))
        key = self._param_key()
        hit = self._spectra.get(L)
        if hit is not None and hit[0] == key:
            return hit[1]
        spec = torch.fft.rfft(self.kernel(L))
        if len(self._spectra) >= 8:
            self._spectra.clear()
        self._spectra[L] = (key, spec)
        return spec


class ModalFilter(LongFilter):
    """h_c(t) = Re Σ_k r_ck·exp(λ_ck·t) with λ = -softplus(a) + i·b, so Re λ < 0 for any parameters.

    Poles and residues are fp32 parameters. The time index is split as t = T·q + j, so the taps of
    all filters come out of one small batched matmul instead of a (filters × modes × L) tensor.
    """

    def __init__(self, num_filters: int, num_modes: int, max_len: int, bidirectional: bool):
        super().__init__(bidirectional)
        C = num_filters * (2 if bidirectional else 1)
        self.num_filters, self.num_modes, self.max_len = num_filters, num_modes, max_len
        self.decay_CS = nn.Parameter(torch.empty(C, num_modes))
        self.freq_CS = nn.Parameter(torch.empty(C, num_modes))
        self.residue_re_CS = nn.Parameter(torch.empty(C, num_modes))
        self.residue_im_CS = nn.Parameter(torch.empty(C, num_modes))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Decay rates log-uniform in [1/max_len, 1], frequencies uniform in [0, π], unit filter energy."""
        lo, hi = math.log(1.0 / self.max_len), 0.0
        alpha = torch.empty_like(self.decay_CS).uniform_(lo, hi).exp()
        self.decay_CS.copy_(torch.log(torch.expm1(alpha)))  # softplus^-1
        self.freq_CS.uniform_(0.0, math.pi)
        # Mode k has energy |r|²/(1 - e^{-2α}) ≈ |r|²/(2α): scale so each filter has energy ≈ 1.
        scale = (2 * alpha / self.num_modes).sqrt() / math.sqrt(2)
        self.residue_re_CS.copy_(torch.randn_like(alpha) * scale)
        self.residue_im_CS.copy_(torch.randn_like(alpha) * scale)

    def poles(self) -> torch.Tensor:
        """Continuous-time poles λ (C, S), complex128; Re λ < 0 by construction."""
        a, b = self.decay_CS.double(), self.freq_CS.double()
        return torch.complex(-nn.functional.softplus(a), b)

    def residues(self) -> torch.Tensor:
        return torch.complex(self.residue_re_CS.double(), self.residue_im_CS.double())

    def _modes(self, step: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Re and Im of exp(λ·step·i) for i = 0..n-1, each (C, S, n) fp32.

        The per-step phase b·step is reduced mod 2π in fp64 first, so the fp32 phases stay below
        2π·n and accurate to ~1e-5 rad even where b·t itself reaches 1e4–1e5. Decays are floored
        at e^-30 (1e-13, negligible next to any tap): exp() of very negative inputs and matmuls
        over products of tiny values hit fp32 denormals, which made this ~10x slower on CPU.
        """
        i_N = step_index(n, self.decay_CS.device)
        rate_CS = nn.functional.softplus(self.decay_CS) * step
        turn_CS = torch.remainder(self.freq_CS.double() * step, 2 * math.pi).float()
        decay = torch.exp((-rate_CS[:, :, None] * i_N).clamp_min(-30.0))
        phase = turn_CS[:, :, None] * i_N
        return decay * torch.cos(phase), decay * torch.sin(phase)

    def impulse(self, L: int) -> torch.Tensor:
        # h(Tq + j) = Re Σ_k [r_k·e^{λ_k Tq}]·e^{λ_k j}: one real matmul over [Re, -Im] ⊗ [Re; Im].
        Q, T = split_length(L)
        c_re, c_im = self._modes(T, Q)
        r_re, r_im = self.residue_re_CS[:, :, None], self.residue_im_CS[:, :, None]
        a_re, a_im = r_re * c_re - r_im * c_im, r_re * c_im + r_im * c_re
        f_re, f_im = self._modes(1, T)
        a_CQ2S = torch.cat([a_re, -a_im], dim=1).transpose(1, 2).contiguous()  # bmm is 10x slower on strides
        b_C2ST = torch.cat([f_re, f_im], dim=1)
        h_CL = torch.bmm(a_CQ2S, b_C2ST).reshape(a_CQ2S.shape[0], -1)
        return h_CL if h_CL.shape[1] == L else h_CL[:, :L]

    def chunk_response(self, u_BDC: torch.Tensor, state_BFGS: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal convolution of one chunk that continues a stream; returns (y_BDC fp32, new state).

        The state after position p is s_k = Σ_{s<=p} exp(λ_k·(p - s))·u_s, one complex number per
        channel and mode, so y_{p+1+j} = (h ∗ chunk)_j + Re Σ_k r_k·exp(λ_k·(j + 1))·s_k and
        s ← exp(λ·C)·s + Σ_j exp(λ·(C - 1 - j))·u_j. Memory is O(channels × modes), not O(length).
        """
        if self.bidirectional:
            raise ValueError("streaming needs a causal filter: bidirectional (MLM) models see the whole sequence")
        B, D, C = u_BDC.shape
        F = self.num_filters
        powers_FST = torch.complex(*self._modes(1, C + 1))  # exp(λ·t), t = 0..C
        r_FS = torch.complex(self.residue_re_CS, self.residue_im_CS)
        from_past_FSC = r_FS[:, :, None] * powers_FST[..., 1:]  # r·exp(λ·(j + 1))
        to_state_FSC = powers_FST[..., :C].flip(-1)  # exp(λ·(C - 1 - j))
        u_BFGC = u_BDC.float().view(B, F, D // F, C)
        past_BFGC = torch.einsum("bfgs,fsc->bfgc", state_BFGS, from_past_FSC).real
        y_BDC = fftconv_spectrum(u_BDC, self.spectrum(C)) + past_BFGC.reshape(B, D, C)
        state_BFGS = state_BFGS * powers_FST[None, :, None, :, C] + torch.einsum(
            "bfgc,fsc->bfgs", u_BFGC.to(torch.complex64), to_state_FSC
        )
        return y_BDC, state_BFGS


class Sin(nn.Module):
    """sin(w ⊙ x) with a learnable frequency per feature (the implicit filter's activation)."""

    def __init__(self, dim: int, w: float = 1.0):
        super().__init__()
        self.freq = nn.Parameter(torch.full((dim,), w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class ImplicitFilter(LongFilter):
    """HyenaDNA's filter: an MLP with sine activations over positional features, times an exponential window.

    Features of position t are [t/max_len, cos(2π f t/max_len), -sin(2π f t/max_len)] for
    (emb_dim - 1)/2 bands f; the MLP maps them to one tap per filter; the window
    exp(-|δ_c|·t/max_len) gives each filter its own decay (HyenaDNA's ExponentialModulation,
    fast 0.3 / slow 1.5 decay fractions to a 1e-2 target). Regenerated on every call, as in
    the original.
    """

    caches_spectrum = False

    def __init__(
        self, num_filters: int, max_len: int, bidirectional: bool, emb_dim: int = 5, order: int = 64, n_inner: int = 2
    ):
        super().__init__(bidirectional)
        if emb_dim < 3 or emb_dim % 2 == 0:
            raise ValueError(f"hyena.filter_emb_dim={emb_dim} must be odd and >= 3 (time plus cos/sin bands)")
        C = num_filters * (2 if bidirectional else 1)
        self.max_len, self.emb_dim = max_len, emb_dim
        layers: list[nn.Module] = [nn.Linear(emb_dim, order), Sin(order)]
        for _ in range(n_inner):
            layers += [nn.Linear(order, order), Sin(order)]
        self.mlp = nn.Sequential(*layers)
        self.to_taps = nn.Linear(order, C, bias=False)
        target, fast, slow = math.log(1e-2), 0.3, 1.5
        self.register_buffer("deltas_C", torch.linspace(target / slow, target / fast, C).abs(), persistent=False)

    def reset_parameters(self) -> None:
        self.to_taps.reset_parameters()
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                m.reset_parameters()
            elif isinstance(m, Sin):
                nn.init.ones_(m.freq)

    def features(self, L: int) -> torch.Tensor:
        t_L = torch.arange(L, dtype=torch.float32, device=self.deltas_C.device)
        bands = (self.emb_dim - 1) // 2
        f = torch.linspace(1e-4, bands - 1, bands, device=t_L.device)
        w_LB = 2 * math.pi * t_L[:, None] * f / self.max_len
        return torch.cat([t_L[:, None] / self.max_len, torch.cos(w_LB), -torch.sin(w_LB)], dim=-1)

    def impulse(self, L: int) -> torch.Tensor:
        z_LE = self.features(L)
        window_CL = torch.exp(-(z_LE[:, 0] * self.deltas_C[:, None]))
        # W·hiddenᵀ gives taps as contiguous (C, L) rows; the later kernel ops are 5x slower on a transpose.
        return torch.matmul(self.to_taps.weight, self.mlp(z_LE).mT) * window_CL
