"""µP (maximal-update parameterisation) for BioLM, so a learning rate tuned at a small width transfers.

Following Tensor Programs V (Yang et al., 2022) for Adam, with width multiplier
m = d_model / base_d_model:

- hidden matrices (two width-scaled dimensions: attention, FFN and expert weights):
  init std / sqrt(m), Adam LR / m, weight decay * m (AdamW's per-step decay is lr * wd,
  which therefore stays width-independent);
- everything with at most one width-scaled dimension (embeddings, norms, per-channel
  filter parameters, routers): init and LR unchanged;
- output logits multiplied by 1/m (the "MuReadout" form, which keeps tied embeddings
  input-like).

Width-scaled dimensions are found by comparing every parameter's shape with the same model
built at `base_d_model` on the meta device (mup's `set_base_shapes` idea), so any block
type is covered without a list of names. At m = 1 this is exactly the standard
parameterisation. Attention keeps its 1/sqrt(head_dim) scale: scale width by adding heads
(fixed head_dim), which µP leaves unchanged.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from raybio.models.config import ModelConfig


def width_mult(cfg: ModelConfig) -> float:
    """m = d_model / base_d_model (1.0 without µP)."""
    return cfg.d_model / cfg.base_d_model if cfg.base_d_model else 1.0


def base_config(cfg: ModelConfig) -> ModelConfig:
    """The same architecture at `base_d_model`: hidden sizes scaled by 1/m, head_dim kept where possible."""
    m = width_mult(cfg)
    head_dim = cfg.d_model // cfg.n_heads
    n_heads = cfg.base_d_model // head_dim if cfg.base_d_model % head_dim == 0 else 1
    update = {"d_model": cfg.base_d_model, "n_heads": max(1, n_heads), "base_d_model": None}
    if cfg.d_ffn:
        update["d_ffn"] = max(1, round(cfg.d_ffn / m))
    moe = cfg.moe.model_copy(
        update={"expert_hidden": max(1, round(cfg.moe.expert_hidden / m))} if cfg.moe.expert_hidden else {}
    )
    return cfg.model_copy(update={**update, "moe": moe})


def width_dims(model: nn.Module, cfg: ModelConfig) -> dict[str, int]:
    """Number of width-scaled dimensions of every parameter (by name), against the base-width model."""
    with torch.device("meta"):  # the same class at the base width, without memory or init cost
        base = type(model)(base_config(cfg), model.vocab_size)
    base_shapes = {n: p.shape for n, p in base.named_parameters()}
    out = {}
    for name, p in model.named_parameters():
        if name not in base_shapes or len(base_shapes[name]) != p.dim():
            raise ValueError(f"µP: parameter {name} has no counterpart in the base-width model; check base_d_model")
        out[name] = sum(a != b for a, b in zip(p.shape, base_shapes[name], strict=True))
    return out


def hidden_params(model: nn.Module, cfg: ModelConfig) -> set[str]:
    """Names of the hidden matrices (two width-scaled dimensions)."""
    if not cfg.base_d_model or cfg.base_d_model == cfg.d_model:
        # m = 1: shapes cannot tell which dims scale, and nothing is rescaled anyway.
        return set()
    return {n for n, k in width_dims(model, cfg).items() if k >= 2}


def apply_mup(model: nn.Module, cfg: ModelConfig) -> None:
    """Rescale the init of hidden matrices by 1/sqrt(m) and multiply the output logits by 1/m."""
    m = width_mult(cfg)
    hidden = hidden_params(model, cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in hidden:
                p.mul_(1 / math.sqrt(m))
    model.head.register_forward_hook(_scale_output(1 / m))


def _scale_output(scale: float):
    def hook(module, inputs, output):
        return output * scale

    return hook


def param_groups(model: nn.Module, cfg: ModelConfig, lr: float, weight_decay: float) -> list[dict]:
    """AdamW param groups: matrices decay, vectors do not; under µP hidden matrices get lr/m and wd*m."""
    m = width_mult(cfg)
    hidden = hidden_params(model, cfg)
    groups: dict[str, dict] = {
        "hidden": {"params": [], "lr": lr / m, "weight_decay": weight_decay * m},
        "matrix": {"params": [], "lr": lr, "weight_decay": weight_decay},
        "vector": {"params": [], "lr": lr, "weight_decay": 0.0},
    }
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        kind = "hidden" if name in hidden else "matrix" if p.dim() >= 2 else "vector"
        groups[kind]["params"].append(p)
    return [{"name": k, **g} for k, g in groups.items() if g["params"]]
