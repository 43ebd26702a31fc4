"""Dispatch: sort routed slots by expert, optionally drop overflow, exchange across EP ranks, combine.

A token routed to k experts occupies k *slots*. Slots are sorted by expert (stable, so
within an expert they keep token order), gathered into one contiguous block per expert,
run through the experts, and summed back into their tokens weighted by their gates.
Dropless, the sort is a permutation of all T·k slots, so both directions are gathers, forward
and backward (`gather_tokens`, `combine`): no scatter-add, which runs slowly on CPU and
non-deterministically (atomics) on CUDA. With drops they fall back to `index_add`.

Dropless by default. With a capacity factor c each expert takes at most
ceil(c · T · k / E) slots of this rank's T tokens; later tokens overflow and that expert
contributes nothing to them (the residual stream carries them on), as in Switch.

Shapes: T tokens, K top-k slots per token, S slots (T·K), E experts, P expert-parallel ranks, X this rank's
experts, R slots received from all ranks, D d_model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist

from raybio.models.moe.experts import ExpertShard
from raybio.models.moe.router import expert_counts


@dataclass
class Dispatch:
    """Where each kept slot comes from and goes to, in expert-sorted order (S kept slots)."""

    slot_S: torch.Tensor  # slot index (token · k + choice) of each kept slot
    token_S: torch.Tensor  # token index of each kept slot
    inverse_S: torch.Tensor | None  # where each of the T·k slots sits in sorted order; None when slots were dropped
    weights_S: torch.Tensor  # its gate weight (fp32)
    counts_E: torch.Tensor  # kept slots per expert (global expert ids)
    routed_E: torch.Tensor  # slots the router sent to each expert, before any drop
    dropped: torch.Tensor  # number of dropped slots (0-dim)
    num_slots: int  # T · k


def plan_dispatch(
    experts_TK: torch.Tensor, weights_TK: torch.Tensor, num_experts: int, capacity_factor: float | None
) -> Dispatch:
    """Sort the T·k slots by expert and apply the capacity limit, if any."""
    T, K = experts_TK.shape
    flat_S = experts_TK.reshape(-1)
    order_S = flat_S.argsort(stable=True)
    routed_E = expert_counts(flat_S, num_experts)
    counts_E, dropped = routed_E, routed_E.new_zeros(())
    if capacity_factor is not None:
        capacity = math.ceil(capacity_factor * T * K / num_experts)
        expert_S = flat_S[order_S]
        first_E = routed_E.cumsum(0) - routed_E
        rank_in_expert_S = torch.arange(len(order_S), device=flat_S.device) - first_E[expert_S]
        keep_S = rank_in_expert_S < capacity
        order_S = order_S[keep_S]
        counts_E = routed_E.clamp(max=capacity)
        dropped = (~keep_S).sum()
    inverse_S = None
    if capacity_factor is None:
        inverse_S = torch.empty_like(order_S).scatter_(0, order_S, torch.arange(len(order_S), device=order_S.device))
    return Dispatch(
        slot_S=order_S,
        token_S=order_S // K,
        inverse_S=inverse_S,
        weights_S=weights_TK.reshape(-1)[order_S],
        counts_E=counts_E,
        routed_E=routed_E,
        dropped=dropped,
        num_slots=T * K,
    )


class _Gather(torch.autograd.Function):
    """`x.index_select(0, index)` whose backward is a gather too: `g.index_select(0, back)` summed over groups of
    `k` rows. Right when `index` repeats each row of x k times in the order `back` inverts."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor, back: torch.Tensor, k: int) -> torch.Tensor:
        ctx.save_for_backward(back)
        ctx.k = k
        return x.index_select(0, index)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (back,) = ctx.saved_tensors
        g = g.index_select(0, back)
        return g.view(-1, ctx.k, g.shape[-1]).sum(1), None, None, None


def gather_tokens(x_TD: torch.Tensor, d: Dispatch) -> torch.Tensor:
    """Each kept slot's token row, in expert-sorted order."""
    if d.inverse_S is None:
        return x_TD.index_select(0, d.token_S)  # backward: index_add, cheaper than indexing's index_put
    return _Gather.apply(x_TD, d.token_S, d.inverse_S, d.num_slots // len(x_TD))


def combine(ys_SD: torch.Tensor, d: Dispatch, num_tokens: int) -> torch.Tensor:
    """Σ over each token's kept slots of gate · expert output, in fp32."""
    weighted_SD = ys_SD.float() * d.weights_S.unsqueeze(-1)
    if d.inverse_S is None:
        out_TD = weighted_SD.new_zeros(num_tokens, ys_SD.shape[-1])
        return out_TD.index_add(0, d.token_S, weighted_SD)
    by_slot_SD = _Gather.apply(weighted_SD, d.inverse_S, d.slot_S, 1)  # token t's slots are rows t·k … t·k + k − 1
    return by_slot_SD.view(num_tokens, -1, ys_SD.shape[-1]).sum(1)


class _AllToAll(torch.autograd.Function):
    """`all_to_all_single` whose backward sends gradients back along the reverse route."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, recv: list[int], send: list[int], group) -> torch.Tensor:
        ctx.recv, ctx.send, ctx.group = recv, send, group
        out = x.new_empty(sum(recv), *x.shape[1:])
        dist.all_to_all_single(out, x.contiguous(), recv, send, group=group)
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        grad = g.new_empty(sum(ctx.send), *g.shape[1:])
        dist.all_to_all_single(grad, g.contiguous(), ctx.send, ctx.recv, group=ctx.group)
        return grad, None, None, None


class TokenExchange:
    """Send expert-sorted rows to the EP rank owning their expert, and bring the outputs back.

    Rank r owns experts [r·E/P, (r+1)·E/P), so expert-sorted rows are already grouped by
    destination. Received rows arrive grouped by source rank, then by local expert, and are
    regrouped by local expert for the expert GEMMs.
    """

    def __init__(self, counts_E: torch.Tensor, shard: ExpertShard):
        P = shard.size
        send_PX = counts_E.view(P, -1).contiguous()
        recv_PX = torch.empty_like(send_PX)
        dist.all_to_all_single(recv_PX, send_PX, group=shard.group)
        self.group = shard.group
        self.send = send_PX.sum(1).tolist()
        self.recv = recv_PX.sum(1).tolist()
        local_X = torch.arange(send_PX.shape[1], device=counts_E.device).repeat(P)
        self.order_R = torch.repeat_interleave(local_X, recv_PX.reshape(-1)).argsort(stable=True)
        self.inverse_R = torch.empty_like(self.order_R)
        self.inverse_R[self.order_R] = torch.arange(len(self.order_R), device=counts_E.device)
        self.local_counts_X = recv_PX.sum(0)

    def dispatch(self, xs_SD: torch.Tensor) -> torch.Tensor:
        """This rank's rows -> rows for this rank's experts, grouped by local expert."""
        return _AllToAll.apply(xs_SD, self.recv, self.send, self.group)[self.order_R]

    def combine(self, ys_RD: torch.Tensor) -> torch.Tensor:
        """Expert outputs -> back to the ranks (and row order) their inputs came from."""
        return _AllToAll.apply(ys_RD[self.inverse_R], self.send, self.recv, self.group)
