"""Freed scratch memory kept in the heap while a statistics table is computed (glibc only).

Each row allocates and frees ~20 MB of numpy scratch (the radix passes' histograms, their
cumulative sums and gathers). With glibc's starting thresholds the freed top of the heap is
handed back to the kernel after each tensor and faulted in again for the next: on the 8-task
CLIP family, 1.1 M page faults on the main thread and 1.9 M on another thread (a non-main
arena trims its heap more eagerly), a third of the statistics' CPU time, spent in the kernel
(bench/RESULTS.md). ``keep_scratch_memory`` sets the thresholds that glibc's own dynamic rule
reaches once a 32 MiB block has been freed: blocks under ``MMAP_THRESHOLD`` come from the heap
and up to ``TRIM_THRESHOLD`` of free heap is kept; on leaving, ``malloc_trim(0)`` returns the
freed memory. Elsewhere (musl, macOS, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager

MMAP_THRESHOLD = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit (mallopt's upper bound)
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # what glibc sets with that mmap threshold
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc has both, musl neither
    except (OSError, AttributeError):
        return None
    return libc


@contextmanager
def keep_scratch_memory() -> Iterator[None]:
    """Inside: freed blocks under 32 MiB stay in the process's heap (no page fault to reuse
    them); afterwards the free heap goes back to the kernel."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    try:
        yield
    finally:
        if libc is not None:
            libc.malloc_trim(0)
