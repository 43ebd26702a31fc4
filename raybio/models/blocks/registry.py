"""What a block letter means: one `BlockSpec` per letter, registered by the module that defines it.

A block is pre-norm residual: x + mixer(norm(x)), then x + ffn(norm(x)). A spec says how to
build its mixer and FFN from a `ModelConfig` (each initialises its own parameters), its
forward FLOPs per token, whether it holds routed experts, and what it requires of the config.
Model assembly, FLOPs, parameter counts, expert parallelism and the sweeps ask the registry,
so a new block type is one module that calls `register` (see tests/test_block_registry.py
for a toy one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from raybio.models.config import ModelConfig


def _no_requirements(cfg: ModelConfig) -> str | None:
    return None


@dataclass(frozen=True)
class BlockSpec:
    letter: str  # one upper-case letter in `model.pattern`
    description: str
    # Both parts also have `init_weights(std, out_std)`: out_std for the projections into the residual stream.
    mixer: Callable[[ModelConfig], nn.Module]  # token mixer: forward(h_BLD, rotary, pad_mask_BL)
    ffn: Callable[[ModelConfig], nn.Module]  # channel mixer: forward(h_BLD)
    flops: Callable[[ModelConfig, int], float]  # forward FLOPs per token at a context length
    has_experts: bool = False  # holds an `MoE` FFN (router metrics, expert parallelism, active params)
    requires: Callable[[ModelConfig], str | None] = _no_requirements  # an error message, or None


_REGISTRY: dict[str, BlockSpec] = {}


def register(spec: BlockSpec) -> BlockSpec:
    """Make `spec.letter` usable in `model.pattern`."""
    if len(spec.letter) != 1 or not spec.letter.isupper():
        raise ValueError(f"block letter {spec.letter!r} must be one upper-case letter")
    if spec.letter in _REGISTRY and _REGISTRY[spec.letter] != spec:
        raise ValueError(f"block letter {spec.letter!r} is already registered ({_REGISTRY[spec.letter].description})")
    _REGISTRY[spec.letter] = spec
    return spec


def unregister(letter: str) -> None:
    """Remove a block type (tests register toy blocks and take them away again)."""
    _REGISTRY.pop(letter, None)


def block_spec(letter: str) -> BlockSpec:
    return _REGISTRY[letter]


def registered() -> dict[str, BlockSpec]:
    return dict(_REGISTRY)


def has_experts(pattern: str) -> bool:
    """Whether any block of `pattern` holds routed experts."""
    return any(_REGISTRY[ch].has_experts for ch in set(pattern))


def check_pattern(cfg: ModelConfig) -> None:
    """ValueError naming unknown letters, a depth the pattern does not divide, or the first requirement
    a block of `cfg.pattern` misses."""
    bad = sorted(set(cfg.pattern) - set(_REGISTRY))
    if not cfg.pattern or bad:
        allowed = ", ".join(f"{k} ({v.description})" for k, v in _REGISTRY.items())
        raise ValueError(f"pattern {cfg.pattern!r} has unknown block letters {bad}; allowed: {allowed}")
    if cfg.n_layers % len(cfg.pattern):
        raise ValueError(f"n_layers ({cfg.n_layers}) must be a multiple of len(pattern) ({len(cfg.pattern)})")
    for letter in sorted(set(cfg.pattern)):
        problem = _REGISTRY[letter].requires(cfg)
        if problem:
            raise ValueError(problem)
