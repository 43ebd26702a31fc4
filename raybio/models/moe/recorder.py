"""Routing records: which experts each layer uses for which inputs, and how routing differs by tag.

`RouterRecorder` hooks every MoE router of a model, records the experts chosen for each
token together with the token id and a tag (modality, organism, task), and removes its
hooks on exit. From the records: per-layer expert-usage distributions per tag, the mean
pairwise Jensen–Shannon divergence between tags per layer (the OmniGene-4 analysis), and
per-expert preferences (which tokens and tags an expert is enriched for).
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import torch

from raybio.models.moe.layer import moe_layers


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon divergence in nats (0 for equal distributions, at most ln 2)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log(a[nz] / m[nz])).sum())

    return 0.5 * kl(p) + 0.5 * kl(q)


def mean_pairwise_js(dists: dict[str, np.ndarray]) -> float:
    """Mean JS divergence over all unordered pairs of tags (NaN with fewer than two tags)."""
    pairs = list(itertools.combinations(sorted(dists), 2))
    if not pairs:
        return float("nan")
    return float(np.mean([js_divergence(dists[a], dists[b]) for a, b in pairs]))


class RouterRecorder:
    """Context manager recording routing decisions of every MoE layer of `model`.

    with RouterRecorder(model) as rec:
        rec.set_batch(tokens_BL, tags=["dna"] * B)
        model(tokens_BL)
    usage = rec.usage()   # {layer: {tag: counts_E}}
    """

    def __init__(self, model: torch.nn.Module):
        core = model.module if hasattr(model, "module") else model
        self.layers = moe_layers(core)
        if not self.layers:
            raise ValueError("model has no MoE layers to record (pattern has no 'A' blocks)")
        self.num_experts = self.layers[0].cfg.num_experts
        self._handles: list = []
        self._tokens_T: np.ndarray | None = None
        self._tags_T: np.ndarray | None = None
        self._keep_T: np.ndarray | None = None
        # layer -> list of (experts_TK, tokens_T, tags_T)
        self.records: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = defaultdict(list)

    def __enter__(self) -> RouterRecorder:
        for i, moe in enumerate(self.layers):
            self._handles.append(moe.router.register_forward_hook(self._hook(i)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def set_batch(self, tokens_BL: torch.Tensor, tags: list[str], keep_BL: torch.Tensor | None = None) -> None:
        """Tell the recorder which tokens and per-sequence tags the next forward pass sees; positions
        where `keep_BL` is False (padding) are routed by the model but not recorded."""
        B, L = tokens_BL.shape
        if len(tags) != B:
            raise ValueError(f"got {len(tags)} tags for a batch of {B} sequences")
        self._tokens_T = tokens_BL.reshape(-1).cpu().numpy()
        self._tags_T = np.repeat(np.asarray(tags, dtype=object), L)
        self._keep_T = None if keep_BL is None else keep_BL.reshape(-1).cpu().numpy()

    def _hook(self, layer: int):
        def fn(module, inputs, output):
            experts_TK = output[1].detach().cpu().numpy()
            if self._tokens_T is None or len(self._tokens_T) != len(experts_TK):
                raise RuntimeError("call RouterRecorder.set_batch(tokens, tags) before each forward pass")
            keep = slice(None) if self._keep_T is None else self._keep_T
            self.records[layer].append((experts_TK[keep], self._tokens_T[keep], self._tags_T[keep]))

        return fn

    def usage(self) -> dict[int, dict[str, np.ndarray]]:
        """Per layer, per tag: how many routed slots went to each expert."""
        out: dict[int, dict[str, np.ndarray]] = {}
        for layer, recs in sorted(self.records.items()):
            per_tag: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(self.num_experts, dtype=np.int64))
            for experts_TK, _, tags_T in recs:
                for tag in np.unique(tags_T):
                    sel = experts_TK[tags_T == tag].reshape(-1)
                    per_tag[tag] += np.bincount(sel, minlength=self.num_experts)
            out[layer] = dict(per_tag)
        return out

    def expert_preferences(self, vocab: list[str], top: int = 5) -> dict[int, list[dict]]:
        """Per layer, per expert: its most enriched tokens (share in expert / share overall) and tag mix."""
        out: dict[int, list[dict]] = {}
        for layer, recs in sorted(self.records.items()):
            experts = np.concatenate([e.reshape(-1) for e, _, _ in recs])
            k = recs[0][0].shape[1]
            tokens = np.concatenate([np.repeat(t, k) for _, t, _ in recs])
            tags = np.concatenate([np.repeat(g, k) for _, _, g in recs])
            overall = np.bincount(tokens, minlength=len(vocab)) / len(tokens)
            rows = []
            for e in range(self.num_experts):
                mine = tokens[experts == e]
                if not len(mine):
                    rows.append({"expert": e, "slots": 0, "top_tokens": [], "tags": {}})
                    continue
                share = np.bincount(mine, minlength=len(vocab)) / len(mine)
                enrich = np.where(overall > 0, share / np.maximum(overall, 1e-12), 0)
                best = [int(i) for i in np.argsort(-enrich)[:top] if share[i] > 0]
                tag_vals, tag_counts = np.unique(tags[experts == e], return_counts=True)
                rows.append(
                    {
                        "expert": e,
                        "slots": len(mine),
                        "purity": float(share.max()),
                        "top_tokens": [(vocab[i], round(float(enrich[i]), 2)) for i in best],
                        "tags": {str(t): int(c) for t, c in zip(tag_vals, tag_counts, strict=True)},
                    }
                )
            out[layer] = rows
        return out


def js_by_layer(usage: dict[int, dict[str, np.ndarray]]) -> dict[int, float]:
    """Mean pairwise JS divergence between tags' expert-usage distributions, per layer."""
    return {layer: mean_pairwise_js(per_tag) for layer, per_tag in usage.items()}
