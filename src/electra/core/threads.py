"""How many compute threads a run uses: the cores actually free to this process, unless the user says.

torch starts one thread per core.  On a machine where another process keeps a core busy, its threads wait on each
other at every parallel region while one of them is descheduled, and a job runs about twice as slowly as it would on
one thread.  So a run counts the cores it may use (CPU affinity, a cgroup CPU quota), watches them for a moment,
and uses those that are mostly idle.  ``threads=N`` fixes the number; an ``OMP_NUM_THREADS`` in the environment
is the user's choice too and is left alone.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

ROUND_UP_FROM = 0.3     # 1.7 idle cores' worth is 2 free cores; 1.6 is 1
SAMPLE_SECONDS = 0.25


def _allowed_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        return list(range(os.cpu_count() or 1))


def _quota() -> float | None:
    """CPUs granted by a cgroup v2 (``cpu.max``) or v1 (``cfs_quota_us``) quota, None without one."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def _cpu_times() -> dict[int, tuple[int, int]]:
    """(idle, total) jiffies per CPU from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            values = [int(v) for v in fields]
            out[int(name[3:])] = (values[3] + (values[4] if len(values) > 4 else 0), sum(values))
    return out


def idle_cpus(cpus: list[int], seconds: float = SAMPLE_SECONDS) -> int:
    """How many cores' worth of ``cpus`` sat idle over a short interval (all of them where /proc is absent).

    Idle shares are summed, not counted per core: a busy process that the scheduler moves between two cores leaves
    each half idle, which is one free core, not two."""
    try:
        before = _cpu_times()
        time.sleep(seconds)
        after = _cpu_times()
    except OSError:
        return len(cpus)
    idle = 0.0
    for cpu in cpus:
        if cpu in before and cpu in after:
            total = after[cpu][1] - before[cpu][1]
            idle += 1.0 if total <= 0 else (after[cpu][0] - before[cpu][0]) / total
    return math.floor(idle + ROUND_UP_FROM)


def free_threads() -> int:
    cpus = _allowed_cpus()
    count = len(cpus)
    quota = _quota()
    if quota is not None:
        count = min(count, max(1, math.floor(quota)))
    return max(1, min(count, idle_cpus(cpus)))


def use_threads(requested: int = 0) -> int | None:
    """Set torch's intra-op threads: ``requested`` if > 0, else the free cores unless OMP_NUM_THREADS is set;
    return the number set (None: left as it was)."""
    if requested > 0:
        n = requested
    elif os.environ.get("OMP_NUM_THREADS"):
        return None
    else:
        n = free_threads()
    torch.set_num_threads(n)
    return n
