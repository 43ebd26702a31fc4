"""Connect to the Ray cluster a job runs on, or start a local one for the embedded default."""

from __future__ import annotations

import os
import re

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
    quiet_console()
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=True)
    else:
        ray.init(
            address="local",
            num_cpus=num_cpus or (os.cpu_count() or 1) + DATA_CPU_RESERVE,
            # The dashboard also serves the state API that Ray Train's cleanup polls.
            dashboard_host="127.0.0.1",
        )
    return ray.cluster_resources()


def max_concurrent_trials(resources: dict, num_workers: int, cpus_per_worker: float, gpus_per_worker: float) -> int:
    """How many trials of `num_workers` workers fit at once, leaving room for data reads."""
    per_trial_cpu = num_workers * cpus_per_worker
    fits = int((resources.get("CPU", 0) - DATA_CPU_RESERVE) // per_trial_cpu) if per_trial_cpu else 1 << 30
    if gpus_per_worker:
        fits = min(fits, int(resources.get("GPU", 0) // (num_workers * gpus_per_worker)))
    return max(1, fits)
