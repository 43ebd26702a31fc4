"""The MoE FFN: router -> dispatch (sort, capacity, EP exchange) -> experts -> combine, + shared experts.

Shapes: B batch, L length, D d_model, T tokens (B·L), K top-k, S routed slots (T·K), E experts, H hidden.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from raybio.models.layers import SwiGLU
from raybio.models.moe import backends
from raybio.models.moe.dispatch import TokenExchange, combine, gather_tokens, plan_dispatch
from raybio.models.moe.experts import ExpertShard, RoutedExperts
from raybio.models.moe.router import build_router
from raybio.models.moe.stats import RouterStats

if TYPE_CHECKING:
    from raybio.models.config import MoEConfig


class MoE(nn.Module):
    """Top-k mixture of SwiGLU experts, with `num_shared_experts` SwiGLU experts every token uses.

    After each forward, `aux_loss` holds the router losses to add to the training loss and
    `tokens_per_expert` the slots each expert received (global expert ids, this rank's tokens).
    """

    def __init__(self, d_model: int, hidden: int, cfg: MoEConfig):
        super().__init__()
        self.cfg = cfg
        H = cfg.expert_hidden or hidden
        self.router = build_router(d_model, cfg)
        self.experts = RoutedExperts(cfg.num_experts, d_model, H)
        # N_s shared experts summed = one SwiGLU whose hidden layer is their concatenation.
        self.shared = SwiGLU(d_model, cfg.num_shared_experts * H) if cfg.num_shared_experts else None
        self.stats = RouterStats(cfg.num_experts, cfg.dead_expert_window)
        self.aux_loss = torch.zeros(())
        self.tokens_per_expert = torch.zeros(cfg.num_experts)

    def init_weights(self, std: float, out_std: float) -> None:
        """Router and experts' input projections N(0, std); projections into the residual stream `out_std`."""
        self.router.init_weights(std)
        self.experts.init_weights(std, out_std)
        if self.shared is not None:
            self.shared.init_weights(std, out_std)

    # Callers index experts through these (flops.param_counts, tests).
    @property
    def w1_EDH(self) -> nn.Parameter:
        return self.experts.w1_EDH

    @property
    def w3_EDH(self) -> nn.Parameter:
        return self.experts.w3_EDH

    @property
    def w2_EHD(self) -> nn.Parameter:
        return self.experts.w2_EHD

    def shard_experts(self, shard: ExpertShard) -> None:
        """Keep only this expert-parallel rank's experts; forward then exchanges tokens all-to-all."""
        self.experts.shard_(shard)

    def backend_name(self, x: torch.Tensor) -> str:
        """The concrete backend this layer runs for input `x` ('grouped', 'loop' or 'megablocks')."""
        dtype = backends.compute_dtype(x)
        return backends.resolve(self.cfg.backend, x.device, dtype, self.experts.d_model, self.experts.hidden)

    def forward(self, x_BLD: torch.Tensor) -> torch.Tensor:
        B, L, D = x_BLD.shape
        x_TD = x_BLD.reshape(-1, D)
        routing = self.router(x_TD)
        self.aux_loss = routing.aux_loss
        d = plan_dispatch(routing.experts_TK, routing.weights_TK, self.cfg.num_experts, self.cfg.capacity_factor)
        expert_fn = backends.BACKENDS[self.backend_name(x_TD)]
        xs_SD = gather_tokens(x_TD, d)
        shard = self.experts.shard
        if shard is not None and shard.size > 1:
            exchange = TokenExchange(d.counts_E, shard)
            ys_SD = exchange.combine(self.experts(exchange.dispatch(xs_SD), exchange.local_counts_X, expert_fn))
        else:
            ys_SD = self.experts(xs_SD, d.counts_E, expert_fn)
        y_TD = combine(ys_SD, d, len(x_TD)).to(x_BLD.dtype)
        if self.shared is not None:
            y_TD = y_TD + self.shared(x_TD)
        self.tokens_per_expert = d.counts_E.detach().float()
        if self.training:
            self.stats.update(routing, d)
        return y_TD.view(B, L, D)


def moe_layers(model: nn.Module) -> list[MoE]:
    """Every MoE layer of `model`, in module order (the `router/layer{i}` numbering)."""
    return [m for m in model.modules() if isinstance(m, MoE)]
