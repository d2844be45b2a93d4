"""Spreading the numpy work BLAS does not do over the cores BLAS may use.

BLAS runs the matrix products on its own threads; the rest of a training step (the Fourier
transforms of conv2d, the optimizer's update) runs on the calling thread unless it is
split.  numpy and scipy.fft release the GIL in their loops, so plain threads run those
parts at the same time: `split(work, total)` calls ``work(start, stop)`` on contiguous
parts of ``range(total)``, one part per thread, and `workers` is how many parts to make;
`split_batch` splits a batch of samples.

Why `workers` is often 1: OpenBLAS's idle threads spin (busy-wait with ``sched_yield``)
for 2^28 cycles, about a tenth of a second, after every parallel matrix product before
they sleep.  In a training step a product comes every few milliseconds, so an idle BLAS
thread always occupies the other core, and a thread of ours that wants it gets it only in
slices: split work measured slower than unsplit.  ``OPENBLAS_THREAD_TIMEOUT`` shortens
the spin; plugnet sets it to 20 (2^20 cycles, under half a millisecond, long enough to
bridge back-to-back products) when it is imported before numpy, which is the case in
every ``plugnet`` command (this module does it, as the first thing `framework` imports).
Measured on the Deep MNIST conv net on two cores, with the optimizer's update and conv2d's
transforms split: 1.05x PyTorch's speed with the short spin, 0.84x with the default one.

A script that imports numpy first (nearly every script and notebook) has loaded OpenBLAS
with the default spin, and setting the variable then changes nothing by itself.  So the
first `workers` of such a process has OpenBLAS read the variable again and restart its
idle threads (`shorten_loaded_spin`), which gives the same short spin as importing plugnet
first.  Measured, numpy imported first, over the 50 ms after a 512×512 product on two
threads (the process's CPU time over wall time, on a loaded machine): 0.16–0.28 with the
default spin, the same (0.16–0.25) when BLAS is switched to one thread right after the
product (``openblas_set_num_threads`` does not stop a thread already spinning, so switching
around our split work, as `split` does anyway, is no cure), and 0.00 after
`shorten_loaded_spin`.  Not tried: holding BLAS to one thread for the whole step and
splitting every matrix product ourselves, which would change every layer and give up
BLAS's own splitting of large products.  `workers` still splits
only where OpenBLAS's idle threads sleep within 2^22 cycles (``OPENBLAS_THREAD_TIMEOUT``
of 22 or less) and keeps everything on the calling thread otherwise: under another BLAS,
an OpenBLAS that does not export those functions, or a long spin the user chose.

How many threads: as many as BLAS is allowed now (``threadpoolctl.threadpool_limits``
and ``OPENBLAS_NUM_THREADS`` govern both), so one knob sets the whole step's parallelism.
"""

import ctypes
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, wait

# The OPENBLAS_THREAD_TIMEOUT plugnet sets, and the longest spin under which split work
# still measured faster than unsplit work.
SPIN_EXPONENT = 20
LONGEST_SPIN_EXPONENT = 22
SPIN_VARIABLE = "OPENBLAS_THREAD_TIMEOUT"


def _shorten_openblas_spin():
    """Set OPENBLAS_THREAD_TIMEOUT unless the user did, and return the value OpenBLAS reads
    (or read, if numpy came first): framework/__init__.py imports this module before
    anything loads numpy.  A value the user set wins; set after numpy loaded, the variable
    changes nothing in this process, and what was there when it loaded is what counts."""
    if "numpy" not in sys.modules:
        os.environ.setdefault(SPIN_VARIABLE, str(SPIN_EXPONENT))
    return os.environ.get(SPIN_VARIABLE)


SPIN_AT_LOAD = _shorten_openblas_spin()

_pool = None
_pool_threads = 0  # how many threads _pool may run
_in_part = threading.local()  # .running: this thread runs a part of split work
_blas = None  # threadpoolctl's controllers of the BLAS libraries that let us split
_lock = threading.Lock()


def _forget_pool():
    """A forked child has none of its parent's pool threads: it starts its own when asked."""
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)


def spin_exponent(controller):
    """OpenBLAS's idle spin as OPENBLAS_THREAD_TIMEOUT gives it (2^N cycles; 0 for the
    default 2^28), as the library reports it or, where it cannot, as the variable was when
    the library loaded."""
    try:
        reported = ctypes.CDLL(controller.filepath).openblas_thread_timeout
    except (OSError, AttributeError):  # OpenBLAS 0.3.32 and later do not report it
        return int(SPIN_AT_LOAD) if (SPIN_AT_LOAD or "").isdigit() else 0
    reported.restype = ctypes.c_int
    return reported()


