"""Streaming (recurrent) inference for causal BioLMs, and embedding of long FASTA records.

A `Streamer` feeds a causal (NTP) model one chunk at a time and carries per-layer state:

- HyenaLite layers: the last k - 1 short-conv inputs (FIR state) and one complex modal state
  per channel and mode, updated as s ← exp(λ·C)·s + Σ_j exp(λ·(C-1-j))·u_j. The state size is
  fixed, so memory grows with depth, not with the length of the stream. Output equals the
  full forward pass (up to float rounding).
- Attention layers (A/D) in hybrids: keys and values of the last `window - 1` positions. Each
  query attends to the `window` most recent positions, itself included. This is exact while
  the stream is no longer than `window`; beyond it, attention layers no longer see tokens more
  than `window` back (information from further back reaches them only through the Hyena
  layers' state). Keys are cached un-rotated and RoPE is applied relative to the window's
  first position, which leaves every query·key product unchanged (RoPE depends only on the
  distance) and keeps the rotary table bounded; distances up to `window` should not exceed
  the `max_seq_len` the model was trained at.

`embed_fasta` uses a Streamer to embed records of 100–150 kbp with causal models, and falls
back to independent `max_seq_len` windows for bidirectional (MLM) models, which cannot stream.

Shapes: B batch, C chunk, L length, D d_model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from raybio.models.hyena import HyenaState
from raybio.models.layers import Rotary
from raybio.models.model import BioLM
from raybio.models.pretrained import load_pretrained


class Streamer:
    """Runs a causal BioLM over an arbitrarily long stream, chunk by chunk.

    `feed` returns final-norm hidden states for the chunk; `prefill` feeds a prompt and returns
    the next-token logits; `step` feeds one token per sequence and returns its logits.
    """

    def __init__(self, model: BioLM, batch_size: int = 1, window: int | None = None, max_chunk: int = 1024):
        cfg = model.cfg
        if cfg.objective != "ntp":
            raise ValueError(
                f"streaming needs a causal model (objective='ntp'); this one has objective={cfg.objective!r}. "
                "Bidirectional models see the whole window at once: use model.forward on windows instead"
            )
        self.model, self.max_chunk = model, max_chunk
        self.window = window or cfg.hyena.attention_window
        device = next(model.parameters()).device
        dtype = model.embed.weight.dtype
        self.rope = Rotary(cfg.d_model // cfg.n_heads, self.window + max_chunk, cfg.rope_theta).to(device)
        self.states = [b.mixer.init_state(batch_size, device, dtype, self.window) for b in model.blocks]
        self.position = 0

    def state_nbytes(self) -> dict[str, int]:
        """Bytes of carried state, split into Hyena layers (fixed size) and attention windows (<= window)."""
        out = {"hyena": 0, "attention": 0}
        for s in self.states:
            out["hyena" if isinstance(s, HyenaState) else "attention"] += s.nbytes()
        return out

    @torch.no_grad()
    def feed(self, ids_BC: torch.Tensor) -> torch.Tensor:
        """Process the next tokens of every sequence; returns final-norm hidden states (B, C, D)."""
        outs = [self._chunk(ids_BC[:, i : i + self.max_chunk]) for i in range(0, ids_BC.shape[1], self.max_chunk)]
        return torch.cat(outs, dim=1)

    def _chunk(self, ids_BC: torch.Tensor) -> torch.Tensor:
        x_BCD = self.model.embed(ids_BC)
        for i, block in enumerate(self.model.blocks):
            x_BCD, self.states[i] = block.forward_chunk(x_BCD, self.states[i], self.rope)
        self.position += ids_BC.shape[1]
        return self.model.norm(x_BCD)

    def prefill(self, ids_BL: torch.Tensor) -> torch.Tensor:
        """Feed a prompt; returns the logits (B, V) for the token after it."""
        return self.model.head(self.feed(ids_BL)[:, -1])

    def step(self, ids_B: torch.Tensor) -> torch.Tensor:
        """Feed one token per sequence; returns the logits (B, V) for the next one."""
        return self.prefill(ids_B[:, None])


@dataclass
class RecordEmbedding:
    id: str
    n_bases: int
    n_tokens: int
    mean: np.ndarray  # (D,) mean of the per-token hidden states
    tokens: np.ndarray | None = None  # (n_tokens, D) when asked for


@torch.no_grad()
def embed_fasta(
    model: BioLM | str | Path,
    fasta_path: str | Path,
    *,
    tokenizer=None,
    chunk_tokens: int = 1024,
    window: int | None = None,
    per_token: bool = False,
    device: str | torch.device = "cpu",
) -> list[RecordEmbedding]:
    """Embed every record of a FASTA file (local path or URI) with a model or checkpoint directory.

    Causal models stream each record in `chunk_tokens` pieces (Hyena state O(depth); attention
    over a sliding `window`, default `hyena.attention_window`). Bidirectional (MLM) models
    embed independent windows of `max_seq_len` tokens. The tokenizer defaults to the
    checkpoint's (or the default 3-mer one for a bare model).
    """
    from raybio.data.config import TokenizerConfig
    from raybio.data.fasta import read_fasta

    if isinstance(model, (str, Path)):
        pretrained = load_pretrained(model, device)
        model, tokenizer = pretrained.model, tokenizer or pretrained.tokenizer
    model = model.to(device).eval()
    tokenizer = tokenizer or TokenizerConfig().build()
    if tokenizer.vocab_size != model.vocab_size:
        raise ValueError(
            f"tokenizer vocab_size {tokenizer.vocab_size} != model vocab_size {model.vocab_size}: "
            "pass the tokenizer the model was trained with"
        )
    out = []
    for rec in read_fasta(fasta_path):
        ids_1L = torch.from_numpy(tokenizer.encode(rec.seq).astype(np.int64))[None].to(device)
        if model.cfg.objective == "ntp":
            streamer = Streamer(model, window=window, max_chunk=chunk_tokens)
            pieces = (streamer.feed(ids_1L[:, i : i + chunk_tokens]) for i in range(0, ids_1L.shape[1], chunk_tokens))
        else:
            step = model.cfg.max_seq_len
            pieces = (model.hidden_states(ids_1L[:, i : i + step]) for i in range(0, ids_1L.shape[1], step))
        total = torch.zeros(model.cfg.d_model, dtype=torch.float64, device=device)
        kept = []
        for h_1CD in pieces:
            total += h_1CD[0].double().sum(0)
            if per_token:
                kept.append(h_1CD[0].float().cpu())
        n = ids_1L.shape[1]
        out.append(
            RecordEmbedding(
                id=rec.id,
                n_bases=len(rec.seq),
                n_tokens=n,
                mean=(total / max(n, 1)).float().cpu().numpy(),
                tokens=torch.cat(kept).numpy() if per_token else None,
            )
        )
    return out


def save_embeddings(records: list[RecordEmbedding], path: str | Path) -> None:
    """Write embeddings to an .npz: `ids`, `n_tokens`, `mean` (R, D) and, if present, `tokens_<i>`."""
    arrays = {
        "ids": np.array([r.id for r in records]),
        "n_tokens": np.array([r.n_tokens for r in records]),
        "mean": np.stack([r.mean for r in records]),
    }
    arrays.update({f"tokens_{i}": r.tokens for i, r in enumerate(records) if r.tokens is not None})
    np.savez(path, **arrays)
