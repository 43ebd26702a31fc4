"""Refuse bad steps: a non-finite loss or gradient norm never reaches the weights or a checkpoint."""

from __future__ import annotations

import math


class NonFiniteStepError(RuntimeError):
    """Training stopped because steps kept producing a non-finite loss or gradient norm."""


class NonFiniteGuard:
    """Counts non-finite steps; skips them, and stops the run past `max_consecutive` in a row.

    The guard raises before the checkpoint of the failing step is written, so the run's latest
    checkpoint stays the last good one. With `policy="stop"` the first bad step stops the run.
    """

    def __init__(self, policy: str, max_consecutive: int):
        self.policy, self.max_consecutive = policy, max_consecutive
        self.consecutive = 0

    def check(self, step: int, loss: float, grad_norm: float | None = None) -> bool:
        """True if the step is good; False if it must be skipped; raises when the run must stop."""
        bad = [f"{name} is {value}" for name, value in (("loss", loss), ("gradient norm", grad_norm))
               if value is not None and not math.isfinite(value)]  # fmt: skip
        if not bad:
            self.consecutive = 0
            return True
        self.consecutive += 1
        if self.policy == "stop" or self.consecutive >= self.max_consecutive:
            raise NonFiniteStepError(
                f"step {step}: {' and '.join(bad)} ({self.consecutive} non-finite step(s) in a row, "
                f"train.on_nonfinite={self.policy!r}, train.max_nonfinite_steps={self.max_consecutive}); "
                f"the weights were not updated and the latest checkpoint is the last good one: lower train.lr, "
                f"check the data, or resume from that checkpoint"
            )
        return False
