"""`raybio train` prints one progress line per validation and at the end, nothing in between."""

from types import SimpleNamespace

from raybio.config import load_config
from raybio.train.ray_trainer import ProgressLine
from raybio.tune.callbacks import ProgressLineCallback
from raybio.tune.space import trial_experiment


def test_progress_line_is_printed_at_validations_and_the_final_step_only(capsys):
    progress = ProgressLine(max_steps=300)
    base = {"loss": 3.9, "val_loss": 3.8, "tokens_per_s": 5123.4}
    progress.after_report(None, [{**base, "step": 50, "val_step": 0}], None)  # a log step, no validation
    progress.after_report(None, [{**base, "step": 100, "val_step": 100}], None)
    progress.after_report(None, [{**base, "step": 300, "val_step": 200}], checkpoint=object())
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "[raybio] step 100/300: train loss 3.9000 val loss 3.8000 5,123 tokens/s",
        "[raybio] step 300/300: train loss 3.9000 val loss 3.8000 5,123 tokens/s (checkpoint saved)",
    ]


def test_a_sweep_trial_line_counts_its_own_steps_when_its_budget_sets_them(capsys):
    # A train.flop_budget axis gives every trial its own max_steps: each line says that trial's, as resolved.
    base = load_config("micro-3")
    axes = ["train.flop_budget", "size"]
    params = {"train.flop_budget": 1.5e11, "size": "micro-1"}
    steps = trial_experiment(base, params).train.max_steps
    callback = ProgressLineCallback(axes, base)
    trial = SimpleNamespace(trial_id="t0", config={"params": params})
    callback.on_trial_start(0, [], trial)
    callback.on_trial_result(0, [], trial, {"step": steps, "val_step": steps - 1, "loss": 4.0, "val_loss": 4.1})
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"[raybio] trial t0 (train.flop_budget=150G, size=micro-1): started ({steps:,} steps)",
        f"[raybio] trial t0 (train.flop_budget=150G, size=micro-1): step {steps}/{steps}: train loss 4.0000 "
        "val loss 4.1000 0 tokens/s",
    ]
    assert steps != base.train.max_steps  # the budget, not the base, set them
