"""Where a worker's reports go, and when it reports: Ray Train in a run, anything else in a test."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol


class Reporter(Protocol):
    def report(self, metrics: dict, checkpoint_dir: Path | None = None, name: str | None = None) -> None: ...
    def latest_checkpoint(self) -> contextlib.AbstractContextManager[Path | None]: ...


class RayTrainReporter:
    """`ray.train.report` (with the checkpoint, when there is one) and the run's latest checkpoint.

    `fallback` is a `ray.train.Checkpoint` to start from while the run has none of its own
    (Ray Train V2 has no resume_from_checkpoint).
    """

    def __init__(self, fallback=None):
        self.fallback = fallback
        # Ray Train logs every report's full metrics dict at INFO from each worker; ours are
        # already in Tune's table and TensorBoard.
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)

    def report(self, metrics: dict, checkpoint_dir: Path | None = None, name: str | None = None) -> None:
        import ray.train

        if checkpoint_dir is None:
            ray.train.report(metrics)
        else:
            checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir))
            ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[Path | None]:
        import ray.train

        checkpoint = ray.train.get_checkpoint() or self.fallback
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as d:
            yield Path(d)


class MetricLogger:
    """Decides when to report (every `every` steps and at the end) and assembles the report."""

    def __init__(self, every: int, static: dict):
        self.every, self.static = every, static

    def should_log(self, step: int, final: bool) -> bool:
        return final or step % self.every == 0

    def metrics(self, step: int, loss: float, aux_loss: float, grad_norm: float, lr: float, **parts: dict) -> dict:
        out = {"step": step, "loss": loss, "aux_loss": aux_loss, "grad_norm": grad_norm, "lr": lr, **self.static}
        for part in parts.values():
            out.update(part)
        return out


def progress_line(metrics: dict, max_steps: int | None, who: str = "") -> str | None:
    """The console line of a report at a validation or the final step (None for other reports)."""
    step = metrics.get("step")
    if step not in (metrics.get("val_step"), max_steps):
        return None
    loss, val = metrics.get("loss", float("nan")), metrics.get("val_loss", float("nan"))
    load = f" (in training, load {metrics['load_avg_1m']:.1f})" if "load_avg_1m" in metrics else ""
    return (
        f"[raybio] {who + ': ' if who else ''}step {step}/{max_steps or '?'}: train loss {loss:.4f} "
        f"val loss {val:.4f} {metrics.get('tokens_per_s', 0):,.0f} tokens/s{load}"
    )
