"""Splitting numpy work on a batch across the CPU's cores.

BLAS spreads the matrix products over its own threads; everything else in a training step
(the im2col copies, pooling, activations, the optimizer's update) runs on one core unless it
is split.  numpy releases the GIL inside its ufunc loops and its large copies, so plain
Python threads run those at the same time: `split(work, total)` calls ``work(start, stop)``
on contiguous parts of ``range(total)`` (the batch axis, or a flat parameter), one part per
thread, and returns when all are done.

How many threads: as many as BLAS is allowed now (``threadpoolctl.threadpool_limits`` and
``OPENBLAS_NUM_THREADS`` govern both), so one knob sets the whole step's parallelism and a
run pinned to one thread runs everything on one.  Work too small to be worth a hand-off
(``minimum`` items per part) stays on the calling thread.

Why threads rather than a library: numexpr would fuse an element-wise expression into one
pass, but covers only element-wise maths (not the strided copies and slices the layers
need) and adds a dependency; numba compiles fused kernels, but costs a second or more of
JIT compilation (or a cache directory) and an LLVM import in every process, which
plugnet's quick start-up cannot afford.  Threads over plain numpy keep the layers' maths
as it reads, and give each core its share.
"""

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

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


# The least work worth handing to another thread, in array elements: below about this a
# part takes less time than the hand-off (tens of microseconds) saves.
MIN_ELEMENTS = 65536


def split_rows(work, array_or_shape, minimum_elements=None):
    """`split` over the first axis of an array (or shape), each part at least
    ``minimum_elements`` elements (default `MIN_ELEMENTS`): ``work(start, stop)`` takes rows
    ``start:stop``."""
    minimum_elements = MIN_ELEMENTS if minimum_elements is None else minimum_elements
    shape = getattr(array_or_shape, "shape", array_or_shape)
    rows = shape[0] if shape else 1
    row_size = max(1, math.prod(shape[1:]))
    split(work, rows, minimum=-(-minimum_elements // row_size))


def elementwise(ufunc, *args, out=None):
    """``ufunc(*args, out=out)`` computed in row blocks across the cores.

    Arguments shaped as the result are cut into the same rows; others (scalars, a bias
    that broadcasts along the rows) go to every part whole.  The result is that of the
    one call, element for element."""
    if out is None:
        shape = np.broadcast_shapes(*(np.shape(a) for a in args))
        if math.prod(shape) < 2 * MIN_ELEMENTS or len(shape) == 0:
            return ufunc(*args)  # too small to split: one call, no hand-off
        out = np.empty(shape, dtype=np.result_type(*args))
    elif out.ndim == 0:
        return ufunc(*args, out=out)

    def part(start, stop):
        pieces = [a[start:stop] if np.shape(a) == out.shape else a for a in args]
        ufunc(*pieces, out=out[start:stop])

    split_rows(part, out)
    return out


def _get_pool():
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) - 1), thread_name_prefix="plugnet")
        return _pool
