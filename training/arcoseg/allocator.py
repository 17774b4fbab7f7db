"""Freed memory kept for reuse instead of handed back to the system (glibc's malloc, Linux).

glibc's malloc gives every large block (above its mmap threshold) back to the system when it is
freed, and trims the heap's free top above its trim threshold; the next allocation of that size
then gets fresh pages, which the kernel zeroes on first touch. Inference and training allocate
and free the same large activations again and again (a batch of 3D windows: tens of MB per
layer): on the 2-core CPU these settings took a warm 3D `segment` from about 2.0 to 1.8 s
(benchmarks/RESULTS.md, "Freed memory kept for reuse"). PyTorch keeps no cache of CPU
memory itself (its performance guide suggests preloading jemalloc or tcmalloc, which a pip
install cannot do for the user), so each engine process raises glibc's thresholds once
(`keep_freed_memory`, the documented `mallopt` settings): blocks up to 32 MiB (glibc's most) come
from the heap, up to KEEP_BYTES of freed memory stay with the process, and all threads share one
arena (in an arena of its own, the `serve` worker's request thread did not reuse its freed
memory). The long-lived `serve` worker gives it back after each heavy request
(`release_freed_memory`), so that an idle worker holds little more than its models.
Elsewhere (macOS, Windows, other C libraries) both do nothing.
"""

from __future__ import annotations

import ctypes
import os

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 32 << 20  # bytes; the largest value glibc accepts on 64-bit systems
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
    settings = ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, KEEP_BYTES),
                (_M_ARENA_MAX, 1))
    return all([libc.mallopt(name, value) for name, value in settings])


def release_freed_memory() -> None:
    """Return the freed memory this process keeps to the system (glibc's malloc_trim)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(ctypes.c_size_t(0))