def shorten_loaded_spin(controller):
    """Shorten the idle spin of an OpenBLAS that loaded before plugnet (numpy imported
    first), the way the variable would have: set ``OPENBLAS_THREAD_TIMEOUT``, have OpenBLAS
    read its environment again (``openblas_read_env``) and end its idle threads
    (``blas_thread_shutdown_``, what OpenBLAS's own fork handler calls); the next parallel
    product starts them afresh, and `blas_thread_init` reads the timeout as it does at load.
    Done once, at the first `workers` of the process, before any of plugnet's threads runs
    BLAS.  A spin the user set is left alone, and so is a library without those functions
    (another BLAS, or an OpenBLAS that does not export them): work then stays on one thread.

    OpenBLAS then reports the new timeout (``openblas_thread_timeout``), and its idle
    threads stop taking the second core after a product (see the module docstring)."""
    if os.environ.get(SPIN_VARIABLE) not in (None, str(SPIN_EXPONENT)):
        return  # the user's choice, read when the library loaded
    try:
        library = ctypes.CDLL(controller.filepath)
        read_env, shutdown = library.openblas_read_env, library.blas_thread_shutdown_
    except (OSError, AttributeError):
        return
    os.environ[SPIN_VARIABLE] = str(SPIN_EXPONENT)
    read_env()
    shutdown()


def idle_threads_sleep(controller):
    """Whether BLAS library ``controller``'s idle threads sleep within 2^22 cycles."""
    return (
        controller.internal_api == "openblas"
        and 0 < spin_exponent(controller) <= LONGEST_SPIN_EXPONENT
    )


def blas_limits():
    """The current thread limit of each BLAS library that lets plugnet split (none where
    one's idle threads spin: see the module docstring)."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController  # scans the loaded libraries once

        found = ThreadpoolController().select(user_api="blas").lib_controllers
        for controller in found:
            if controller.internal_api == "openblas" and not idle_threads_sleep(controller):
                shorten_loaded_spin(controller)
        _blas = found if found and all(idle_threads_sleep(c) for c in found) else []
    return [controller.num_threads for controller in _blas]


def workers():
    """The number of threads to split work over: BLAS's current thread limit where its
    idle threads sleep promptly (see the module docstring), 1 otherwise, and 1 inside a
    part of split work (said without asking BLAS: asking is a foreign call that lets go of
    the interpreter lock, and the part would then wait for the other parts to give it back)."""
    if getattr(_in_part, "running", False):
        return 1
    return max(1, min(blas_limits(), default=1))


def _as_part(work, start, stop):
    """``work(start, stop)`` as a part of split work (`workers` says 1 meanwhile)."""
    before, _in_part.running = getattr(_in_part, "running", False), True
    try:
        work(start, stop)
    finally:
        _in_part.running = before


def split(work, total, minimum=1, together=False):
    """Call ``work(start, stop)`` on contiguous parts covering ``range(total)``, one per
    thread (none smaller than ``minimum`` items), and wait for them all.  The parts never
    overlap, so each may write its own slice of a shared output.  The calling thread does
    the first part; an exception in any part is raised here.

    ``together=True`` makes ``total`` parts of one item each and runs them all at once,
    each on a thread of its own, whatever `workers` says: for parts that wait for one
    another (`framework.batch_split`'s exchange of batch statistics), which would wait
    forever if one ran after the other.

    While the parts run, BLAS is held to one thread (and `workers` says 1): the parts
    already occupy the cores, so each part's matrix products run on its own, as one
    large product would have been spread."""
    parts = total if together else min(workers(), total // max(minimum, 1))
    if parts <= 1:
        work(0, total)
        return
    bounds = [total * i // parts for i in range(parts + 1)]
    pool = _get_pool(parts - 1)
    limits = blas_limits()
    for controller in _blas:
        controller.set_num_threads(1)
    try:
        futures = [pool.submit(_as_part, work, bounds[i], bounds[i + 1]) for i in range(1, parts)]
        try:
            _as_part(work, bounds[0], bounds[1])
        finally:
            wait(futures)
        for future in futures:
            future.result()  # raises a part's exception
    finally:
        for controller, limit in zip(_blas, limits, strict=True):
            controller.set_num_threads(limit)


# The least work worth handing to another thread, in array elements: less takes about as
# long as the hand-off (tens of microseconds) saves.
MIN_ELEMENTS = 65536


def split_batch(work, array, min_elements=MIN_ELEMENTS):
    """`split` over the first axis (the batch) of ``array``, no part smaller than
    ``min_elements`` elements: ``work(start, stop)`` takes samples ``start:stop``."""
    size = array[0].size if len(array) else 1
    split(work, len(array), minimum=-(-min_elements // max(size, 1)))


def _get_pool(threads=1):
    """The pool of helper threads, with ``threads`` of them or more (one fewer than the
    cores unless more are asked for)."""
    global _pool, _pool_threads
    with _lock:
        if _pool is None or _pool_threads < threads:
            _pool_threads = max(threads, (os.cpu_count() or 2) - 1)
            _pool = ThreadPoolExecutor(max_workers=_pool_threads, thread_name_prefix="plugnet")
        return _pool
