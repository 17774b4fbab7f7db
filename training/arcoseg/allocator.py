"""Freed memory kept for reuse instead of handed back to the system (glibc's malloc, Linux).

glibc's malloc gives every large block (above its mmap threshold) back to the system when it is
freed, and trims the heap's free top above its trim threshold; the next allocation of that size
then gets fresh pages, which the kernel zeroes on first touch (one page fault per 4 KiB).
Inference and training allocate and free the same large activations again and again (a batch
of 8 3D windows: 50 MB per layer). PyTorch keeps no cache of CPU memory itself (its performance
guide suggests preloading jemalloc or tcmalloc, which a pip install cannot do for the user), so
each engine process changes glibc's settings once (`keep_freed_memory`, the documented `mallopt`
parameters): no block gets a mapping of its own (M_MMAP_MAX 0: every block comes from the heap,
whose freed memory is reused; a threshold of 32 MiB, glibc's highest, still left those 50 MB
blocks to fresh mappings, about 120-280 thousand page faults per warm 3D segment), up to
KEEP_BYTES of freed memory at the heap's top stay with the process, and all threads share one
arena (in an arena of its own, the `serve` worker's request thread did not reuse its freed
memory). Measured in benchmarks/RESULTS.md ("Freed memory kept for reuse"). The long-lived
`serve` worker gives the memory back once idle (`release_freed_memory`, serve_lanes), so that
an idle worker holds little more than its models. Elsewhere (macOS, Windows, other C
libraries) both do nothing.
"""

from __future__ import annotations

import ctypes
import os

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
KEEP_BYTES = 1 << 30  # freed memory (bytes) at the heap's top kept for reuse


def _glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc, else None."""
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):  # not a glibc system, or no confstr
        return None
    if not version.startswith("glibc"):
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Let this process reuse freed memory rather than return it to the system (see the
    module docstring); True if the C library took the settings. Call it before the process
    starts other threads (a thread keeps the arena it has)."""
    libc = _glibc()
    if libc is None:
        return False
    # M_MMAP_MAX 0: no block is mapped on its own (glibc still maps when the heap cannot grow)
    settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, KEEP_BYTES), (_M_ARENA_MAX, 1))
    return all([libc.mallopt(name, value) for name, value in settings])


def release_freed_memory() -> None:
    """Return the freed memory this process keeps to the system (glibc's malloc_trim)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(ctypes.c_size_t(0))
