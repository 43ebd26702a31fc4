"""`router_metrics(model)`: the router statistics of every MoE layer as report scalars (see stats.py)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from raybio.models.moe.layer import moe_layers
from raybio.models.moe.stats import _SUMS


@torch.no_grad()
def router_metrics(model: nn.Module) -> dict[str, float]:
    """`router/layer{i}/<name>` scalars for every MoE layer since the previous call.

    Collective when torch.distributed is initialised: every rank must call it at the same step.
    """
    layers = moe_layers(model)
    if not layers:
        return {}
    device = next(model.parameters()).device
    windows = [m.stats.window(device) for m in layers]
    summed = torch.cat([torch.cat(w) for w in windows])
    idle = torch.cat([m.stats.idle(device) for m in layers])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(summed)
        dist.all_reduce(idle, op=dist.ReduceOp.MIN)
    out: dict[str, float] = {}
    offset = 0
    for i, m in enumerate(layers):
        E = m.stats.num_experts
        load_E = summed[offset : offset + E]
        s = dict(zip(_SUMS, summed[offset + E : offset + E + len(_SUMS)].tolist(), strict=True))
        idle_E = idle[i * E : (i + 1) * E]
        offset += E + len(_SUMS)
        if not s["passes"]:
            continue  # no training forward in this window
        per_pass_E = load_E / s["passes"]  # both summed over workers: the per-worker average
        mean = per_pass_E.mean().clamp(min=1e-9)
        prefix = f"router/layer{i}/"
        out.update({f"{prefix}tokens_e{j}": v for j, v in enumerate(per_pass_E.tolist())})
        out[f"{prefix}max_over_mean_load"] = (per_pass_E.max() / mean).item()
        out[f"{prefix}load_cv"] = (per_pass_E.std(unbiased=False) / mean).item()
        out[f"{prefix}dead_experts"] = float((idle_E >= m.stats.dead_window).sum().item())
        out[f"{prefix}routing_entropy"] = s["entropy"] / max(s["tokens"], 1)
        out[f"{prefix}aux_loss"] = s["aux_loss"] / s["passes"]
        out[f"{prefix}z_loss"] = s["z_loss"] / s["passes"]
        out[f"{prefix}drop_fraction"] = s["dropped"] / max(s["slots"], 1)
    return out
