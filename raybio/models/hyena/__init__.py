"""HyenaLite: gated long convolutions with a cached modal filter (HyenaMoE §3.1)."""

from raybio.models.hyena.fftconv import fftconv, fftconv_spectrum, kernel_spectrum, two_sided_kernel
from raybio.models.hyena.filters import ImplicitFilter, ModalFilter
from raybio.models.hyena.operator import HyenaLite, HyenaState

__all__ = [
    "HyenaLite",
    "HyenaState",
    "ImplicitFilter",
    "ModalFilter",
    "fftconv",
    "fftconv_spectrum",
    "kernel_spectrum",
    "two_sided_kernel",
]
