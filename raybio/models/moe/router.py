"""Routers: which experts each token goes to, and with what gate weight.

All scores are computed in fp32 whatever the autocast dtype, since top-k on bf16 logits
ties often and the aux losses are sums of many small terms.

- `softmax`: p = softmax(xW); top-k of p. Switch load-balancing loss E·Σ_e f_e·P_e, router
  z-loss mean(logsumexp²), optional multiplicative input jitter in training.
- `sigmoid`: s = σ(xW) (HyenaMoE eq. 6–7); top-k of s. No auxiliary loss.
- `aux_free`: sigmoid affinities as above, but experts are chosen by s + b with a per-expert
  bias b that only chooses (gates still come from s) and is nudged toward balance once per
  optimizer step (DeepSeek-V3; `raybio.models.moe.balance`). Token counts accumulate over
  every training forward since the last update, so gradient accumulation updates once per
  step, with the load of all micro-batches and all workers.

Gates are the chosen experts' p or s, divided by their sum where `MoEConfig.renormalises_gates`
(`route_norm`; by default every router except softmax top-1, which keeps the raw probability
so the router still gets a gradient, as in Switch).

Every router can limit each token to its `topk_group` best of `n_group` expert groups
before its top-k (DeepSeek-V3: a group scores the sum of its two best experts' scores, as
the router chooses them), and multiplies the routed gates by `routed_scaling_factor`.

Shapes: T tokens, D d_model, E experts, K top-k choices per token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from raybio.models.config import MoEConfig


class Routing(NamedTuple):
    """What a router decided for T tokens. Indexable: `routing[1]` is the expert ids."""

    weights_TK: torch.Tensor  # fp32 gate weight of each chosen expert
    experts_TK: torch.Tensor  # int64 global expert ids
    aux_loss: torch.Tensor  # weighted sum of the router losses, added to the training loss
    balance_loss: torch.Tensor  # unweighted Switch loss (0 where the router has none), for metrics
    z_loss: torch.Tensor  # unweighted z-loss (0 where the router has none), for metrics
    probs_TE: torch.Tensor  # the router's distribution over experts, detached, for entropy metrics


class Router(nn.Module):
    """Base: a bias-free linear gate producing fp32 logits."""

    def __init__(self, d_model: int, cfg: MoEConfig):
        super().__init__()
        self.cfg = cfg
        self.gate = nn.Linear(d_model, cfg.num_experts, bias=False)

    def init_weights(self, std: float) -> None:
        nn.init.normal_(self.gate.weight, std=std)

    def logits(self, x_TD: torch.Tensor) -> torch.Tensor:
        return F.linear(x_TD.float(), self.gate.weight.float())

    def top_experts(self, choice_TE: torch.Tensor) -> torch.Tensor:
        """Expert ids of the top-k of `choice_TE`, within each token's best groups when grouped."""
        cfg = self.cfg
        if cfg.n_group is not None:
            choice_TE = limit_to_groups(choice_TE, cfg.n_group, cfg.topk_group)
        return choice_TE.topk(cfg.top_k, dim=-1).indices

    def gates(self, scores_TE: torch.Tensor, experts_TK: torch.Tensor) -> torch.Tensor:
        """The chosen experts' scores, renormalised over the top-k where the config says, times the scale."""
        weights_TK = scores_TE.gather(-1, experts_TK)
        if self.cfg.renormalises_gates:
            weights_TK = weights_TK / weights_TK.sum(-1, keepdim=True)
        return weights_TK * self.cfg.routed_scaling_factor


