"""An engine process keeps freed memory for reuse (glibc): large arrays allocated again and again
do not fault in fresh pages each time; giving the memory back makes the next ones fault again.
Each case runs in a fresh interpreter (the allocator's state is per process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from arcoseg import allocator

TRAINING = Path(allocator.__file__).resolve().parents[1]
ROUNDS = """
import resource, sys, threading
import numpy as np
from arcoseg.allocator import keep_freed_memory, release_freed_memory

try:  # numpy asks for 2 MiB pages for its large arrays; count 4 KiB faults, as torch makes
    from numpy._core.multiarray import _set_madvise_hugepage  # numpy >= 2
except ImportError:
    from numpy.core.multiarray import _set_madvise_hugepage
_set_madvise_hugepage(False)

if sys.argv[1] == "keep":
    assert keep_freed_memory()

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def one_round():  # what a layer's activations do: 24, 24 and 48 MiB allocated, used, freed
    before = faults()  # (48 MiB: above glibc's largest mmap threshold, 32 MiB)
    arrays = [np.ones(n << 20) for n in (3, 3, 6)]
    del arrays
    return faults() - before

def rounds():  # 5 rounds, then one after the memory was given back
    counts = [one_round() for _ in range(5)]
    release_freed_memory()
    print(*counts, one_round())

if sys.argv[2] == "thread":  # as in the serve worker: requests run in a thread
    worker = threading.Thread(target=rounds)
    worker.start()
    worker.join()
else:
    rounds()
"""

needs_glibc = pytest.mark.skipif(allocator._glibc() is None, reason="glibc's malloc only")


def _page_faults(mode: str, place: str = "main") -> list[int]:
    """Page faults of 5 rounds, then of one round after the memory was given back, in the main
    thread or in another one."""
    done = subprocess.run([sys.executable, "-c", ROUNDS, mode, place], capture_output=True,
                          text=True,
                          env={**os.environ, "PYTHONPATH": str(TRAINING)}, check=True)
    return [int(v) for v in done.stdout.split()]


@needs_glibc
@pytest.mark.parametrize("place", ["main", "thread"])
def test_kept_memory_is_reused_without_page_faults_until_it_is_given_back(place):
    *rounds, after_release = _page_faults("keep", place)
    first, later = rounds[0], rounds[1:]
    assert first > 500  # fresh pages the first time
    assert sum(later) < 0.05 * first  # then the same memory again
    assert after_release > 0.5 * first  # given back: fresh pages again


@needs_glibc
@pytest.mark.parametrize("place", ["main", "thread"])
def test_without_it_glibc_hands_large_blocks_back_and_faults_them_in_every_round(place):
    first, *later, _ = _page_faults("default", place)
    assert min(later) > 0.3 * first


def test_elsewhere_both_do_nothing(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.keep_freed_memory() is False
    allocator.release_freed_memory()  # no error
