"""Routed-expert SwiGLU FFN (dropless), native torch.

Tokens are sorted by their assigned expert so each expert sees one contiguous slice, and
each slice runs through its expert's weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from raybio.config import MoEConfig


class SoftmaxRouter(nn.Module):
    """Softmax top-k router with Switch load-balancing loss and router z-loss (fp32 scores)."""

    def __init__(self, d_model: int, cfg: MoEConfig):
        super().__init__()
        self.cfg = cfg
        self.gate = nn.Linear(d_model, cfg.num_experts, bias=False)

    def forward(self, x_TD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (weights_TK, experts_TK, aux_loss)."""
        E, k = self.cfg.num_experts, self.cfg.top_k
        logits_TE = F.linear(x_TD.float(), self.gate.weight.float())
        probs_TE = logits_TE.softmax(-1)
        weights_TK, experts_TK = probs_TE.topk(k, dim=-1)
        if k > 1:  # top-1 keeps the raw probability as gate, so the router still learns (Switch)
            weights_TK = weights_TK / weights_TK.sum(-1, keepdim=True)
        aux = x_TD.new_zeros((), dtype=torch.float32)
        if self.training:
            # Switch loss: E * sum_e (fraction of routed slots to e) * (mean prob of e).
            frac_E = F.one_hot(experts_TK, E).float().sum((0, 1)) / experts_TK.numel()
            aux = aux + self.cfg.aux_loss_coef * E * (frac_E * probs_TE.mean(0)).sum()
            aux = aux + self.cfg.z_loss_coef * logits_TE.logsumexp(-1).pow(2).mean()
        return weights_TK, experts_TK, aux


class MoE(nn.Module):
    """Dropless top-k mixture of SwiGLU experts."""

    def __init__(self, d_model: int, hidden: int, cfg: MoEConfig):
        super().__init__()
        self.cfg = cfg
        E, H = cfg.num_experts, cfg.expert_hidden or hidden
        self.router = SoftmaxRouter(d_model, cfg)
        self.w1_EDH = nn.Parameter(torch.empty(E, d_model, H))
        self.w3_EDH = nn.Parameter(torch.empty(E, d_model, H))
        self.w2_EHD = nn.Parameter(torch.empty(E, H, d_model))
        self.aux_loss = torch.zeros(())
        self.register_buffer("tokens_per_expert", torch.zeros(E), persistent=False)

    def forward(self, x_BLD: torch.Tensor) -> torch.Tensor:
        B, L, D = x_BLD.shape
        x_TD = x_BLD.reshape(-1, D)
        weights_TK, experts_TK, self.aux_loss = self.router(x_TD)
        k = experts_TK.shape[1]
        flat_expert = experts_TK.reshape(-1)
        order = flat_expert.argsort(stable=True)
        counts_E = torch.bincount(flat_expert, minlength=self.cfg.num_experts)
        self.tokens_per_expert = counts_E.detach().float()
        token_of_slot = order // k
        xs = x_TD[token_of_slot]
        ys = self._experts(xs, counts_E)
        ys = ys * weights_TK.reshape(-1)[order].unsqueeze(-1).to(ys.dtype)
        out_TD = torch.zeros_like(x_TD).index_add_(0, token_of_slot, ys)
        return out_TD.view(B, L, D)

    def _experts(self, xs: torch.Tensor, counts_E: torch.Tensor) -> torch.Tensor:
        outs, start = [], 0
        for e, n in enumerate(counts_E.tolist()):
            if n:
                xe = xs[start : start + n]
                h = F.silu(xe @ self.w1_EDH[e]) * (xe @ self.w3_EDH[e])
                outs.append(h @ self.w2_EHD[e])
            start += n
        return torch.cat(outs) if outs else xs.new_zeros(0, self.w2_EHD.shape[-1])
