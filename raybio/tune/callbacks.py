"""Tune callback that writes each trial's curves to TensorBoard as results arrive.

Tag convention (docs/sweeps.md): `loss/*` vs step; `efficiency/*_vs_gflops` with the
cumulative training GFLOPs as the x-axis; `throughput/*`, `memory/*`, `router/*` vs step.
Each trial gets its own run directory, so steps never collide across trials. A restarted
Train run (worker failure, or a resumed sweep) re-runs the steps since its last checkpoint;
their repeated reports are not written again, so every curve has one point per step (exact
resume makes the repeats equal to the originals).
"""

from __future__ import annotations

from pathlib import Path

from ray.tune import Callback
from ray.tune.integration.ray_train import TuneReportCallback
from torch.utils.tensorboard import SummaryWriter

from raybio.config import ExperimentConfig
from raybio.train.reporting import progress_line
from raybio.tune.record import axis_label, trial_label
from raybio.tune.space import trial_experiment

STEP_SCALARS = {
    "loss": "loss/train",
    "aux_loss": "loss/router_aux",
    "lr": "optim/lr",
    "grad_norm": "optim/grad_norm",  # before clipping; NaN on a skipped (non-finite) step
    "nonfinite_steps": "optim/nonfinite_steps",
    "tokens_per_s": "throughput/tokens_per_s",
    "tokens_per_s_per_worker": "throughput/tokens_per_s_per_worker",
    "step_time_s": "throughput/step_time_s",
    "data_wait_fraction": "throughput/data_wait_fraction",
    "mfu": "throughput/mfu",
}


def write_result(writer: SummaryWriter, result: dict) -> None:
    """Write one training report's scalars."""
    step = int(result["step"])
    for key, tag in STEP_SCALARS.items():
        if key in result:
            writer.add_scalar(tag, result[key], step)
    if "achieved_flops_per_s" in result:
        writer.add_scalar("throughput/achieved_tflops_per_s", result["achieved_flops_per_s"] / 1e12, step)
    if "peak_memory_bytes" in result:
        writer.add_scalar("memory/peak_gib", result["peak_memory_bytes"] / 2**30, step)
    gflops = int(result.get("train_flops_cum", 0) / 1e9)
    writer.add_scalar("efficiency/train_loss_vs_gflops", result["loss"], gflops)
    if result.get("val_step") == step:  # a fresh evaluation, not a carried-over value
        writer.add_scalar("loss/val", result["val_loss"], step)
        writer.add_scalar("efficiency/val_loss_vs_gflops", result["val_loss"], gflops)
    for key, value in result.items():
        if key.startswith("router/") and isinstance(value, int | float):
            writer.add_scalar(key, value, step)


def last_written_step(run_dir: Path) -> int:
    """The last step of `loss/train` already in a run directory's event files (-1 if none)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not run_dir.is_dir():
        return -1
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    if STEP_SCALARS["loss"] not in acc.Tags()["scalars"]:
        return -1
    return max(e.step for e in acc.Scalars(STEP_SCALARS["loss"]))


class TensorBoardCallback(Callback):
    """Per-trial TensorBoard event files under `<logdir>/trials/<label>/`, one point per step."""

    def __init__(self, logdir: str | Path):
        self.logdir = Path(logdir)
        self._writers: dict[str, SummaryWriter] = {}
        self._last_step: dict[str, int] = {}

    def _writer(self, trial) -> SummaryWriter:
        if trial.trial_id not in self._writers:
            params = trial.config.get("params", {})
            path = self.logdir / "trials" / trial_label(params, trial.trial_id)
            if trial.trial_id not in self._last_step:  # a resumed sweep: an earlier driver may have written
                self._last_step[trial.trial_id] = last_written_step(path)
            self._writers[trial.trial_id] = SummaryWriter(str(path))
        return self._writers[trial.trial_id]

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "step" not in result or "loss" not in result:
            return
        writer = self._writer(trial)
        if result["step"] <= self._last_step[trial.trial_id]:
            return  # re-run after a restart from a checkpoint: already written
        write_result(writer, result)
        writer.flush()
        self._last_step[trial.trial_id] = result["step"]

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._close(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._close(trial)

    def _close(self, trial) -> None:
        writer = self._writers.pop(trial.trial_id, None)
        if writer:
            writer.close()


# Tune's trial table (printed once, at the end of a sweep) shows the first four numeric metrics of a
# report: these, in this order.
CONSOLE_METRICS = ("step", "loss", "val_loss", "tokens_per_s")


def console_first(metrics: dict) -> dict:
    """`metrics` with CONSOLE_METRICS first, so Tune's trial table shows them."""
    return {**{k: metrics[k] for k in CONSOLE_METRICS if k in metrics}, **metrics}


class OrderedTuneReportCallback(TuneReportCallback):
    """Ray Train -> Tune reports with CONSOLE_METRICS first (`console_first`)."""

    def after_report(self, run_context, metrics, checkpoint):
        super().after_report(run_context, [console_first(metrics[0]), *metrics[1:]], checkpoint)


class ProgressLineCallback(Callback):
    """One line per trial when it starts (with its steps), at each validation and at its end, labelled with its axis
    values."""

    def __init__(self, axes: list[str], base: ExperimentConfig):
        self.axes, self.base = axes, base
        self.max_steps: dict[str, int] = {}  # per trial: a FLOP budget or an axis may set its own

    def _who(self, trial) -> str:
        return f"trial {trial.trial_id} ({axis_label(self._params(trial), self.axes)})"

    @staticmethod
    def _params(trial) -> dict:
        return (trial.config or {}).get("params", {})

    def on_trial_start(self, iteration, trials, trial, **info):
        steps = self.max_steps[trial.trial_id] = trial_experiment(self.base, self._params(trial)).train.max_steps
        print(f"[raybio] {self._who(trial)}: started ({steps:,} steps)", flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if line := progress_line(result, self.max_steps.get(trial.trial_id), self._who(trial)):
            print(line, flush=True)
