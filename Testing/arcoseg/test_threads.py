"""--threads: by default torch gets the cores other programs leave free."""

import os
import subprocess
import sys

import pytest
import torch

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
    monkeypatch.setattr(common, "cpu_times", lambda: None)
    assert common.free_cores() == expected


@pytest.mark.parametrize("idle_share, expected", [(1.0, 4), (0.75, 3), (0.3, 1), (0.0, 1)])
def test_free_cores_counts_what_is_busy_now_not_the_lagging_load_average(monkeypatch,
                                                                         idle_share, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(os, "getloadavg", lambda: (8.0, 8.0, 8.0))  # a job that just ended
    snapshots = iter([(1000, 5000), (1000 + int(400 * idle_share), 5400)])
    monkeypatch.setattr(common, "cpu_times", lambda: next(snapshots))
    monkeypatch.setattr(common.time, "sleep", lambda seconds: None)
    assert common.free_cores() == expected


def test_cpu_times_reads_this_machine():
    idle, total = common.cpu_times()
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
