"""Learning-rate schedules: linear warmup, then cosine or linear decay to a floor."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from raybio.config import TrainConfig


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    """Multiplier of the peak LR at optimizer step `step` (0-based), for `LambdaLR`.

    Warmup rises linearly to 1 over `warmup_steps`; then the multiplier decays to
    `min_lr_ratio` at `max_steps` along a half cosine or a straight line (`cfg.schedule`).
    """

    def fn(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * shape

    return fn


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """A `LambdaLR` over every param group; µP per-group LRs scale with it (it multiplies each group's base LR)."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
