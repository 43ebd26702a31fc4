"""Expert compute backends: run E SwiGLU experts over rows already sorted by expert.

Every backend takes the same inputs (rows grouped by expert, per-expert row counts, the
stacked weights) and returns the expert outputs in the same row order, so routing and
dispatch are shared and the backends differ only in the GEMMs:

- `grouped`: `torch._grouped_mm`, one call per projection for all experts (CPU in torch
  >= 2.9, CUDA where the build and GPU support it). On CPU it runs inside the custom op
  `raybio::grouped_mm` (with its own backward), which `torch.compile` keeps whole.
- `loop`: a Python loop over experts, each a matmul on its contiguous slice.
- `megablocks`: MegaBlocks' grouped GEMM (`megablocks.grouped_gemm_util`, the kernel its
  dropless `GroupedGLU` experts run), CUDA and bf16 only, from the optional `gpu` extra.

`resolve(name, device, dtype, ...)` maps the config's backend name onto one of these: `torch` is grouped
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


# `_grouped_mm` on CPU as an op Dynamo does not look inside: torch's meta function for it demands
# BF16, so fp32 models could not compile, and the weight gradient runs faster per expert (below).


@torch.library.custom_op("raybio::grouped_mm", mutates_args=())
def grouped_mm(a_SK: torch.Tensor, b_EKN: torch.Tensor, offs_E: torch.Tensor) -> torch.Tensor:
    """Rows [offs[e-1], offs[e]) of `a_SK` times `b_EKN[e]`, for every expert e (CPU)."""
    return torch._grouped_mm(a_SK, b_EKN, offs=offs_E)


@grouped_mm.register_fake
def _(a_SK, b_EKN, offs_E):
    return a_SK.new_empty(a_SK.shape[0], b_EKN.shape[-1])


@torch.library.custom_op("raybio::grouped_mm_grad_a", mutates_args=())
def grouped_mm_grad_a(g_SN: torch.Tensor, b_EKN: torch.Tensor, offs_E: torch.Tensor) -> torch.Tensor:
    """The input gradient: g times each expert's bᵀ."""
    return torch._grouped_mm(_fresh(g_SN), b_EKN.transpose(-2, -1), offs=offs_E)


@grouped_mm_grad_a.register_fake
def _(g_SN, b_EKN, offs_E):
    return g_SN.new_empty(g_SN.shape[0], b_EKN.shape[1])


@torch.library.custom_op("raybio::grouped_mm_grad_b", mutates_args=())
def grouped_mm_grad_b(a_SK: torch.Tensor, g_SN: torch.Tensor, offs_E: torch.Tensor) -> torch.Tensor:
    """The weight gradient aᵀ·g per expert, with plain `mm` into one buffer: torch's CPU fallback (a 2-D x 2-D
    grouped product) runs at about half the speed of `mm` (measured with torch 2.13: 70 vs 120 GFLOP/s for
    64 experts of 128 rows, d 512)."""
    g_SN = _fresh(g_SN)
    grad_EKN = a_SK.new_empty(len(offs_E), a_SK.shape[1], g_SN.shape[1])
    start = 0
    for e, end in enumerate(offs_E.tolist()):
        torch.mm(a_SK[start:end].t(), g_SN[start:end], out=grad_EKN[e])  # zeros when the slice is empty
        start = end
    return grad_EKN


@grouped_mm_grad_b.register_fake
def _(a_SK, g_SN, offs_E):
    return a_SK.new_empty(offs_E.shape[0], a_SK.shape[1], g_SN.shape[1])


def _grouped_mm_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _grouped_mm_backward(ctx, g_SN: torch.Tensor):
    a_SK, b_EKN, offs_E = ctx.saved_tensors
    grad_a = grouped_mm_grad_a(g_SN, b_EKN, offs_E) if ctx.needs_input_grad[0] else None
    grad_b = grouped_mm_grad_b(a_SK, g_SN, offs_E) if ctx.needs_input_grad[1] else None
    return grad_a, grad_b, None


grouped_mm.register_autograd(_grouped_mm_backward, setup_context=_grouped_mm_setup)


def _gmm(a_SK: torch.Tensor, b_EKN: torch.Tensor, offs_E: torch.Tensor) -> torch.Tensor:
    if a_SK.device.type == "cpu":
        return grouped_mm(a_SK, b_EKN, offs_E)
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


BACKENDS: dict[str, ExpertFn] = {"grouped": grouped_experts, "loop": loop_experts, "megablocks": megablocks_experts}


# A compiled model takes the answer found while tracing as a constant, so the probe (which runs a
# backward pass, once per setting) never enters a graph.
@torch.compiler.assume_constant_result
def resolve(name: str, device: torch.device, dtype: torch.dtype, d_model: int, hidden: int) -> str:
    """The concrete backend ('grouped', 'loop' or 'megablocks') that `moe.backend = name` means for
    matmuls in `dtype` on `device`: grouped needs `_grouped_mm` to work there and 16-byte-aligned rows."""
    if name == "megablocks":
        _megablocks_gmm()  # a clear ImportError now rather than at the first GEMM
        return "megablocks"
    if name == "auto" and device.type == "cuda":
        try:
            _megablocks_gmm()
            return "megablocks"
        except ImportError:
            pass
    if name == "loop":
        return "loop"
    aligned = (d_model * dtype.itemsize) % 16 == 0 and (hidden * dtype.itemsize) % 16 == 0
    return "grouped" if aligned and _grouped_mm_works(device, dtype) else "loop"


@register_flop_formula(torch.ops.aten._grouped_mm)
def _grouped_mm_flops(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    """2·M·K·N summed over groups, so `FlopCounterMode` sees grouped experts as it sees matmuls."""
    if len(a_shape) == 2 and len(b_shape) == 2:  # (M, K_total) x (K_total, N): groups split K
        return 2 * a_shape[0] * a_shape[1] * b_shape[1]
    out = 1
    for n in out_shape:
        out *= n
    return 2 * out * a_shape[-1]


# raybio's CPU grouped GEMMs, forward and backward: FlopCounterMode sees the custom ops, not the aten ops inside.
@register_flop_formula(torch.ops.raybio.grouped_mm)
def _raybio_grouped_mm_flops(a_shape, b_shape, offs_shape, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1] * b_shape[-1]  # S·K·N


@register_flop_formula(torch.ops.raybio.grouped_mm_grad_a)
def _raybio_grad_a_flops(g_shape, b_shape, offs_shape, out_shape=None, **kwargs) -> int:
    return 2 * g_shape[0] * g_shape[1] * b_shape[1]  # S·N·K


@register_flop_formula(torch.ops.raybio.grouped_mm_grad_b)
def _raybio_grad_b_flops(a_shape, g_shape, offs_shape, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1] * g_shape[1]  # S·K·N
