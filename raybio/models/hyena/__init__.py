"""HyenaLite: gated long convolutions with a cached modal filter (HyenaMoE §3.1)."""

from raybio.models.hyena.fftconv import fftconv, kernel_spectrum
from raybio.models.hyena.filters import ImplicitFilter, ModalFilter
from raybio.models.hyena.operator import HyenaLite, HyenaState

__all__ = ["HyenaLite", "HyenaState", "ImplicitFilter", "ModalFilter", "fftconv", "kernel_spectrum"]
