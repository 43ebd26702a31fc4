"""Deterministic validation inside the training loop, and when to run it."""

from __future__ import annotations

import contextlib
import itertools
import time

import torch
import torch.distributed as dist

from raybio.data.loader import iter_batches
from raybio.data.tokenizers import IGNORE
from raybio.train.engine import uses_bf16
from raybio.train.targets import Targets

VAL_SEED = 1234  # validation masks are identical at every evaluation and in every trial


def autocast(device: torch.device, precision: str):
    if uses_bf16(precision, device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Evaluator:
    """Validation loss on this worker's share of the val split, averaged over all workers.

    Reports the standard 80/10/10 masked loss and, for MLM, the loss with every picked token
    replaced by <mask> (no copying from the input possible). Runs every `every` steps (0 = only
    at the end) and at the final step; `latest` always holds the newest result with `val_step`.
    """

    def __init__(self, val_shard, targets: Targets, *, batch_size: int, batches: int, every: int,
                 precision: str, device: torch.device, rank: int, world: int):  # fmt: skip
        self.val_shard, self.targets = val_shard, targets
        self.batch_size, self.batches, self.every = batch_size, batches, every
        self.precision, self.device, self.rank, self.world = precision, device, rank, world
        self.latest: dict[str, float] = {}
        self.seconds = 0.0  # spent evaluating in this run (the sweep's utilisation accounts for it)

    def should_evaluate(self, step: int, final: bool) -> bool:
        return final or bool(self.every and step % self.every == 0)

    @torch.no_grad()
    def run(self, model: torch.nn.Module, step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        model.eval()
        sums = torch.zeros(4, dtype=torch.float64)  # loss·n, n, mask-only loss·n, n
        batches = list(itertools.islice(iter_batches(self.val_shard, self.batch_size), self.batches * self.world))
        # Under expert parallelism every forward is collective, so all ranks run equally many batches:
        # a stride of a multiple of `world` batches, or all of them when there are fewer.
        strided = len(batches) // self.world * self.world
        variants = [False, True] if self.targets.objective == "mlm" else [False]
        for i, batch in enumerate(batches[:strided] if strided else batches):
            if strided and i % self.world != self.rank:
                continue
            for j, mask_only in enumerate(variants):
                inputs, labels = self.targets(batch["tokens"], torch.Generator().manual_seed(VAL_SEED + i), mask_only)
                with autocast(self.device, self.precision):
                    out = model(inputs.to(self.device), labels.to(self.device))
                n = (labels != IGNORE).sum().item()
                sums[2 * j] += out.lm_loss.item() * n
                sums[2 * j + 1] += n
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)
        model.train()
        result = {"val_loss": (sums[0] / sums[1].clamp(min=1)).item()}
        if self.targets.objective == "mlm":
            result["val_loss_mask_only"] = (sums[2] / sums[3].clamp(min=1)).item()
        self.latest = {**result, "val_step": step}
        self.seconds += time.perf_counter() - t0
        return result
