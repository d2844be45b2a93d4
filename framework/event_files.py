"""`EventFileWriter`: one TensorBoard event file, written by a background thread.

tensorboardX's own `SummaryWriter` sends every event through a `multiprocessing.Queue`: each
one is pickled by a feeder thread, passed through a pipe and unpickled by a writer thread,
and every hand-over wakes those threads.  On a busy machine each wake-up makes the training
thread wait for the interpreter lock, which costs more than the summary itself.  Here events
go into a plain queue that nothing waits on; the writer thread wakes every ``flush_secs``
(or when closed), writes what has accumulated with tensorboardX's record writer and flushes.
The training thread never blocks on I/O and is never interrupted per event.
"""

import atexit
import collections
import glob
import logging
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

    # Queued events that wake the writer before its ``flush_secs``: a fast training logging
    # often would otherwise hold ten seconds of events in memory.
    max_pending = 256

    def __init__(self, logdir, flush_secs=10.0, purge_step=None, filename_suffix=None):
        self.logdir = logdir
        self.flush_secs = float(flush_secs)
        suffix = f".{time.time_ns()}" if filename_suffix is None else filename_suffix
        self._file = open_event_file(logdir, suffix)
        self.path = self._file.path  # the event file's
        self._events = collections.deque()  # appends and pops are atomic: no lock needed
        self._wake = threading.Event()  # set when events pile up, and when closing
        self._closing = threading.Event()
        self.error = None  # what stopped the writing (a full disk...); events are then dropped
        self._thread = threading.Thread(target=self._run, name=f"events {logdir}", daemon=True)
        self._thread.start()
        atexit.register(self.close)
        if purge_step is not None:
            self.add_event(
                Event(step=int(purge_step), session_log=SessionLog(status=SessionLog.START))
            )

    @property
    def closed(self):
        return self._closing.is_set()

    def add_event(self, event):
        """Queue ``event`` (its ``wall_time`` set to now if unset); returns at once."""
        if self.error is not None:
            return
        if not event.wall_time:
            event.wall_time = time.time()
        self._events.append(event)
        if len(self._events) >= self.max_pending and not self._wake.is_set():
            self._wake.set()

    def add_summary(self, summary, step):
        """Queue a `Summary` protocol buffer at global step ``step``."""
        self.add_event(Event(summary=summary, step=int(step), wall_time=time.time()))

    def _write_pending(self):
        """Write the queued events; whether there were any."""
        wrote = bool(self._events)
        while self._events:
            self._file.write(self._events.popleft().SerializeToString())
        return wrote

    def _run(self):
        try:
            flushed, dirty = time.monotonic(), False
            while not self._closing.is_set():
                self._wake.wait(self.flush_secs)
                self._wake.clear()
                dirty |= self._write_pending()
                if dirty and time.monotonic() - flushed >= self.flush_secs:  # not every wake
                    self._file.flush()  # and fsync, off the training thread
                    flushed, dirty = time.monotonic(), False
            self._write_pending()
        except Exception as exc:  # noqa: BLE001 - training goes on without its summaries
            self.error = exc
            self._events.clear()
            logger.warning("TensorBoard events for %s are no longer written: %s", self.logdir, exc)

    def close(self):
        """Write everything queued, close the file and stop the thread."""
        if self.closed:
            return
        self._closing.set()
        self._wake.set()
        self._thread.join()
        atexit.unregister(self.close)
        try:
            self._file.close()  # flushed, not synced: readers see it, the training does not wait
        except OSError as exc:
            logger.warning("could not close the TensorBoard event file in %s: %s", self.logdir, exc)
