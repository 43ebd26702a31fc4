"""Expert weights: E SwiGLU experts stored as stacked tensors, optionally sharded over an EP group.

Weights are `w1_EDH`, `w3_EDH` (gate and up projections) and `w2_EHD` (down projection),
so expert e computes `(silu(x @ w1[e]) * (x @ w3[e])) @ w2[e]`. Under expert parallelism a
module keeps only the experts of its EP rank (a contiguous block of E / ep_size). Loading a
state dict slices full expert tensors down to the local block, so a checkpoint written with
full tensors (see `raybio.train.parallel.full_state_dict`) loads at any EP size.

Shapes: E experts, D d_model, H expert hidden, S routed slots, X this rank's experts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from raybio.models.moe.backends import ExpertFn

EXPERT_PARAMS = ("w1_EDH", "w3_EDH", "w2_EHD")


@dataclass(frozen=True)
class ExpertShard:
    """This rank's place in its expert-parallel group."""

    rank: int
    size: int
    group: dist.ProcessGroup | None  # None only in single-process tests of sharding itself


class RoutedExperts(nn.Module):
    """E SwiGLU experts of hidden size H (this rank's block of them under EP)."""

    def __init__(self, num_experts: int, d_model: int, hidden: int):
        super().__init__()
        # Sizes as plain ints: parameter shapes are not reliable under ZeRO-3 partitioning.
        self.num_experts = self.local_experts = num_experts  # global count; this rank's count
        self.d_model, self.hidden = d_model, hidden
        self.w1_EDH = nn.Parameter(torch.empty(num_experts, d_model, hidden))
        self.w3_EDH = nn.Parameter(torch.empty(num_experts, d_model, hidden))
        self.w2_EHD = nn.Parameter(torch.empty(num_experts, hidden, d_model))
        self.init_weights(std=0.02, out_std=0.02)  # standalone use; BioLM re-initialises with its depth scale
        self.shard: ExpertShard | None = None
        self._register_load_state_dict_pre_hook(self._slice_full_tensors)

    def init_weights(self, std: float, out_std: float) -> None:
        """N(0, std) for the gate and up projections; `out_std` for `w2_EHD`, which writes into the residual stream."""
        for w, s in ((self.w1_EDH, std), (self.w3_EDH, std), (self.w2_EHD, out_std)):
            nn.init.normal_(w, std=s)

    @property
    def first_expert(self) -> int:
        return self.shard.rank * self.local_experts if self.shard else 0

    def shard_(self, shard: ExpertShard) -> None:
        """Keep only this EP rank's experts (call before building the optimizer)."""
        if self.num_experts % shard.size:
            raise ValueError(
                f"{self.num_experts} experts cannot be split over an expert-parallel group of {shard.size}; "
                f"choose moe.ep_size among the divisors of moe.num_experts"
            )
        if self.shard is not None:
            raise RuntimeError("experts are already sharded; shard a freshly built model")
        n = self.num_experts // shard.size
        for name in EXPERT_PARAMS:
            full = getattr(self, name)
            setattr(self, name, nn.Parameter(full.detach()[shard.rank * n : (shard.rank + 1) * n].clone()))
        self.shard, self.local_experts = shard, n

    def _slice_full_tensors(self, state_dict: dict, prefix: str, *args) -> None:
        for name in EXPERT_PARAMS:
            key = prefix + name
            t = state_dict.get(key)
            if t is not None and t.shape[0] == self.num_experts != self.local_experts:
                state_dict[key] = t[self.first_expert : self.first_expert + self.local_experts]

    def forward(self, xs_SD: torch.Tensor, counts_E: torch.Tensor, expert_fn: ExpertFn) -> torch.Tensor:
        """Rows of `xs_SD` sorted by local expert, `counts_E` rows each -> expert outputs, same order."""
        return expert_fn(xs_SD, counts_E, self.w1_EDH, self.w3_EDH, self.w2_EHD)
