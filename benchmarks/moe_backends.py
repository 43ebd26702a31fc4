"""MoE backends on one GPU: MegaBlocks vs raybio's native grouped GEMM vs a dense FFN of equal active FLOPs.

Forward+backward tokens/s and MFU (analytic FLOPs: 3 SwiGLU matmuls of d_model × hidden per
routed token, ×3 for forward+backward, over the GPU's datasheet bf16 peak) of one layer,
d_model 1024, expert hidden 1024, bf16 autocast, for E in {8, 64} and top-k in {1, 2}.
Needs CUDA; MegaBlocks is skipped (and said so) where the `gpu` extra is not installed.
The JSON line (last) carries every figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json

import torch

from raybio.config import MoEConfig
from raybio.models.layers import SwiGLU
from raybio.models.moe import MoE
from raybio.train.metrics import gpu_peak_flops

D, HE = 1024, 1024


def time_fwd_bwd(module, x: torch.Tensor, reps: int) -> float:
    """Median seconds of forward + backward, timed with CUDA events after 3 warm-up steps."""
    times = []
    for i in range(3 + reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = module(x)
        (out[0] if isinstance(out, tuple) else out).float().square().mean().backward()
        end.record()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end) / 1e3)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=16384, help="tokens per step (default 16384)")
    ap.add_argument("--reps", type=int, default=10, help="timed repeats (median reported)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: benchmarks/moe_backends.py needs CUDA (a GPU); nothing was measured")
    device = torch.device("cuda")
    peak = gpu_peak_flops(device)
    backends = ["torch"] + (["megablocks"] if importlib.util.find_spec("megablocks") else [])
    if "megablocks" not in backends:
        print("megablocks not installed (pip install -e '.[gpu]'): MegaBlocks rows skipped")
    x = torch.randn(args.tokens // 512, 512, D, device=device, requires_grad=True)
    rows = []
    print(f"{torch.cuda.get_device_name(device)}, {args.tokens} tokens/step, d_model {D}, expert hidden {HE}, bf16")
    print(f"{'E':>3} {'k':>2} {'variant':>11} {'tokens/s':>12} {'MFU':>6}")
    for e in (8, 64):
        for k in (1, 2):
            flops_per_token = 3 * (3 * 2 * D * HE * k)  # fwd+bwd of k SwiGLU experts
            variants = {f"moe_{b}": MoE(D, HE, MoEConfig(num_experts=e, top_k=k, backend=b)) for b in backends}
            variants["dense"] = SwiGLU(D, k * HE)
            for name, module in variants.items():
                sec = time_fwd_bwd(module.to(device), x, args.reps)
                tps = args.tokens / sec
                mfu = tps * flops_per_token / peak if peak else None
                rows.append({"experts": e, "top_k": k, "variant": name, "tokens_per_s": round(tps), "mfu": mfu})
                print(f"{e:>3} {k:>2} {name:>11} {tps:>12,.0f} {'' if mfu is None else f'{mfu:.1%}':>6}")
    print(json.dumps({"benchmark": "moe_backends", "device": torch.cuda.get_device_name(device), "rows": rows}))


if __name__ == "__main__":
    main()
