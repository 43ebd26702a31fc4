"""Validation inside the training loop: a fixed, stratified sample of windows, scored the same way in
every trial, with a standard error and the unigram loss of the same positions beside it.

The headline is the loss on masked positions only (MLM; every picked token replaced by <mask>,
so nothing can be copied from the input) or on every next token (NTP). The sample is drawn once
per corpus (seed VAL_SEED, independent of the training seed), stratified by source and
modality in proportion to the validation split; each window is masked `eval_mask_draws` times
(different positions, so more of them are scored) with masks that depend only on the window,
so every trial, seed and world size scores exactly the same positions. The standard error
treats windows as clusters (positions inside a window are not independent); the unigram loss
is the cross-entropy of the training corpus's token frequencies on the same positions, so
`val_unigram_loss - val_loss` is what the model learned beyond letter frequencies.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from raybio.data.loader import read_windows
from raybio.data.manifest import Manifest
from raybio.data.tokenizers import IGNORE
from raybio.train.engine import uses_bf16
from raybio.train.targets import Targets

REFERENCE_STRIDE = 4  # the step-0 reference scores every 4th window of the sample (a quarter of its cost)
VAL_SEED = 1234  # the sample and its masks are the same in every trial and at every evaluation


def autocast(device: torch.device, precision: str):
    if uses_bf16(precision, device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def stratified_sample(strata: np.ndarray, size: int, seed: int = VAL_SEED) -> np.ndarray:
    """Indices of `size` rows (all when there are fewer), each stratum in proportion to its share
    (largest remainders), chosen at random within it; sorted."""
    n = len(strata)
    if size >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    keys, counts = np.unique(strata, return_counts=True)
    quota = counts * size / n
    take = np.floor(quota).astype(int)
    take[np.argsort(-(quota - take))[: size - take.sum()]] += 1
    picked = [rng.choice(np.flatnonzero(strata == k), t, replace=False) for k, t in zip(keys, take, strict=True)]
    return np.sort(np.concatenate(picked))


def unigram_log_probs(manifest: Manifest, objective: str) -> torch.Tensor:
    """log p(token) of the training corpus (add-½ smoothing); MLM never predicts special tokens, so
    its unigram model spreads over content tokens only."""
    counts = np.asarray(manifest.train_token_counts, dtype=np.float64)
    if counts.size == 0:  # a corpus prepared before counts were kept
        return torch.full((manifest.tokenizer.vocab_size,), float("nan"))
    counts = counts + 0.5
    if objective == "mlm":
        counts[: manifest.tokenizer.n_special] = 0.0
    with np.errstate(divide="ignore"):
        return torch.from_numpy(np.log(counts / counts.sum()))


def cluster_se(sums: np.ndarray, counts: np.ndarray) -> float:
    """Standard error of Σsums/Σcounts with windows as clusters (linearised ratio estimator)."""
    keep = counts > 0
    s, c = sums[keep], counts[keep]
    if len(c) < 2:
        return float("nan")
    ratio = s.sum() / c.sum()
    return float(np.sqrt(len(c) / (len(c) - 1) * np.sum((s - ratio * c) ** 2)) / c.sum())


class Validator:
    """The validation sample's losses, run every `every` steps (0 = only at the end) and at the final
    step; `latest` holds the newest result with `val_step`; `seconds` the time spent evaluating."""

    def __init__(self, val_shard, targets: Targets, manifest: Manifest, *, windows: int, draws: int, batch_size: int,
                 every: int, precision: str, device: torch.device, rank: int, world: int):  # fmt: skip
        self.val_shard, self.targets, self.manifest = val_shard, targets, manifest
        self.size, self.draws = windows, draws if targets.objective == "mlm" else 1
        self.batch_size, self.every, self.precision = batch_size, every, precision
        self.device, self.rank, self.world = device, rank, world
        self.unigram = unigram_log_probs(manifest, targets.objective)
        self.sample: dict | None = None  # read on the first evaluation
        self.latest: dict[str, float] = {}
        self.seconds = 0.0

    def should_validate(self, step: int, final: bool) -> bool:
        return final or bool(self.every and step % self.every == 0)

    def _read_sample(self) -> dict:
        rows = read_windows(self.val_shard)
        strata = np.char.add(rows["modality"].astype(str), rows["source"].astype(str))
        idx = stratified_sample(strata, self.size)
        tokens = torch.from_numpy(rows["tokens"][idx].astype(np.int64))
        # Per-tag losses where the sample mixes modalities or sources (a multi-omic corpus's DNA and protein).
        tags, names = {}, [s.uri.removeprefix("bundled:").rsplit("/", 1)[-1] for s in self.manifest.sources]
        for kind, values in (("modality", rows["modality"][idx]), ("source", rows["source"][idx])):
            if len(np.unique(values)) > 1:
                tags |= {f"{kind}/{names[v] if kind == 'source' else v}": values == v for v in np.unique(values)}
        # Masks depend on the window alone: the same positions in every trial, seed and world size.
        variants = {"mask_only": [], "corrupted": []}
        for d in range(self.draws):
            gen = torch.Generator().manual_seed(VAL_SEED + d)
            variants["mask_only"].append(self.targets(tokens, gen, mask_only=True))
            if d == 0 and self.targets.objective == "mlm":
                variants["corrupted"].append(self.targets(tokens, torch.Generator().manual_seed(VAL_SEED + d)))
        return {"variants": variants, "tags": tags}

    @torch.no_grad()
    def run(self, model: torch.nn.Module, step: int) -> dict[str, float]:
        """The sample's losses. At step 0 (the untrained reference) one mask draw of every REFERENCE_STRIDE-th
        window and no corrupted loss: the reference needs no precision, and evaluation time is training time
        not spent."""
        t0 = time.perf_counter()
        if self.sample is None:
            self.sample = self._read_sample()
        model.eval()
        variants = self.sample["variants"]
        rows = slice(None, None, REFERENCE_STRIDE if step == 0 else 1)
        draws = [(x[rows], y[rows]) for x, y in variants["mask_only"][: 1 if step == 0 else None]]
        sums, counts, uni = self._score_draws(model, draws)
        result = {
            "val_loss": sums.sum() / max(counts.sum(), 1),
            "val_loss_se": cluster_se(sums, counts),
            "val_unigram_loss": uni.sum() / max(counts.sum(), 1),
            # Per window, for paired comparisons: every trial of a corpus scores these same positions.
            "val_window_loss": sums.round(4).tolist(),
            "val_window_tokens": counts.tolist(),
        }
        for tag, in_tag in self.sample["tags"].items():
            result[f"val_loss/{tag}"] = sums[in_tag[rows]].sum() / max(counts[in_tag[rows]].sum(), 1)
        if variants["corrupted"] and step > 0:
            c_sums, c_counts, _ = self._score_draws(model, variants["corrupted"])
            result["val_loss_corrupted"] = c_sums.sum() / max(c_counts.sum(), 1)
        model.train()
        self.latest = {**result, "val_step": step}
        self.seconds += time.perf_counter() - t0
        return result

    def _score_draws(self, model, draws: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-window loss sums, scored-token counts and unigram-loss sums over the mask draws."""
        n = len(draws[0][0])
        sums, counts, uni = np.zeros(n), np.zeros(n), np.zeros(n)
        for inputs, labels in draws:
            s, c, u = self._score(model, inputs, labels)
            sums, counts, uni = sums + s, counts + c, uni + u
        return sums, counts, uni

    def _score(self, model, inputs_NL: torch.Tensor, labels_NL: torch.Tensor):
        """Per-window sums of token losses, scored-token counts and unigram losses, over all ranks."""
        n, bs = len(inputs_NL), self.batch_size
        starts = list(range(0, n, bs))
        # Under expert parallelism every forward is collective: every rank runs as many batches.
        per_rank = -(-len(starts) // self.world)
        out = torch.zeros(3, n, dtype=torch.float64)
        for i in range(per_rank):
            j = i * self.world + self.rank
            start = starts[j] if j < len(starts) else 0  # a rank past the end repeats batch 0, unscored
            x, y = inputs_NL[start : start + bs].to(self.device), labels_NL[start : start + bs].to(self.device)
            with autocast(self.device, self.precision):
                logits_BLV = model(x).logits
            nll_BL = F.cross_entropy(logits_BLV.float().transpose(1, 2), y, ignore_index=IGNORE, reduction="none")
            scored_BL = y != IGNORE
            if j < len(starts):
                uni_BL = torch.where(scored_BL, -self.unigram.to(self.device)[y.clamp(min=0)], 0.0)
                rows = slice(start, start + len(x))
                out[0, rows] = (nll_BL * scored_BL).sum(1).double().cpu()
                out[1, rows] = scored_BL.sum(1).double().cpu()
                out[2, rows] = uni_BL.sum(1).double().cpu()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(out)
        return out[0].numpy(), out[1].numpy(), out[2].numpy()
