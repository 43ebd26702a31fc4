"""Expert parallelism inside Ray Train workers: process groups, DDP wiring, gradients, checkpoints.

With W workers and `moe.ep_size` P, consecutive ranks [0, P), [P, 2P), ... form the
expert-parallel (EP) groups: each rank holds E/P experts of every MoE layer and tokens
travel to their experts by all-to-all inside the group (gloo on CPU, NCCL on GPU). Ranks
holding the same experts (r, r+P, r+2P, ...) are that shard's data-parallel replicas.
Everything else (attention, router, shared experts, embeddings) stays replicated on all
W ranks and is averaged by DDP as usual.

The loss on each rank is the mean over its own tokens and DDP averages gradients over W,
so the objective is (1/W) Σ_r L_r. An expert's gradient on its owner already sums the
contributions of every rank of its EP group (they flow back through the all-to-all);
summing over the shard's replicas and dividing by W gives the same gradient as EP=1.

Checkpoints hold full expert tensors (`full_state_dict`), and MoE layers slice them to
their shard on load, so a checkpoint written at one EP size loads at any other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from raybio.models.moe.experts import EXPERT_PARAMS, ExpertShard, RoutedExperts


@dataclass(frozen=True)
class ExpertParallel:
    """This worker's expert-parallel layout."""

    shard: ExpertShard  # EP rank, EP size and EP group
    replica_group: dist.ProcessGroup | None  # ranks holding the same experts; None when there is one
    world: int


def init_expert_parallel(ep_size: int, num_experts: int | None = None) -> ExpertParallel:
    """Create the EP and expert-replica process groups (collective: every rank calls it in the same order)."""
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            f"moe.ep_size={ep_size} needs torch.distributed: train through Ray Train's TorchTrainer "
            f"(train.num_workers >= ep_size) or call torch.distributed.init_process_group first"
        )
    world, rank = dist.get_world_size(), dist.get_rank()
    if world % ep_size:
        raise ValueError(
            f"moe.ep_size ({ep_size}) must divide the number of workers ({world}); "
            f"set train.num_workers to a multiple of moe.ep_size"
        )
    if num_experts is not None and num_experts % ep_size:
        raise ValueError(
            f"moe.ep_size ({ep_size}) must divide moe.num_experts ({num_experts}); "
            f"choose moe.ep_size among the divisors of moe.num_experts"
        )
    ep_group = replica_group = None
    # new_group is collective over the whole world: every rank creates every group.
    for start in range(0, world, ep_size):
        g = dist.new_group(list(range(start, start + ep_size)))
        if start <= rank < start + ep_size:
            ep_group = g
    if world > ep_size:
        for r in range(ep_size):
            g = dist.new_group(list(range(r, world, ep_size)))
            if rank % ep_size == r:
                replica_group = g
    return ExpertParallel(ExpertShard(rank % ep_size, ep_size, ep_group), replica_group, world)


def expert_params(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of every routed-expert weight in `model`."""
    return [(n, p) for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] in EXPERT_PARAMS]


def setup_expert_parallel(model: nn.Module, ep_size: int) -> ExpertParallel:
    """Make `model` (a freshly built BioLM, identical on every rank) expert-parallel.

    Call before `prepare_model` and before building the optimizer: experts are sliced to
    this rank's shard and hidden from DDP, which must not average different experts.
    """
    from raybio.models.moe import MoE

    layers = [m for m in model.modules() if isinstance(m, MoE)]
    ep = init_expert_parallel(ep_size, layers[0].cfg.num_experts if layers else None)
    for m in layers:
        m.shard_experts(ep.shard)
    names = [n for n, _ in expert_params(model)]
    torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)
    return ep


def reduce_expert_grads(model: nn.Module, ep: ExpertParallel | None) -> None:
    """After backward: expert gradients -> Σ over the shard's replicas / world (see module doc)."""
    if ep is None:
        return
    for _, p in expert_params(model):
        if p.grad is None:  # this rank's experts got no tokens this step
            p.grad = torch.zeros_like(p)
        if ep.replica_group is not None:
            dist.all_reduce(p.grad, group=ep.replica_group)
        p.grad.div_(ep.world)


def clip_grad_norm_(model: nn.Module, max_norm: float, ep: ExpertParallel | None) -> torch.Tensor:
    """`torch.nn.utils.clip_grad_norm_` over the whole model, counting every expert shard once."""
    if ep is None:
        return torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    expert = {id(p) for _, p in expert_params(model)}
    params = [p for p in model.parameters() if p.grad is not None]
    device = params[0].grad.device if params else torch.device("cpu")
    sq = torch.zeros(2, dtype=torch.float32, device=device)  # dense, expert
    for p in params:
        sq[int(id(p) in expert)] += p.grad.float().pow(2).sum()
    expert_sq = sq[1].clone()
    dist.all_reduce(expert_sq, group=ep.shard.group)  # each rank holds different experts
    total = (sq[0] + expert_sq).sqrt()
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(coef.to(p.grad.dtype))
    return total


@torch.no_grad()
def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """`model.state_dict()` with every sharded expert tensor gathered whole (collective under EP)."""
    state = model.state_dict()
    for name, m in model.named_modules():
        if isinstance(m, RoutedExperts) and m.shard is not None and m.shard.size > 1:
            for p in EXPERT_PARAMS:
                local = getattr(m, p).detach().contiguous()
                parts = [torch.empty_like(local) for _ in range(m.shard.size)]
                dist.all_gather(parts, local, group=m.shard.group)
                state[f"{name}.{p}" if name else p] = torch.cat(parts)
    return state
