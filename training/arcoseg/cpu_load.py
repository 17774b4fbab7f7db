"""How many cores other programs keep busy now: the basis of `--threads` auto.

"Now" is the busy share of all CPU time over the last SAMPLE_SECONDS (Linux /proc/stat), minus
this process's own CPU time over the same span; where /proc/stat does not exist, the 1-minute
load average, which lags (a job that ended a minute ago still counts in it).

A one-shot command samples by sleeping SAMPLE_SECONDS. The long-lived `serve` worker runs a
`CpuWatch` thread that takes a snapshot every SAMPLE_SECONDS, so a request measures from the
latest snapshot at least that old and starts without waiting.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import NamedTuple

SAMPLE_SECONDS = 0.25  # the span "now" covers
_STALE = 4  # a snapshot older than this many spans is not "now" any more


class Snapshot(NamedTuple):
    """Machine-wide idle and total CPU time (clock ticks), this process's CPU time (s), when (s,
    monotonic clock)."""

    idle: int
    total: int
    own: float
    at: float


_snapshots: deque[Snapshot] = deque(maxlen=2 * _STALE)


def cpu_times() -> tuple[int, int] | None:
    """(idle, total) CPU time of the whole machine in clock ticks since boot (idle includes
    waiting for I/O), from the first line of /proc/stat; None where unavailable."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields)


def snapshot() -> Snapshot | None:
    """The machine's and this process's CPU times now; None without /proc/stat."""
    times = cpu_times()
    if times is None:
        return None
    return Snapshot(*times, time.process_time(), time.monotonic())


def busy_cores_now(seconds: float = SAMPLE_SECONDS) -> float | None:
    """Cores' worth of CPU time other programs used over the last `seconds` or so: since the
    newest kept snapshot at least `seconds` old (`CpuWatch`), else over the next `seconds`
    (this process sleeps meanwhile); this process's own CPU time is not counted. None where
    /proc/stat does not exist."""
    now = snapshot()
    if now is None:
        return None
    start = next((s for s in reversed(_snapshots)
                  if seconds <= now.at - s.at <= _STALE * seconds), None)
    if start is None:
        time.sleep(seconds)
        start, now = now, snapshot()
        if now is None:
            return None
    idle, total = now.idle - start.idle, now.total - start.total
    if total <= 0:
        return 0.0
    busy = (1 - idle / total) * (os.cpu_count() or 1)
    own = (now.own - start.own) / max(now.at - start.at, 1e-6)
    return max(0.0, busy - own)


def allowed_cores() -> int:
    """CPU cores this process may run on (its CPU affinity; the machine's where unknown)."""
    return (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1)


def free_cores() -> int:
    """Cores this process may use (CPU affinity) minus those other programs keep busy now
    (`busy_cores_now`, else the load average), scaled to the affinity's share of the machine;
    at least 1."""
    allowed = allowed_cores()
    machine = max(allowed, os.cpu_count() or allowed)
    busy = busy_cores_now()
    if busy is None:
        busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(allowed, int(allowed - busy * allowed / machine + 0.5)))


class CpuWatch(threading.Thread):
    """Daemon thread keeping a snapshot every SAMPLE_SECONDS for `busy_cores_now` (the serve
    worker: its requests then choose their threads without sleeping)."""

    def __init__(self) -> None:
        super().__init__(name="cpu-watch", daemon=True)
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.is_set() and (taken := snapshot()) is not None:
            _snapshots.append(taken)
            self._stopped.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        """End the thread within SAMPLE_SECONDS."""
        self._stopped.set()
