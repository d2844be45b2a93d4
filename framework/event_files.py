"""`EventFileWriter`: one TensorBoard event file, written by a background thread.

tensorboardX's own `SummaryWriter` sends every event through a `multiprocessing.Queue`: each
one is pickled by a feeder thread, passed through a pipe and unpickled by a writer thread,
and every hand-over wakes those threads.  On a busy machine each wake-up makes the training
thread wait for the interpreter lock, which costs more than the summary itself.  Here events
go into a plain queue that nothing waits on; one thread for all the process's writers wakes
when a writer's ``flush_secs`` are up, writes what has accumulated with tensorboardX's record
writer and flushes; closing a writer writes what is left from the closing thread.  The
training thread never blocks on I/O and is never interrupted per event, and opening and
closing a writer start and stop no thread (a thread of its own per writer took 0.6–0.8 ms
of B1's training to start and join, a tenth of what the ``tensorboard`` callback costs it).
"""

import atexit
import collections
import glob
import logging
import math
import os
import socket
import threading
import time

from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.record_writer import RecordWriter

logger = logging.getLogger("plugnet.tensorboard")


def open_event_file(logdir, filename_suffix):
    """A tensorboardX `RecordWriter` on a new event file in ``logdir``, its first record
    the file version TensorBoard expects."""
    os.makedirs(logdir, exist_ok=True)
    name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}{filename_suffix}"
    record = RecordWriter(os.path.join(logdir, name))
    record.write(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
    return record


def write_event_file(logdir, events, filename_suffix=""):
    """Write ``events`` to a new event file in ``logdir`` at once, from the calling thread;
    returns the file's path."""
    record = open_event_file(logdir, filename_suffix)
    try:
        for event in events:
            record.write(event.SerializeToString())
    finally:
        record.close()
    return record.path


def replace_event_file(logdir, events, filename_suffix):
    """Write ``events`` to a new event file in ``logdir``, removing the earlier files whose
    names end in ``filename_suffix`` (what a run writes once, such as its HParams session:
    a resumed or repeated run's replaces the earlier one's); returns the new file's path."""
    pattern = os.path.join(
        glob.escape(os.fspath(logdir)), f"events.out.tfevents.*{filename_suffix}"
    )
    for old in glob.glob(pattern):
        os.unlink(old)
    return write_event_file(logdir, events, filename_suffix)


class EventFileWriter:
    """Writes events to a new event file in ``logdir`` (created if missing).

    ``purge_step``: events of earlier files in ``logdir`` at this step or later are hidden by
    TensorBoard (a run resumed from a checkpoint at that step replaces what the interrupted
    run logged after it).  ``filename_suffix`` ends the file's name; the default, the start
    time in nanoseconds, keeps files opened within the same second apart and in order.
    """

    # Queued events that wake the writing thread before ``flush_secs``: a fast training
    # logging often would otherwise hold ten seconds of events in memory.
    max_pending = 256

    def __init__(self, logdir, flush_secs=10.0, purge_step=None, filename_suffix=None):
        self.logdir = logdir
        self.flush_secs = float(flush_secs)
        suffix = f".{time.time_ns()}" if filename_suffix is None else filename_suffix
        self._file = open_event_file(logdir, suffix)
        self.path = self._file.path  # the event file's
        self._events = collections.deque()  # appends and pops are atomic: no lock needed
        self._lock = threading.Lock()  # held while writing: by the writing thread or close
        self._closed = False
        self._dirty = False  # written since the last flush
        self.due = time.monotonic() + self.flush_secs  # when the thread writes and flushes
        self.error = None  # what stopped the writing (a full disk...); events are then dropped
        atexit.register(self.close)
        if purge_step is not None:
            self.add_event(
                Event(step=int(purge_step), session_log=SessionLog(status=SessionLog.START))
            )
        _flusher.add(self)

    @property
    def closed(self):
        return self._closed

    def add_event(self, event):
        """Queue ``event`` (its ``wall_time`` set to now if unset); returns at once."""
        if self.error is not None:
            return
        if not event.wall_time:
            event.wall_time = time.time()
        self._events.append(event)
        if len(self._events) >= self.max_pending:
            _flusher.wake()

    def add_summary(self, summary, step):
        """Queue a `Summary` protocol buffer at global step ``step``."""
        self.add_event(Event(summary=summary, step=int(step), wall_time=time.time()))

    def _write_pending(self):
        """Write the queued events (holding the lock)."""
        while self._events:
            self._file.write(self._events.popleft().SerializeToString())
            self._dirty = True

    def _fail(self, exc):
        self.error = exc
        self._events.clear()
        self.due = math.inf  # nothing more to write: the thread must not keep waking for it
        logger.warning("TensorBoard events for %s are no longer written: %s", self.logdir, exc)

    def write_queued(self, now):
        """Write the queued events, and flush them to disk if ``flush_secs`` are up: what the
        writing thread does when they are (or when the events pile up)."""
        with self._lock:
            if self._closed or self.error is not None:
                return
            try:
                self._write_pending()
                if now >= self.due:
                    if self._dirty:
                        self._file.flush()  # and fsync, off the training thread
                        self._dirty = False
                    self.due = now + self.flush_secs
            except Exception as exc:  # noqa: BLE001 - training goes on without its summaries
                self._fail(exc)

    def close(self):
        """Write everything queued and close the file."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.due = math.inf
            if self.error is None:
                try:
                    self._write_pending()
                except Exception as exc:  # noqa: BLE001 - training goes on without them
                    self._fail(exc)
            try:
                self._file.close()  # flushed, not synced: readers see it, the training does not wait
            except OSError as exc:
                logger.warning(
                    "could not close the TensorBoard event file in %s: %s", self.logdir, exc
                )
        _flusher.remove(self)
        atexit.unregister(self.close)


class _Flusher:
    """The thread that writes the queued events of every open `EventFileWriter` of the
    process: started with the first writer, it sleeps until the earliest writer's ``due``
    time (or until woken by a writer whose events pile up), writes what is due and sleeps
    again; with no writer open it sleeps until one opens."""

    def __init__(self):
        self._writers = set()
        self._guard = threading.Lock()
        self._wake = threading.Event()
        self._next = math.inf  # the monotonic time the thread wakes at
        self._thread = None

    def add(self, writer):
        with self._guard:
            self._writers.add(writer)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="event files", daemon=True)
                self._thread.start()
            elif writer.due < self._next:
                self._wake.set()

    def remove(self, writer):
        with self._guard:
            self._writers.discard(writer)

    def wake(self):
        if not self._wake.is_set():
            self._wake.set()

    def _run(self):
        while True:
            with self._guard:
                self._wake.clear()  # before looking: a wake after this is not lost
                writers = list(self._writers)
            now = time.monotonic()
            for writer in writers:
                if now >= writer.due or len(writer._events) >= writer.max_pending:
                    writer.write_queued(now)
            with self._guard:
                self._next = min((writer.due for writer in self._writers), default=math.inf)
                wait = None if self._next == math.inf else max(0.0, self._next - time.monotonic())
            self._wake.wait(wait)

    def forget(self):
        """In a forked child: the parent's writers are the parent's to write (their queued
        events would be written twice), and their locks may have been held at the fork."""
        for writer in self._writers:
            writer._lock = threading.Lock()
            writer._closed = True
            writer._events.clear()


_flusher = _Flusher()


def _new_flusher_in_child():
    global _flusher
    _flusher.forget()
    _flusher = _Flusher()


os.register_at_fork(after_in_child=_new_flusher_in_child)
