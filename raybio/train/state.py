"""The trainer's state as one object: step, data position, RNGs, token count, carried metrics.

`TrainState.capture` / `restore` move everything a rank needs to continue exactly (the MLM
masking generator and torch/numpy/python RNGs included) in and out of a checkpoint; the
weights, optimizer and schedule travel through the engine.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

import numpy as np
import torch


@dataclass
class TrainState:
    """Where training stands; identical on every rank except `rng` (per rank) and `tokens_seen` (per rank)."""

    step: int = 0
    epoch: int = 0  # passes over the train split started before this one
    batch_in_epoch: int = 0  # batches of the current epoch already trained on
    world_size: int = 1
    metrics: dict = field(default_factory=dict)  # carried into later reports (initial / latest validation)
    nonfinite_steps: int = 0  # skipped so far (their loss or gradient norm was not finite)

    def advance(self) -> None:
        self.step += 1
        self.batch_in_epoch += 1

    def next_epoch(self) -> None:
        self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    def shared_dict(self) -> dict:
        """The part every rank shares (train_state.json)."""
        return asdict(self)


def rng_state(gen: torch.Generator) -> dict:
    """Every RNG a rank draws from: the MLM masking generator and the global ones."""
    np_state = np.random.get_state()
    state = {
        "mlm": gen.get_state(),
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, gen: torch.Generator) -> None:
    gen.set_state(state["mlm"])
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
