"""CPU time by process role while a command runs: which Ray processes spend a sweep's cores.

Samples /proc every `interval` seconds and charges each process's CPU time since the last sample
(user + system) to its current role, read from its Ray process title (`ray::IDLE`,
`ray::ImplicitFunc.train`, `ray::RayTrainWorker...`, `ray::SplitCoordinator`) or command line
(gcs_server, raylet, dashboard, the driver). A process that exits between two samples loses at
most one interval of CPU. Idle is the machine's idle time from /proc/stat over the same span.

    python benchmarks/process_cpu.py --out cpu.json -- python sweeps/expert_count.py --budget demo
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from collections import defaultdict

TICK = os.sysconf("SC_CLK_TCK")

# (role, pattern on the process title / command line), first match wins.
ROLES = [
    ("training worker (Ray Train)", r"^ray::(RayTrainWorker|_RayTrainWorker)"),
    ("Tune trial (in-process training)", r"^ray::(ImplicitFunc|_Inner|run_trial)"),
    ("probe", r"^ray::(_?probe|time_config|time_steps)"),
    ("new Ray worker (starting, importing)", r"^ray::IDLE|default_worker\.py|setup_worker\.py"),
    ("Ray Train controller", r"^ray::(TrainController|Controller)"),
    (
        "Ray Data (split coordinator, reads, stats)",
        r"^ray::(SplitCoordinator|ReadParquet|_StatsActor|MapBatches|"
        r"DatasetsManager|DatasetManager|Read|_get_datasource|_execute_read)",
    ),
    (
        "Tune/Train helper actors (queue, sync, cleanup)",
        r"^ray::(_QueueActor|Queue|SynchronizationActor|"
        r"PlacementGroupCleaner|StateActor|_TuneControllerActor|TrainStateActor|.*Actor)",
    ),
    (
        "Ray services (GCS, raylet, dashboard, monitors)",
        r"gcs_server|raylet|dashboard|log_monitor|monitor\.py|"
        r"runtime_env|agent\.py|ray::DashboardAgent|ray::RuntimeEnvAgent",
    ),
    ("driver", r"sweeps/|benchmarks/|raybio "),
]


def role(title: str) -> str:
    for name, pattern in ROLES:
        if re.search(pattern, title):
            return name
    return "other: " + title[:60]


def _read(pid: str) -> tuple[str, int] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            title = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    return title, int(fields[11]) + int(fields[12])  # utime + stime (ticks)


def _idle_ticks() -> int:
    with open("/proc/stat") as f:
        cpu = f.readline().split()[1:]
    return int(cpu[3]) + int(cpu[4])  # idle + iowait


def measure(cmd: list[str], interval: float = 0.5) -> dict:
    """Run `cmd` to its end; CPU seconds by role, idle seconds, wall time and load averages seen."""
    before = {pid: s for pid in os.listdir("/proc") if pid.isdigit() and (s := _read(pid))}
    last = {pid: ticks for pid, (_, ticks) in before.items()}
    by_role: dict[str, float] = defaultdict(float)
    by_title: dict[str, float] = defaultdict(float)
    loads = []
    idle0, t0 = _idle_ticks(), time.time()
    proc = subprocess.Popen(cmd)
    me = str(os.getpid())
    while True:
        done = proc.poll() is not None
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or pid == me or not (s := _read(pid)):
                continue
            title, ticks = s
            delta = ticks - last.get(pid, 0 if pid not in before else ticks)
            last[pid] = ticks
            if delta > 0:
                by_role[role(title)] += delta / TICK
                by_title[re.sub(r"\s.*", "", title)[:80]] += delta / TICK
        loads.append(os.getloadavg()[0])
        if done:
            break
        time.sleep(interval)
    wall = time.time() - t0
    return {
        "command": cmd,
        "returncode": proc.returncode,
        "wall_s": round(wall, 1),
        "core_s": round(wall * os.cpu_count(), 1),
        "idle_s": round((_idle_ticks() - idle0) / TICK, 1),
        "cpu_s_by_role": {k: round(v, 1) for k, v in sorted(by_role.items(), key=lambda kv: -kv[1])},
        "cpu_s_by_title": {k: round(v, 1) for k, v in sorted(by_title.items(), key=lambda kv: -kv[1])[:30]},
        "load_avg_1m": {"median": sorted(loads)[len(loads) // 2], "max": max(loads)},
        "sampler_cpu_s": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 1),  # this script's own cost
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="write the JSON summary here too")
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- command to run")
    args = parser.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    summary = measure(cmd, args.interval)
    text = json.dumps(summary, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text, file=sys.stderr)
    sys.exit(summary["returncode"])


if __name__ == "__main__":
    main()