def expert_counts(experts: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Slots per expert (int64, E) for a tensor of expert ids. A fixed-size scatter rather than `bincount`,
    whose output size depends on the data, which stops a `torch.compile` graph."""
    flat = experts.reshape(-1)
    counts_E = torch.zeros(num_experts, dtype=torch.int64, device=flat.device)
    return counts_E.scatter_add_(0, flat, torch.ones_like(flat))


def limit_to_groups(choice_TE: torch.Tensor, n_group: int, topk_group: int) -> torch.Tensor:
    """`choice_TE` with experts outside each token's `topk_group` best groups set to -inf."""
    T, E = choice_TE.shape
    choice_TGS = choice_TE.view(T, n_group, E // n_group)
    group_score_TG = choice_TGS.topk(min(2, E // n_group), dim=-1).values.sum(-1)
    best_TG = group_score_TG.topk(topk_group, dim=-1).indices
    allowed_TG = torch.zeros_like(group_score_TG, dtype=torch.bool).scatter_(1, best_TG, True)
    return choice_TGS.masked_fill(~allowed_TG[..., None], float("-inf")).view(T, E)


class SoftmaxRouter(Router):
    """Softmax top-k with Switch load-balancing loss, router z-loss and optional jitter."""

    def forward(self, x_TD: torch.Tensor) -> Routing:
        cfg = self.cfg
        E = cfg.num_experts
        x_TD = x_TD.float()
        if self.training and cfg.jitter > 0:
            x_TD = x_TD * torch.empty_like(x_TD).uniform_(1 - cfg.jitter, 1 + cfg.jitter)
        logits_TE = self.logits(x_TD)
        probs_TE = logits_TE.softmax(-1)
        experts_TK = self.top_experts(probs_TE)
        weights_TK = self.gates(probs_TE, experts_TK)
        # Switch loss: E · Σ_e (fraction of routed slots sent to e) · (mean probability of e).
        frac_E = expert_counts(experts_TK, E).float() / experts_TK.numel()
        balance = E * (frac_E * probs_TE.mean(0)).sum()
        z = logits_TE.logsumexp(-1).pow(2).mean()
        aux = cfg.aux_loss_coef * balance + cfg.z_loss_coef * z if self.training else balance.new_zeros(())
        return Routing(weights_TK, experts_TK, aux, balance.detach(), z.detach(), probs_TE.detach())


class SigmoidRouter(Router):
    """Sigmoid affinities, top-k, gates normalised over the top-k unless `route_norm` is false. No aux loss."""

    def select(self, scores_TE: torch.Tensor) -> torch.Tensor:
        """Expert ids of the top-k; subclasses may choose on other scores."""
        return self.top_experts(scores_TE)

    def forward(self, x_TD: torch.Tensor) -> Routing:
        scores_TE = torch.sigmoid(self.logits(x_TD))
        experts_TK = self.select(scores_TE)
        weights_TK = self.gates(scores_TE, experts_TK)
        zero = scores_TE.new_zeros(())
        probs_TE = (scores_TE / scores_TE.sum(-1, keepdim=True)).detach()
        return Routing(weights_TK, experts_TK, zero, zero, zero, probs_TE)


class AuxFreeRouter(SigmoidRouter):
    """Sigmoid router whose expert choice adds a balance bias updated outside backprop."""

    def __init__(self, d_model: int, cfg: MoEConfig):
        super().__init__(d_model, cfg)
        self.register_buffer("expert_bias_E", torch.zeros(cfg.num_experts))
        # Slots routed to each expert since the last bias update. A plain attribute, not a
        # buffer: DDP broadcasts buffers from rank 0 each forward and would overwrite it.
        self.pending_load_E: torch.Tensor | None = None

    def select(self, scores_TE: torch.Tensor) -> torch.Tensor:
        experts_TK = self.top_experts(scores_TE + self.expert_bias_E)
        if self.training:
            load_E = expert_counts(experts_TK, self.cfg.num_experts).float()
            self.pending_load_E = load_E if self.pending_load_E is None else self.pending_load_E + load_E
        return experts_TK


ROUTERS = {"softmax": SoftmaxRouter, "sigmoid": SigmoidRouter, "aux_free": AuxFreeRouter}


def build_router(d_model: int, cfg: MoEConfig) -> Router:
    """The router `cfg.router` names."""
    return ROUTERS[cfg.router](d_model, cfg)
