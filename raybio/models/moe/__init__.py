"""Mixture-of-Experts FFN: routers, SwiGLU experts, dropless/capacity dispatch, backends, EP, metrics."""

from raybio.models.moe.balance import attach_bias_update, aux_free_routers, update_expert_biases
from raybio.models.moe.layer import MoE, moe_layers
from raybio.models.moe.metrics import router_metrics

__all__ = ["MoE", "attach_bias_update", "aux_free_routers", "moe_layers", "router_metrics", "update_expert_biases"]
