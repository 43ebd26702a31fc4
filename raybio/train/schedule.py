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


class DeviceSchedule:
    """`lr_lambda` as a table on the parameters' device, indexed by a device counter of applied steps.

    The DDP engine advances it by an on-device flag, so a skipped (non-finite) step moves neither the
    weights nor the schedule and nothing is read on the host. Each param group's LR is its base LR
    (µP groups differ) times the table entry, as a 0-dim tensor (torch's fused AdamW takes tensor LRs).
    The state dict uses `LambdaLR`'s name for the count, so checkpoints of either load into the other.
    """

    def __init__(self, opt: torch.optim.Optimizer, cfg: TrainConfig, device: torch.device):
        fn = lr_lambda(cfg)
        self.optimizer = opt
        self.table = torch.tensor([fn(s) for s in range(cfg.max_steps + 1)], dtype=torch.float64, device=device)
        self.base_lrs = [float(g["lr"]) for g in opt.param_groups]
        self.applied = torch.zeros((), dtype=torch.int64, device=device)
        self._set_lrs()

    def _set_lrs(self) -> None:
        factor = self.table[self.applied.clamp(max=len(self.table) - 1)]
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = factor * base

    def step(self, applied: torch.Tensor) -> None:
        """Advance by one where `applied` (a bool tensor) is true."""
        self.applied += applied.to(torch.int64)
        self._set_lrs()

    def get_last_lr(self) -> list[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"last_epoch": int(self.applied)}

    def load_state_dict(self, state: dict) -> None:
        self.applied.fill_(state["last_epoch"])
        self._set_lrs()
