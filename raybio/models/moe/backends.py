"""Expert compute backends: run E SwiGLU experts over rows already sorted by expert.

Every backend takes the same inputs (rows grouped by expert, per-expert row counts, the
stacked weights) and returns the expert outputs in the same row order, so routing and
dispatch are shared and the backends differ only in the GEMMs:

- `grouped`: `torch._grouped_mm`, one call per projection for all experts (CPU in torch
  >= 2.9, CUDA where the build and GPU support it).
- `loop`: a Python loop over experts, each a matmul on its contiguous slice.
- `megablocks`: MegaBlocks' grouped GEMM (`megablocks.grouped_gemm_util`, the kernel its
  dropless `GroupedGLU` experts run), CUDA and bf16 only, from the optional `gpu` extra.

`resolve(name, ...)` maps the config's backend name onto one of these: `torch` is grouped
where `_grouped_mm` works for this device, dtype and shape, else loop; `auto` is MegaBlocks
on CUDA when it imports, else `torch`.

Shapes: S routed slots (sorted by expert), D d_model, H expert hidden, E experts, K/N a GEMM's inner/outer dims.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import register_flop_formula

# (rows_SD sorted by expert, counts_E, w1_EDH, w3_EDH, w2_EHD) -> outputs_SD
ExpertFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype matmuls run in here: autocast's when it is on for x's device, else x's own."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def loop_experts(xs_SD, counts_E, w1_EDH, w3_EDH, w2_EHD) -> torch.Tensor:
    """One matmul per expert over its contiguous slice of rows."""
    dtype = compute_dtype(xs_SD)
    xs_SD = xs_SD.to(dtype)
    # unbind, not w[e]: each w[e]'s backward would allocate a zero gradient of the whole stack.
    w1s, w3s, w2s = (w.to(dtype).unbind(0) for w in (w1_EDH, w3_EDH, w2_EHD))
    outs, start = [], 0
    for e, n in enumerate(counts_E.tolist()):
        if n:
            x = xs_SD[start : start + n]
            outs.append((F.silu(x @ w1s[e]) * (x @ w3s[e])) @ w2s[e])
        start += n
    return torch.cat(outs) if outs else xs_SD.new_zeros(0, w2_EHD.shape[-1])


def _fresh(g: torch.Tensor) -> torch.Tensor:
    """`g` laid out densely: `_grouped_mm`'s backward rejects zero-stride gradients (e.g. from
    `.sum()`, which expands, or any empty tensor) and needs 16-byte-aligned strides."""
    if g.is_contiguous() and g.numel():
        return g
    return torch.empty(g.shape, dtype=g.dtype, device=g.device).copy_(g)


class _FreshGrad(torch.autograd.Function):
    """Identity whose backward hands on `_fresh(gradient)` (for `_grouped_mm`'s own backward)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        return _fresh(g)


class _CPUGroupedMM(torch.autograd.Function):
    """`_grouped_mm` on CPU with a faster weight gradient.

    torch's CPU fallback computes the weight gradient (a 2-D x 2-D grouped product) at about
    half the speed of plain `mm` (measured with torch 2.13: 70 vs 120 GFLOP/s for 64 experts
    of 128 rows, d 512); per-expert `mm` into one buffer runs at full speed.
    """

    @staticmethod
    def forward(ctx, a_SK: torch.Tensor, b_EKN: torch.Tensor, offs_E: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a_SK, b_EKN, offs_E)
        return torch._grouped_mm(a_SK, b_EKN, offs=offs_E)

    @staticmethod
    def backward(ctx, g_SN: torch.Tensor):
        a_SK, b_EKN, offs_E = ctx.saved_tensors
        g_SN = _fresh(g_SN)
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = torch._grouped_mm(g_SN, b_EKN.transpose(-2, -1), offs=offs_E)
        if ctx.needs_input_grad[1]:
            grad_b = torch.empty_like(b_EKN)
            start = 0
            for e, end in enumerate(offs_E.tolist()):
                torch.mm(a_SK[start:end].t(), g_SN[start:end], out=grad_b[e])  # zeros when the slice is empty
                start = end
        return grad_a, grad_b, None


def _gmm(a_SK: torch.Tensor, b_EKN: torch.Tensor, offs_E: torch.Tensor) -> torch.Tensor:
    if a_SK.device.type == "cpu":
        return _CPUGroupedMM.apply(a_SK, b_EKN, offs_E)
    return _FreshGrad.apply(torch._grouped_mm(a_SK, b_EKN, offs=offs_E))


def grouped_experts(xs_SD, counts_E, w1_EDH, w3_EDH, w2_EHD) -> torch.Tensor:
    """All experts in one `torch._grouped_mm` per projection."""
    dtype = compute_dtype(xs_SD)
    offs_E = counts_E.cumsum(0).to(torch.int32)
    xs_SD = xs_SD.to(dtype).contiguous()
    h_SH = F.silu(_gmm(xs_SD, w1_EDH.to(dtype), offs_E)) * _gmm(xs_SD, w3_EDH.to(dtype), offs_E)
    return _gmm(h_SH, w2_EHD.to(dtype), offs_E)


@functools.cache
def _load_megablocks():
    """MegaBlocks' gmm, or the ImportError explaining why not: a failure is cached like a success,
    so `backend='auto'` on a GPU without MegaBlocks tries the import once, not every forward."""
    try:
        from megablocks import grouped_gemm_util as gg
    except Exception as err:  # ImportError, or megablocks failing to initialise without CUDA
        return ImportError(
            f"moe.backend='megablocks' needs MegaBlocks with CUDA ({type(err).__name__}: {err}); "
            f"install the GPU extra (pip install 'raybio[gpu]', which pins torch 2.7) on a CUDA machine, "
            f"or use moe.backend='torch'"
        )
    if gg.ops is None:
        return ImportError("MegaBlocks imports but its grouped_gemm kernels are missing; reinstall 'raybio[gpu]'")
    return gg.ops.gmm


def _megablocks_gmm():
    loaded = _load_megablocks()
    if isinstance(loaded, ImportError):
        raise loaded
    return loaded


def megablocks_experts(xs_SD, counts_E, w1_EDH, w3_EDH, w2_EHD) -> torch.Tensor:
    """MegaBlocks' grouped GEMM (bf16 only: the kernel checks it)."""
    gmm = _megablocks_gmm()
    if not xs_SD.is_cuda:
        raise ValueError("moe.backend='megablocks' runs on CUDA only; use moe.backend='torch' on CPU")
    batch_sizes = counts_E.cpu().long()  # the kernel reads group sizes on the host
    bf16 = torch.bfloat16
    x = xs_SD.to(bf16).contiguous()
    h = F.silu(gmm(x, w1_EDH.to(bf16), batch_sizes)) * gmm(x, w3_EDH.to(bf16), batch_sizes)
    return gmm(h, w2_EHD.to(bf16), batch_sizes).to(compute_dtype(xs_SD))


@functools.cache
def _grouped_mm_works(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether `_grouped_mm` runs forward and backward here (builds and GPUs differ)."""
    if not hasattr(torch, "_grouped_mm"):
        return False
    try:
        with torch.enable_grad(), torch.autocast(device.type, enabled=False):
            a = torch.randn(8, 16, device=device, dtype=dtype, requires_grad=True)
            b = torch.randn(2, 16, 16, device=device, dtype=dtype, requires_grad=True)
            offs = torch.tensor([3, 8], device=device, dtype=torch.int32)
            _gmm(a, b, offs).sum().backward()
        return True
    except (RuntimeError, NotImplementedError):
        return False


def grouped_supported(x: torch.Tensor, d_model: int, hidden: int) -> bool:
    """`_grouped_mm` works for this device and dtype, and row strides are 16-byte aligned."""
    dtype = compute_dtype(x)
    size = torch.empty((), dtype=dtype).element_size()
    aligned = (d_model * size) % 16 == 0 and (hidden * size) % 16 == 0
    return aligned and _grouped_mm_works(x.device, dtype)


BACKENDS: dict[str, ExpertFn] = {"grouped": grouped_experts, "loop": loop_experts, "megablocks": megablocks_experts}


def resolve(name: str, x: torch.Tensor, d_model: int, hidden: int) -> str:
    """The concrete backend ('grouped', 'loop' or 'megablocks') that `moe.backend = name` means here."""
    if name == "megablocks":
        _megablocks_gmm()  # a clear ImportError now rather than at the first GEMM
        return "megablocks"
    if name == "auto" and x.is_cuda:
        try:
            _megablocks_gmm()
            return "megablocks"
        except ImportError:
            pass
    if name == "loop":
        return "loop"
    return "grouped" if grouped_supported(x, d_model, hidden) else "loop"


@register_flop_formula(torch.ops.aten._grouped_mm)
def _grouped_mm_flops(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    """2·M·K·N summed over groups, so `FlopCounterMode` sees grouped experts as it sees matmuls."""
    if len(a_shape) == 2 and len(b_shape) == 2:  # (M, K_total) x (K_total, N): groups split K
        return 2 * a_shape[0] * a_shape[1] * b_shape[1]
    out = 1
    for n in out_shape:
        out *= n
    return 2 * out * a_shape[-1]
