"""The TensorBoard callback writes one point per step, also when a trial restarts from a checkpoint."""

from __future__ import annotations

from types import SimpleNamespace

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from raybio.tune.callbacks import TensorBoardCallback


def _report(step: int, loss: float) -> dict:
    return {"step": step, "loss": loss, "train_flops_cum": step * 1e9, "tokens_per_s": 100.0}


def _loss_points(logdir) -> list[tuple[int, float]]:
    (run,) = (logdir / "trials").iterdir()
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, round(e.value, 3)) for e in acc.Scalars("loss/train")]


def test_steps_rerun_after_a_restart_are_written_once(tmp_path):
    trial = SimpleNamespace(trial_id="t1", config={"params": {"experts": 4}})
    cb = TensorBoardCallback(tmp_path)
    for step in (5, 10, 15):
        cb.on_trial_result(0, [], trial, _report(step, 1.0))
    # The Train run failed after step 15 and resumed from its checkpoint at step 5.
    for step in (10, 15, 20):
        cb.on_trial_result(0, [], trial, _report(step, 2.0))
    cb.on_trial_complete(0, [], trial)
    assert _loss_points(tmp_path) == [(5, 1.0), (10, 1.0), (15, 1.0), (20, 2.0)]


def test_a_resumed_sweep_continues_the_curve_an_earlier_driver_wrote(tmp_path):
    trial = SimpleNamespace(trial_id="t1", config={"params": {}})
    first = TensorBoardCallback(tmp_path)
    for step in (5, 10):
        first.on_trial_result(0, [], trial, _report(step, 1.0))
    first.on_trial_error(0, [], trial)  # the driver dies; a new one resumes the sweep
    second = TensorBoardCallback(tmp_path)
    for step in (10, 15):
        second.on_trial_result(0, [], trial, _report(step, 2.0))
    second.on_trial_complete(0, [], trial)
    assert _loss_points(tmp_path) == [(5, 1.0), (10, 1.0), (15, 2.0)]
