"""The block registry and the built-in block types: D (attention + dense FFN), A (attention +
MoE FFN), H (HyenaLite + gated MLP). Importing this package registers the built-ins."""

from raybio.models.blocks import attention, hyena, moe  # noqa: F401  (each registers its letter)
from raybio.models.blocks.registry import (
    BlockSpec,
    block_spec,
    check_pattern,
    has_experts,
    register,
    registered,
    unregister,
)

__all__ = ["BlockSpec", "block_spec", "check_pattern", "has_experts", "register", "registered", "unregister"]
