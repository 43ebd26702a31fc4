"""Mixture-of-Experts FFN: routers, SwiGLU experts, dropless/capacity dispatch, backends, EP, metrics."""

from raybio.models.moe.layer import MoE
from raybio.models.moe.router import update_expert_bias
from raybio.models.moe.stats import router_metrics

__all__ = ["MoE", "router_metrics", "update_expert_bias"]
