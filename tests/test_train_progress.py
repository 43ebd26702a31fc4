"""`raybio train` prints one progress line per validation and at the end, nothing in between."""

from raybio.train.ray_trainer import ProgressLine


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
