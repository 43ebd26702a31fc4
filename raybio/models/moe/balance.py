"""Aux-loss-free load balancing (DeepSeek-V3): one bias step per optimizer step, for all layers at once.

`b_e += rate · sign(mean load − load_e)` over the slots each expert received since the last
step, summed over every worker. `attach_bias_update(optimizer, model)` runs it as an
optimizer step pre-hook, so every caller of the optimizer (the training loop, the probe, a
test) updates the biases, and the loads of all layers travel in one all-reduce.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from raybio.models.moe.router import AuxFreeRouter


def aux_free_routers(model: nn.Module) -> list[AuxFreeRouter]:
    return [m for m in model.modules() if isinstance(m, AuxFreeRouter)]


@torch.no_grad()
def update_expert_biases(routers: list[AuxFreeRouter], skipped: torch.Tensor | None = None) -> None:
    """One bias step for every router, from the loads pending since the last call.

    Collective when torch.distributed is initialised: every rank calls it once per optimizer
    step (all ranks step together), so the biases stay identical everywhere. Where `skipped`
    (the optimizer's on-device `found_inf`, 1.0 for a step that is not applied) is set, the
    biases stay and the loads carry over to the next step. Nothing is read on the host.
    """
    if not routers:
        return
    loads = [r.pending_load_E if r.pending_load_E is not None else r.expert_bias_E.new_zeros(r.cfg.num_experts)
             for r in routers]  # fmt: skip
    flat = torch.cat(loads)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(flat)
    applied = 1.0 if skipped is None else 1.0 - skipped
    for r, local_E, load_E in zip(routers, loads, flat.split([len(x) for x in loads]), strict=True):
        # sign(mean - load) is 0 everywhere when no slot was routed: the biases stay.
        r.expert_bias_E += applied * r.cfg.bias_update_rate * torch.sign(load_E.mean() - load_E)
        r.pending_load_E = None if skipped is None else local_E * skipped


def attach_bias_update(optimizer: torch.optim.Optimizer, model: nn.Module):
    """Register the bias step as a step pre-hook of `optimizer` (no-op without aux-free routers)."""
    routers = aux_free_routers(model)
    if not routers:
        return None
    return optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: update_expert_biases(routers, getattr(opt, "found_inf", None))
    )
