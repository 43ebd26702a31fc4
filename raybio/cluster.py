"""Connect to the Ray cluster a job runs on, or start a local one for the embedded default."""

from __future__ import annotations

import logging
import os
import re
import warnings

import ray

# Lines Ray repeats for every trial or task that say nothing about this run. They are kept
# off the console only: the session's log files (/tmp/ray/session_*/logs) still have them.
CONSOLE_NOISE = [
    r"DeprecationWarning",  # deprecations raised inside Ray's own modules
    r"^\s+warnings\.warn\($",  # ... and the source line Python prints under each warning
    r"^\s+self\.exclude_resources = exclude_resources$",
    r"PYTHON worker processes have been started",
    r"Estimated parquet (encoding ratio|reader batch size)",
    r"The maximum number of concurrent tasks for 'ReadParquet'",
    r"has constructor arguments in the object store and max_restarts > 0",
    # Ray Train / Ray Data lines repeated for every trial, checkpoint and epoch (raybio prints its own progress).
    r"Checkpoint successfully created at",
    r"Setting up process group for",
    r"Progress bars disabled\. To enable",
    r"(Execution plan of|Starting execution of) Dataset",
    r"Dataset \S+ execution finished in",
    r"Data sink Parquet finished\.",
    r"Requesting resources: \{",
    r"(Attempting to start|Started) training worker group of size",
    r"^- \(ip=\S+ pid=\d+\) world_rank=",
]


def quiet_console() -> None:
    """Keep CONSOLE_NOISE out of the worker logs Ray forwards to this driver's console.

    Ray applies `RAY_DEDUP_LOGS_SKIP_REGEX` when it forwards logs; it reads the variable at
    import, so the running deduplicators are given the pattern too.
    """
    pattern = "|".join(CONSOLE_NOISE)
    os.environ["RAY_DEDUP_LOGS_SKIP_REGEX"] = pattern
    from ray._private import ray_logging

    for dedup in (ray_logging.stdout_deduplicator, ray_logging.stderr_deduplicator):
        dedup.skip_re = re.compile(pattern)


_NOISE_RE = re.compile("|".join(CONSOLE_NOISE), re.MULTILINE)


def is_noise(record: logging.LogRecord) -> bool:
    """Whether a log record of this process is one of Ray's CONSOLE_NOISE lines."""
    return _NOISE_RE.search(record.getMessage()) is not None


def quiet_driver_console(log_file: str | None) -> None:
    """Keep CONSOLE_NOISE that Ray logs in this driver process off its console (idempotent).

    Ray Data logs plans, parquet estimates and progress hints here as well as in its tasks:
    its console handler gets a filter (its session log file still has every line). Warnings
    raised inside Ray's own modules go to `log_file` instead of stderr; all others are shown.
    """
    from ray.data._internal.logging import SessionFileHandler

    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, SessionFileHandler) and _console_filter not in handler.filters:
            handler.addFilter(_console_filter)
    if log_file:
        _log_ray_warnings_to(log_file)
    if _RAY_WARNINGS.handlers and not isinstance(warnings.showwarning, _RayWarningsToLog):
        warnings.showwarning = _RayWarningsToLog(warnings.showwarning)


def _log_ray_warnings_to(log_file: str) -> None:
    """Send Ray's warnings to `log_file` (a new Ray session in this process replaces the previous file)."""
    files = [h for h in _RAY_WARNINGS.handlers if isinstance(h, logging.FileHandler)]
    if any(h.baseFilename == os.path.abspath(log_file) for h in files):
        return
    for handler in files:
        _RAY_WARNINGS.removeHandler(handler)
        handler.close()
    _RAY_WARNINGS.addHandler(logging.FileHandler(log_file))
    _RAY_WARNINGS.propagate = False


def _console_filter(record: logging.LogRecord) -> bool:
    return not is_noise(record)


_RAY_WARNINGS = logging.getLogger("raybio.ray_warnings")


class _RayWarningsToLog:
    """A `warnings.showwarning` that logs warnings raised in Ray's modules and shows the rest as before."""

    def __init__(self, show):
        self.show = show

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        if f"{os.sep}ray{os.sep}" in filename:
            _RAY_WARNINGS.warning(warnings.formatwarning(message, category, filename, lineno, line).rstrip())
        else:
            self.show(message, category, filename, lineno, file, line)


# Ray Data read tasks need a CPU share while training workers hold whole CPUs. A local
# cluster gets this many logical CPUs beyond the physical ones, and trial concurrency
# leaves the same amount free on any cluster.
DATA_CPU_RESERVE = 1


def init_ray(num_cpus: int | None = None) -> dict:
    """Attach to the cluster named by RAY_ADDRESS (set by `ray job submit`; `auto` = the
    cluster this machine belongs to), else start a new local one.

    The local cluster is always new (`address="local"`): Ray would otherwise attach to any
    cluster another process on this machine happens to have started. Its dashboard binds
    127.0.0.1 only.
    """
    if ray.is_initialized():
        return ray.cluster_resources()
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    # Tune would add its own TensorBoard logger to every Tuner: a second copy of every trial's curves under
    # Ray's artifact folder, and a console hint pointing there rather than at <sweep>/tensorboard.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    quiet_console()
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=True)
    else:
        # Ray Train's preemption watcher polls for draining nodes: one more actor process per
        # trial, and a one-machine cluster has no other node to drain. Set the variable to keep it.
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
        ray.init(
            address="local",
            num_cpus=num_cpus or (os.cpu_count() or 1) + DATA_CPU_RESERVE,
            # The dashboard also serves the state API that Ray Train's cleanup polls.
            dashboard_host="127.0.0.1",
        )
    quiet_driver_console(_session_log("raybio-driver-warnings.log"))
    return ray.cluster_resources()


def machine_line() -> str:
    """Where a figure was measured: date, CPU model and cores, GPU, torch and Ray versions."""
    import platform
    import time

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{time.strftime('%Y-%m-%d')}, {cpu}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"Ray {ray.__version__}, {gpu}"
    )


def _session_log(name: str) -> str | None:
    """A file in this Ray session's log folder (None where this process has no session on disk)."""
    node = ray._private.worker._global_node
    return os.path.join(node.get_session_dir_path(), "logs", name) if node is not None else None


def max_concurrent_trials(resources: dict, num_workers: int, cpus_per_worker: float, gpus_per_worker: float) -> int:
    """How many trials of `num_workers` workers fit at once, leaving room for data reads."""
    per_trial_cpu = num_workers * cpus_per_worker
    fits = int((resources.get("CPU", 0) - DATA_CPU_RESERVE) // per_trial_cpu) if per_trial_cpu else 1 << 30
    if gpus_per_worker:
        fits = min(fits, int(resources.get("GPU", 0) // (num_workers * gpus_per_worker)))
    return max(1, fits)
