"""glibc's malloc, set once for training: numpy's mid-sized arrays kept, not unmapped.

A training step allocates and frees arrays of a few hundred kilobytes to a few megabytes,
the same ones every step.  glibc's malloc serves a request of its *mmap threshold* or more
with fresh pages from the system, and gives the free top of its heap back to the system
once it exceeds the *trim threshold*; both start low (128 KiB, 256 KiB) and rise only as
large blocks happen to be freed.  So whether a step's arrays come back as fresh pages, each
faulted in again (a couple of microseconds a page), depends on the process's history, and
differs from one process to the next.  Measured (benchmarks/model_speed.py's models, one
thread unless said): the GRU 1,272 page faults a step in some processes and 220 in others
(8.2–9.0 against 5.4 ms a step); the residual net 1,930 a step, 28.6 against 24.5 ms, and
25.3–26.8 against 20.2–22.2 ms on two threads.  With both thresholds fixed at the ceilings
glibc's own rule reaches (32 MiB and 64 MiB) from the first step: no faults a step in
either, and the same peak memory (the GRU 177 and 178 MiB, the residual net 224 and 225).

`keep_freed_memory` sets them, once per process, where the C library is glibc and the
user has not set them (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or
``GLIBC_TUNABLES``); the trainer calls it when it starts fitting.
"""

import ctypes
import functools
import os
import platform

# mallopt's parameter numbers (glibc's malloc.h) and the values set
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit machines
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # what glibc's dynamic rule pairs with it
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


@functools.cache
def keep_freed_memory():
    """Fix glibc's mmap and trim thresholds for this process (see the module); whether it
    did.  Nothing happens elsewhere, or where the user chose the settings."""
    if platform.libc_ver()[0] != "glibc" or any(name in os.environ for name in USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
