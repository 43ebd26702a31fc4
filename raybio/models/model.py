"""BioLM: token embeddings, a stack of blocks built from a pattern string, norm, LM head.

Shape suffixes used in raybio/models (torchtitan style):
  B batch, L sequence length, C chunk length (streaming), D d_model, V vocabulary,
  T tokens (B·L flattened), E experts, K top-k slots, S routed slots (T·K),
  NH attention heads, Dh head dim, F ffn hidden.
A name like `x_BLD` is a (batch, length, d_model) tensor; `pad_mask_BL` is True at padding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from raybio.data.tokenizers import IGNORE
from raybio.models.blocks import block_spec, check_pattern
from raybio.models.config import ModelConfig
from raybio.models.layers import Rotary, make_norm
from raybio.models.moe import moe_layers


class Block(nn.Module):
    """Pre-norm residual block: x + mixer(norm(x)), then x + ffn(norm(x)); `kind` names its `BlockSpec`."""

    def __init__(self, kind: str, cfg: ModelConfig):
        super().__init__()
        spec = block_spec(kind)
        self.kind = kind
        self.norm1 = make_norm(cfg.norm, cfg.d_model)
        self.norm2 = make_norm(cfg.norm, cfg.d_model)
        self.mixer = spec.mixer(cfg)
        self.ffn = spec.ffn(cfg)

    def init_weights(self, std: float, out_std: float) -> None:
        """Each part initialises its own parameters; `out_std` goes to the projections into the residual stream."""
        self.norm1.init_weights()
        self.mixer.init_weights(std, out_std)
        self.norm2.init_weights()
        self.ffn.init_weights(std, out_std)

    def forward(self, x_BLD: torch.Tensor, rotary: Rotary, pad_mask_BL: torch.Tensor | None = None) -> torch.Tensor:
        return self._ffn(x_BLD + self.mixer(self.norm1(x_BLD), rotary, pad_mask_BL))

    def forward_chunk(self, x_BCD: torch.Tensor, state, rope: Rotary):
        """The next chunk of a stream: the mixer carries `state` (see raybio/models/streaming.py)."""
        y_BCD, state = self.mixer.forward_chunk(self.norm1(x_BCD), state, rope)
        return self._ffn(x_BCD + y_BCD.to(x_BCD.dtype)), state

    def _ffn(self, x_BLD: torch.Tensor) -> torch.Tensor:
        return x_BLD + self.ffn(self.norm2(x_BLD))


@dataclass
class ModelOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None = None  # LM loss + router losses: what the optimizer minimises
    lm_loss: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None


class BioLM(nn.Module):
    """A DNA/protein language model; MLM (bidirectional) or NTP (causal) by `cfg.objective`.

    `vocab_size` comes from the corpus' tokenizer (the manifest or a checkpoint), not the config.
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be positive (got {vocab_size}); take it from the corpus tokenizer")
        check_pattern(cfg)  # a ModelConfig built on its own has not met the block registry yet
        self.cfg, self.vocab_size = cfg, vocab_size
        self.embed = nn.Embedding(vocab_size, cfg.d_model)
        self.rotary = Rotary(cfg.d_model // cfg.n_heads, cfg.max_seq_len, cfg.rope_theta)
        self.blocks = nn.ModuleList(Block(kind, cfg) for kind in cfg.blocks)
        self.norm = make_norm(cfg.norm, cfg.d_model)
        self.head = nn.Linear(cfg.d_model, vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        self.init_weights()
        if cfg.base_d_model:
            from raybio.models.mup import apply_mup  # µP: width-scaled init and 1/m output logits

            apply_mup(self, cfg)

    def init_weights(self, std: float = 0.02) -> None:
        """GPT-2 style: N(0, std) everywhere, and std/sqrt(2·depth) for the projections that write into the
        residual stream (attention `wo`, FFN and expert `w2`, HyenaLite `wo`), so the stream's variance does
        not grow with depth. Every module initialises its own parameters (`init_weights(std, out_std)`)."""
        out_std = std / math.sqrt(2 * self.cfg.n_layers)
        nn.init.normal_(self.embed.weight, std=std)
        for block in self.blocks:
            block.init_weights(std, out_std)
        self.norm.init_weights()
        if not self.cfg.tie_embeddings:
            nn.init.normal_(self.head.weight, std=std)

    def moe_layers(self):
        return moe_layers(self)

    def hidden_states(self, input_ids_BL: torch.Tensor, pad_mask_BL: torch.Tensor | None = None) -> torch.Tensor:
        """Final-norm hidden states (B, L, D); positions where `pad_mask_BL` is True are never attended to."""
        x_BLD = self.embed(input_ids_BL)
        for block in self.blocks:
            x_BLD = block(x_BLD, self.rotary, pad_mask_BL)
        return self.norm(x_BLD)

    def forward(
        self,
        input_ids_BL: torch.Tensor,
        labels_BL: torch.Tensor | None = None,
        pad_mask_BL: torch.Tensor | None = None,
    ) -> ModelOutput:
        logits_BLV = self.head(self.hidden_states(input_ids_BL, pad_mask_BL))
        if labels_BL is None:
            return ModelOutput(logits=logits_BLV)
        lm_loss = F.cross_entropy(
            logits_BLV.float().reshape(-1, logits_BLV.shape[-1]), labels_BL.reshape(-1), ignore_index=IGNORE
        )
        aux = sum((m.aux_loss for m in self.moe_layers()), lm_loss.new_zeros(()))
        return ModelOutput(logits=logits_BLV, loss=lm_loss + aux, lm_loss=lm_loss, aux_loss=aux)
