"""Sweep utilisation: how much of the machine time a sweep held went into training steps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class Utilisation:
    """Σ(trial seconds in a phase) / (sweep wall time × concurrent trials), per phase."""

    wall_s: float  # Tuner.fit, start to end
    concurrency: int
    train_s: float  # Σ over trials of time inside optimizer steps
    data_wait_s: float  # Σ time the loop waited for batches
    trial_s: float  # Σ Tune's time_total_s: everything a trial did, start-up to last report
    eval_s: float = 0.0  # Σ validation time (the initial evaluation included)
    checkpoint_s: float = 0.0  # Σ checkpoint writes and uploads
    setup_s: float = 0.0  # Σ building model, engine and data iterators inside the workers

    @property
    def slots_s(self) -> float:
        return self.wall_s * self.concurrency

    @property
    def training(self) -> float:
        return self.train_s / self.slots_s

    def breakdown(self) -> dict[str, float]:
        """Shares of the slot time: each phase of a trial, the rest of it, and no trial at all."""
        phases = {
            "training steps": self.train_s,
            "waiting for data": self.data_wait_s,
            "evaluation": self.eval_s,
            "checkpoints": self.checkpoint_s,
            "model and data set-up": self.setup_s,
        }
        # Ray Train's controller and worker group start-up, reporting, the last checkpoint's upload.
        phases["worker start-up and reporting"] = max(self.trial_s - sum(phases.values()), 0.0)
        shares = {k: v / self.slots_s for k, v in phases.items()}
        shares["no trial running (scheduling, idle slots)"] = max(1 - self.trial_s / self.slots_s, 0.0)
        return shares

    def line(self) -> str:
        parts = ", ".join(f"{k} {v:.0%}" for k, v in self.breakdown().items())
        return (
            f"sweep utilisation {self.training:.2f} = Σ trial training s {self.train_s:.0f} / "
            f"(wall {self.wall_s:.0f} s × {self.concurrency} concurrent); {parts}"
        )


def sweep_utilisation(results: pd.DataFrame, history: pd.DataFrame, wall_s: float, concurrency: int) -> Utilisation:
    """Per-trial step and data-wait seconds from the history windows (steps × mean step time)."""
    train = wait = 0.0
    for _, h in history.groupby("trial_id"):
        h = h.sort_values("step")
        steps = np.diff(np.concatenate([[0], h["step"].to_numpy(float)]))
        step_t = h["step_time_s"].to_numpy(float)
        frac = h.get("data_wait_fraction", pd.Series(0.0, index=h.index)).fillna(0).to_numpy(float)
        train += float(np.sum(steps * step_t))
        wait += float(np.sum(steps * step_t * frac / np.clip(1 - frac, 1e-9, None)))

    def total(column: str) -> float:
        return float(results.get(column, pd.Series(dtype=float)).fillna(0).sum())

    return Utilisation(
        wall_s=wall_s, concurrency=concurrency, train_s=train, data_wait_s=wait, trial_s=total("time_total_s"),
        eval_s=total("eval_time_s"), checkpoint_s=total("checkpoint_time_s"), setup_s=total("setup_time_s"),
    )  # fmt: skip
