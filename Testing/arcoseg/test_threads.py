"""--threads: by default torch gets the cores other programs leave free."""

import os
import subprocess
import sys
import time

import pytest
import torch

from arcoseg import cpu_load
from arcoseg.commands import common


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("load, expected", [(0.0, 4), (1.2, 3), (3.6, 1), (9.0, 1)])
def test_without_proc_stat_free_cores_subtracts_the_load_average(monkeypatch, load, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, 0.0, 0.0))
    monkeypatch.setattr(cpu_load, "cpu_times", lambda: None)
    assert cpu_load.free_cores() == expected


@pytest.mark.parametrize("idle_share, expected", [(1.0, 4), (0.75, 3), (0.3, 1), (0.0, 1)])
def test_free_cores_counts_what_is_busy_now_not_the_lagging_load_average(monkeypatch,
                                                                         idle_share, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(os, "getloadavg", lambda: (8.0, 8.0, 8.0))  # a job that just ended
    snapshots = iter([(1000, 5000), (1000 + int(400 * idle_share), 5400)])
    monkeypatch.setattr(cpu_load, "cpu_times", lambda: next(snapshots))
    monkeypatch.setattr(cpu_load.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(cpu_load.time, "process_time", lambda: 0.0)  # this process idle
    monkeypatch.setattr(cpu_load, "_snapshots", cpu_load.deque())
    assert cpu_load.free_cores() == expected


class _Clock:
    """Stand-in for time.monotonic / process_time / sleep: sleeping moves the clock on."""

    def __init__(self) -> None:
        self.now, self.slept = 100.0, 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def _fake_machine(monkeypatch, clock, own_cores: float, busy_cores: float) -> None:
    """4 cores; from t = 100 s on, `busy_cores` busy in all (this process's `own_cores`
    included), read through /proc/stat-like tick counts (100 ticks per core-second)."""
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(cpu_load.time, "monotonic", lambda: clock.now)
    monkeypatch.setattr(cpu_load.time, "sleep", clock.sleep)
    monkeypatch.setattr(cpu_load.time, "process_time", lambda: own_cores * (clock.now - 100))
    monkeypatch.setattr(cpu_load, "cpu_times", lambda: (
        int(100 * (4 - busy_cores) * (clock.now - 100)), int(400 * (clock.now - 100))))
    monkeypatch.setattr(cpu_load, "_snapshots", cpu_load.deque())


def test_a_recent_snapshot_spares_the_wait_and_own_cpu_time_does_not_count(monkeypatch):
    clock = _Clock()
    _fake_machine(monkeypatch, clock, own_cores=2.0, busy_cores=3.0)
    cpu_load._snapshots.append(cpu_load.snapshot())  # what CpuWatch keeps
    clock.now += 0.5
    assert cpu_load.busy_cores_now() == pytest.approx(1.0, abs=0.02)  # 3 busy, 2 of them ours
    assert clock.slept == 0.0


def test_without_a_recent_snapshot_it_samples_by_waiting(monkeypatch):
    clock = _Clock()
    _fake_machine(monkeypatch, clock, own_cores=0.0, busy_cores=1.0)
    cpu_load._snapshots.append(cpu_load.snapshot())
    clock.now += 60  # stale: a minute-old average is not "now"
    assert cpu_load.busy_cores_now() == pytest.approx(1.0, abs=0.02)
    assert clock.slept == cpu_load.SAMPLE_SECONDS


def test_the_watch_thread_keeps_snapshots(monkeypatch):
    monkeypatch.setattr(cpu_load, "_snapshots", cpu_load.deque(maxlen=8))
    watch = cpu_load.CpuWatch()
    watch.start()
    try:
        deadline = time.monotonic() + 10
        while len(cpu_load._snapshots) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        watch.stop()
        watch.join(5)
    assert len(cpu_load._snapshots) >= 2 and watch.daemon and not watch.is_alive()


def test_cpu_times_reads_this_machine():
    idle, total = cpu_load.cpu_times()
    assert 0 <= idle <= total and total > 0


def test_auto_threads_uses_the_free_cores_and_a_given_count_wins(monkeypatch, restore_threads):
    monkeypatch.setattr(common, "free_cores", lambda: 1)
    assert common.apply_threads(common.AUTO_THREADS) == 1 == torch.get_num_threads()
    assert common.apply_threads(2) == 2 == torch.get_num_threads()
    assert common.apply_threads(None) is None  # commands without --threads leave torch alone


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_waits_passively_unless_the_user_chose_otherwise(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    out = subprocess.run([sys.executable, "-c", "import arcoseg, os; "
                          "print(os.environ['OMP_WAIT_POLICY'])"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == expected
