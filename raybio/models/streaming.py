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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from raybio.models.hyena import HyenaLite, HyenaState
from raybio.models.layers import Attention, Rotary
from raybio.models.model import BioLM


@dataclass
class KVWindow:
    """Keys (un-rotated) and values of the most recent `window - 1` positions of one attention layer."""

    k_BHPD: torch.Tensor
    v_BHPD: torch.Tensor

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.k_BHPD, self.v_BHPD))


def attend_chunk(
    attn: Attention, x_BCD: torch.Tensor, cache: KVWindow, window: int, rope: Rotary
) -> tuple[torch.Tensor, KVWindow]:
    """Causal sliding-window attention of a chunk over the cached window plus itself."""
    B, C, D = x_BCD.shape
    H = attn.n_heads
    qkv = attn.wqkv(x_BCD).view(B, C, 3, H, D // H)
    q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))  # each B, H, C, Dh
    k_all, v_all = torch.cat([cache.k_BHPD, k], dim=2), torch.cat([cache.v_BHPD, v], dim=2)
    P = cache.k_BHPD.shape[2]
    q_pos = torch.arange(P, P + C, device=x_BCD.device)[:, None]
    k_pos = torch.arange(P + C, device=x_BCD.device)[None, :]
    allowed_CK = (k_pos <= q_pos) & (k_pos > q_pos - window)
    y_BHCD = F.scaled_dot_product_attention(rope(q, offset=P), rope(k_all), v_all, attn_mask=allowed_CK)
    keep = k_all.shape[2] - min(window - 1, k_all.shape[2])
    out = attn.wo(y_BHCD.transpose(1, 2).reshape(B, C, D))
    return out, KVWindow(k_all[:, :, keep:], v_all[:, :, keep:])


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
        head_dim = cfg.d_model // cfg.n_heads
        self.rope = Rotary(head_dim, self.window + max_chunk, cfg.rope_theta).to(device)
        self.states: list[HyenaState | KVWindow] = []
        for block in model.blocks:
            if isinstance(block.mixer, HyenaLite):
                self.states.append(block.mixer.init_state(batch_size, device))
            else:
                empty = torch.zeros(batch_size, cfg.n_heads, 0, head_dim, device=device, dtype=dtype)
                self.states.append(KVWindow(empty, empty))
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
        model = self.model
        x_BCD = model.embed(ids_BC)
        for i, block in enumerate(model.blocks):
            h_BCD = block.norm1(x_BCD)
            if isinstance(block.mixer, HyenaLite):
                y_BCD, self.states[i] = block.mixer.forward_chunk(h_BCD, self.states[i])
            else:
                y_BCD, self.states[i] = attend_chunk(block.mixer, h_BCD, self.states[i], self.window, self.rope)
            x_BCD = x_BCD + y_BCD.to(x_BCD.dtype)
            x_BCD = x_BCD + block.ffn(block.norm2(x_BCD))
        self.position += ids_BC.shape[1]
        return model.norm(x_BCD)

    def prefill(self, ids_BL: torch.Tensor) -> torch.Tensor:
        """Feed a prompt; returns the logits (B, V) for the token after it."""
        return self.model.head(self.feed(ids_BL)[:, -1])

    def step(self, ids_B: torch.Tensor) -> torch.Tensor:
        """Feed one token per sequence; returns the logits (B, V) for the next one."""
        return self.prefill(ids_B[:, None])


@torch.no_grad()
def hidden_states(model: BioLM, ids_BL: torch.Tensor) -> torch.Tensor:
    """Final-norm hidden states (B, L, D) of a full forward pass."""
    x_BLD = model.embed(ids_BL)
    for block in model.blocks:
        x_BLD = block(x_BLD, model.rotary)
    return model.norm(x_BLD)


@dataclass
class RecordEmbedding:
    id: str
    n_bases: int
    n_tokens: int
    mean: np.ndarray  # (D,) mean of the per-token hidden states
    tokens: np.ndarray | None = None  # (n_tokens, D) when asked for


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """(model, tokenizer) from a training checkpoint directory (model.pt + config.json)."""
    from raybio.config import ExperimentConfig

    path = Path(path)
    meta_file, weights = path / "config.json", path / "model.pt"
    if not (meta_file.is_file() and weights.is_file()):
        raise FileNotFoundError(f"{path} is not a raybio checkpoint: expected config.json and model.pt in it")
    meta = json.loads(meta_file.read_text())
    exp = ExperimentConfig.model_validate(meta["experiment"])
    exp.model.vocab_size = meta["tokenizer"]["vocab_size"]
    model = exp.model.build()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.to(device).eval(), exp.data.tokenizer.build()


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
    from raybio.config import TokenizerConfig
    from raybio.data.fasta import read_fasta

    if isinstance(model, (str, Path)):
        model, ckpt_tokenizer = load_checkpoint(model, device)
        tokenizer = tokenizer or ckpt_tokenizer
    model = model.to(device).eval()
    tokenizer = tokenizer or TokenizerConfig().build()
    if tokenizer.vocab_size != model.cfg.vocab_size:
        raise ValueError(
            f"tokenizer vocab_size {tokenizer.vocab_size} != model vocab_size {model.cfg.vocab_size}: "
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
            pieces = (hidden_states(model, ids_1L[:, i : i + step]) for i in range(0, ids_1L.shape[1], step))
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
