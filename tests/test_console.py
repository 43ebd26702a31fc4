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


def test_rays_driver_side_noise_is_kept_off_the_console_and_in_its_log_files(tmp_path):
    import warnings

    import pytest
    from ray.data._internal.logging import SessionFileHandler

    from raybio.cluster import is_noise, quiet_driver_console

    log = tmp_path / "driver-warnings.log"
    quiet_driver_console(str(log))
    quiet_driver_console(str(log))  # idempotent: one filter per handler
    handlers = logging.getLogger("ray.data").handlers
    console = [h for h in handlers if not isinstance(h, SessionFileHandler)]
    ours_per_handler = [sum(getattr(f, "__name__", "") == "_console_filter" for f in h.filters) for h in console]
    assert console and ours_per_handler == [1] * len(console)
    plan = logging.LogRecord("ray.data.x", logging.INFO, "x.py", 1, "Execution plan of Dataset d_0: A -> B", None, None)
    ours = logging.LogRecord("ray.data.x", logging.INFO, "x.py", 1, "Dataset failed: disk full", None, None)
    assert is_noise(plan) and not is_noise(ours)
    for h in console:
        assert not h.filter(plan) and h.filter(ours)
    assert all(h.filter(plan) for h in handlers if isinstance(h, SessionFileHandler))  # the log file keeps it

    with pytest.warns(UserWarning, match="raybio's own") as shown:
        warnings.simplefilter("always")
        quiet_driver_console(None)  # pytest.warns replaced showwarning: wrap it again
        warnings.warn_explicit("`x` is deprecated", DeprecationWarning, "/site-packages/ray/data/context.py", 7)
        warnings.warn_explicit("raybio's own warning", UserWarning, "/work/raybio/thing.py", 3)
    assert not [w for w in shown if "deprecated" in str(w.message)]
    assert "`x` is deprecated" in log.read_text()
