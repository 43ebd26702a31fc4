"""The sweep console: Ray's repeated noise and input-error tracebacks stay off it, not out of the logs."""

import logging

from raybio.cluster import CONSOLE_NOISE, quiet_console
from raybio.data.validate import InputError
from raybio.data.validate import hide_input_errors as _hide_input_errors


def _record(exc: BaseException | None) -> logging.LogRecord:
    return logging.LogRecord(
        "ray.data.exceptions",
        logging.ERROR,
        __file__,
        1,
        "Full stack trace:",
        None,
        ((type(exc), exc, None) if exc else None),
    )


def test_an_input_error_inside_a_ray_task_is_hidden_from_the_console_only():
    try:
        try:
            raise InputError("x.fa:3:5: invalid character '!'")
        except InputError as inner:
            raise RuntimeError("task failed") from inner
    except RuntimeError as outer:
        wrapped = outer
    rec = _record(wrapped)
    assert _hide_input_errors(rec) is True  # still passed on: the log file keeps it
    assert rec.hide is True  # Ray Data's console handler drops hidden records
    other = _record(ValueError("a bug"))
    assert _hide_input_errors(other) and not getattr(other, "hide", False)


def test_rays_repeated_lines_are_skipped_when_forwarded_and_ours_are_not():
    from ray._private import ray_logging

    quiet_console()
    skip = ray_logging.stdout_deduplicator.skip_re
    for noisy in (
        "WARNING: 14 PYTHON worker processes have been started on node: abc",
        "Estimated parquet encoding ratio is 0.927.",
        "/x/ray/data/context.py:1299: DeprecationWarning: `use_polars` is deprecated",
        "  warnings.warn(",
    ):
        assert skip.search(noisy), noisy
    for ours in ("[raybio] trial 1 (experts=2): step 100/240", "error: x.fa:3:5: invalid character"):
        assert not skip.search(ours)
    assert len(CONSOLE_NOISE) >= 5
