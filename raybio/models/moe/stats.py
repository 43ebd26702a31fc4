"""Router metrics per MoE layer, accumulated on device during training and read at report time.

Each training forward adds its routing to a window (no host sync). `router_metrics(model)`
reduces the window over all workers, turns it into scalars and starts a new window:

- `tokens_e{j}`: slots routed to expert j per training forward pass, averaged over workers
- `max_over_mean_load`, `load_cv`: max/mean and std/mean of those per-expert loads
- `dead_experts`: experts that got no token, on any worker, in the last
  `moe.dead_expert_window` training forward passes
- `routing_entropy`: mean per-token entropy (nats) of the router's distribution over
  experts (softmax probabilities; sigmoid scores normalised over all experts)
- `aux_loss`, `z_loss`: the Switch load-balancing and z-loss values, before their
  coefficients (0 for routers without them)
- `drop_fraction`: routed slots dropped by the capacity limit

Shapes: T tokens, E experts.
"""

from __future__ import annotations

import torch

# Window sums kept per layer, in this order.
_SUMS = ("passes", "tokens", "entropy", "aux_loss", "z_loss", "dropped", "slots")


class RouterStats:
    """Running routing statistics of one MoE layer."""

    def __init__(self, num_experts: int, dead_window: int):
        self.num_experts = num_experts
        self.dead_window = dead_window
        self.idle_E: torch.Tensor | None = None  # training passes since each expert last got a slot
        self.load_E: torch.Tensor | None = None
        self.sums: torch.Tensor | None = None

    @torch.no_grad()
    def update(self, routing, dispatch) -> None:
        """Add one training forward pass (a `Routing` and its `Dispatch`)."""
        routed_E = dispatch.routed_E.to(torch.float64)
        p_TE = routing.probs_TE
        entropy = -(p_TE * p_TE.clamp_min(1e-20).log()).sum()
        one = routed_E.new_ones(())
        vec = torch.stack(
            [
                one,
                one * p_TE.shape[0],
                entropy.double(),
                routing.balance_loss.double(),
                routing.z_loss.double(),
                dispatch.dropped.double(),
                one * dispatch.num_slots,
            ]
        )
        if self.load_E is None:
            self.load_E, self.sums = routed_E, vec
        else:
            self.load_E, self.sums = self.load_E + routed_E, self.sums + vec
        idle = self.idle_E if self.idle_E is not None else torch.zeros_like(routed_E)
        self.idle_E = torch.where(routed_E > 0, 0.0, idle + 1)

    def window(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(load_E, sums) since the last read (zeros if none), then start a new window."""
        E = self.num_experts
        load_E = self.load_E if self.load_E is not None else torch.zeros(E, dtype=torch.float64, device=device)
        sums = self.sums if self.sums is not None else torch.zeros(len(_SUMS), dtype=torch.float64, device=device)
        self.load_E = self.sums = None
        return load_E.to(device), sums.to(device)

    def idle(self, device: torch.device) -> torch.Tensor:
        if self.idle_E is None:
            return torch.zeros(self.num_experts, dtype=torch.float64, device=device)
        return self.idle_E.to(device)
