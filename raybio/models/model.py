"""BioLM: token embeddings, a stack of blocks built from a pattern string, norm, LM head."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from raybio.config import ModelConfig
from raybio.models.hyena import HyenaLite
from raybio.models.layers import Attention, Rotary, SwiGLU, make_norm
from raybio.models.moe import MoE


class Block(nn.Module):
    """Pre-norm residual block: x + mixer(norm(x)), then x + ffn(norm(x))."""

    def __init__(self, kind: str, cfg: ModelConfig):
        super().__init__()
        self.kind = kind
        causal = cfg.objective == "ntp"
        self.norm1 = make_norm(cfg.norm, cfg.d_model)
        self.norm2 = make_norm(cfg.norm, cfg.d_model)
        if kind in "AD":
            self.mixer = Attention(cfg.d_model, cfg.n_heads, causal)
        elif kind == "H":
            self.mixer = HyenaLite(cfg.d_model, cfg.hyena, causal, cfg.max_seq_len)
        else:
            raise NotImplementedError(f"block type {kind!r} is not available in this build")
        self.ffn = MoE(cfg.d_model, cfg.ffn_hidden, cfg.moe) if kind == "A" else SwiGLU(cfg.d_model, cfg.ffn_hidden)

    def forward(self, x_BLD: torch.Tensor, rotary: Rotary) -> torch.Tensor:
        x_BLD = x_BLD + self.mixer(self.norm1(x_BLD), rotary)
        return x_BLD + self.ffn(self.norm2(x_BLD))


@dataclass
class ModelOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None = None  # LM loss + router losses: what the optimizer minimises
    lm_loss: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)


class BioLM(nn.Module):
    """A DNA/protein language model; MLM (bidirectional) or NTP (causal) by `cfg.objective`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.rotary = Rotary(cfg.d_model // cfg.n_heads, cfg.max_seq_len, cfg.rope_theta)
        self.blocks = nn.ModuleList(Block(kind, cfg) for kind in cfg.blocks)
        self.norm = make_norm(cfg.norm, cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        self.reset_parameters()
        if cfg.base_d_model:
            from raybio.models.mup import apply_mup  # µP: width-scaled init and 1/m output logits

            apply_mup(self, cfg)

    def reset_parameters(self) -> None:
        """GPT-2 style init: N(0, 0.02), residual output projections scaled by 1/sqrt(2·depth)."""
        std, out_std = 0.02, 0.02 / math.sqrt(2 * self.cfg.n_layers)
        for name, p in self.named_parameters():
            if p.dim() < 2:
                continue
            is_out = name.endswith(("wo.weight", "w2.weight", "w2_EHD"))
            nn.init.normal_(p, std=out_std if is_out else std)
        for m in self.modules():
            if isinstance(m, HyenaLite):  # conv taps and long filters have their own init
                m.reset_filter_parameters()

    def moe_layers(self) -> list[MoE]:
        return [m for m in self.modules() if isinstance(m, MoE)]

    def forward(self, input_ids_BL: torch.Tensor, labels_BL: torch.Tensor | None = None) -> ModelOutput:
        x_BLD = self.embed(input_ids_BL)
        for block in self.blocks:
            x_BLD = block(x_BLD, self.rotary)
        logits_BLV = self.head(self.norm(x_BLD))
        if labels_BL is None:
            return ModelOutput(logits=logits_BLV)
        lm_loss = F.cross_entropy(
            logits_BLV.float().reshape(-1, logits_BLV.shape[-1]), labels_BL.reshape(-1), ignore_index=-100
        )
        aux = sum((m.aux_loss for m in self.moe_layers()), lm_loss.new_zeros(()))
        return ModelOutput(logits=logits_BLV, loss=lm_loss + aux, lm_loss=lm_loss, aux_loss=aux)
