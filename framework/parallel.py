"""Splitting numpy work on a batch across the CPU's cores, for what BLAS does not spread.

`workers()` is how many threads BLAS may use now (``threadpoolctl.threadpool_limits`` and
``OPENBLAS_NUM_THREADS`` govern it), so one knob sets a step's parallelism and a run pinned
to one thread runs everything on one.  `split(work, total)` calls ``work(start, stop)`` on
contiguous parts of ``range(total)``, one per thread, and returns when all are done: it
pays where each part is a long call that releases the GIL (conv2d's Fourier transforms,
one slab of images per thread).

It does not pay for plain element-wise numpy on this project's sizes: splitting relu,
the bias adds, pooling and the optimizer updates over two threads made seed 002's
training step slower (median of 8 paired rounds on two cores: 44.8 ms with them split
against 41.2 ms with only the transforms split), so those stay one call each.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor


_pool = None
_blas = None
_lock = threading.Lock()


def _forget_pool():
    """In a forked child the parent's pool threads do not exist: start afresh."""
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)


def workers():
    """The number of threads work is split over: BLAS's current thread limit, or 1 when
    no BLAS library reports one."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController  # scans the loaded libraries once

        _blas = ThreadpoolController().select(user_api="blas").lib_controllers
    return max(1, min(controller.num_threads for controller in _blas)) if _blas else 1


def split(work, total, minimum=1):
    """Call ``work(start, stop)`` for contiguous parts covering ``range(total)``, one per
    thread (no part smaller than ``minimum`` items), and wait for all of them.  Parts never
    overlap, so each may write its own slice of a shared output.  The calling thread does
    the first part itself; an exception in any part is raised here."""
    parts = min(workers(), total // max(minimum, 1))
    if parts <= 1:
        work(0, total)
        return
    bounds = [total * i // parts for i in range(parts + 1)]
    pool = _get_pool()
    futures = [pool.submit(work, bounds[i], bounds[i + 1]) for i in range(1, parts)]
    try:
        work(bounds[0], bounds[1])
    finally:
        for future in futures:
            future.result()


def _get_pool():
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) - 1), thread_name_prefix="plugnet")
        return _pool
