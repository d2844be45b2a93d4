"""A run directory holds one run: finding a run in a directory, locking a directory for the
process that trains into it, and clearing a run away for ``--overwrite``.

A directory *holds a run* when it has any of the entries a run writes (`RUN_ENTRIES`):
``config.json`` (written first, once a run's input has been checked), ``summary.json``,
``model.npz``, ``checkpoints/``, ``train/`` or ``test/`` (the event files) holding more
than the temporary files of cut-off writes, or an event file of its own
(``events.out.tfevents.*``: the HParams session).  Anything else in it (a
user's notes, the lock file) does not make a run, and ``--overwrite`` leaves it alone.

A directory in use is locked with an advisory OS lock (``fcntl.flock``) on its ``.lock``
file, held for the life of the run.  The OS drops the lock when the process ends, however
it ends, so a run killed with SIGKILL never leaves a stale lock: the file stays, the lock
does not.  The lock file is left in place (removing it could let two processes hold locks
on two different files of the same name).
"""

import contextlib
import json
import os
import shutil

from framework.errors import ConfigError

try:
    import fcntl
except ImportError:  # not POSIX (Windows): directories are not locked
    fcntl = None

LOCK_FILE = ".lock"
CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
EVENT_FILE_PREFIX = "events.out.tfevents."
RUN_ENTRIES = (CONFIG_FILE, SUMMARY_FILE, "model.npz", "checkpoints", "train", "test")


def run_entries(logdir):
    """The names in ``logdir`` that belong to a run (`RUN_ENTRIES` and event files), sorted;
    empty when ``logdir`` holds no run or does not exist."""
    try:
        names = os.listdir(logdir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in names:
        path = os.path.join(logdir, name)
        if name.startswith(EVENT_FILE_PREFIX):
            found.append(name)
        elif name in RUN_ENTRIES and not (os.path.isdir(path) and only_temporary_files(path)):
            found.append(name)
    return sorted(found)


def only_temporary_files(directory):
    """Whether ``directory`` holds nothing but the temporary files of cut-off writes
    (``.tmp-*``): no run wrote anything whole into it."""
    try:
        return all(name.startswith(".tmp-") for name in os.listdir(directory))
    except OSError:
        return False


def holds_run(logdir):
    return bool(run_entries(logdir))


def describe_run(logdir):
    """A few words on the run in ``logdir``: how far it went, and what it left."""
    from framework.checkpoints import list_checkpoints

    shown = []
    for name in run_entries(logdir):
        if name.startswith(EVENT_FILE_PREFIX):
            name = "event files"
        elif os.path.isdir(os.path.join(logdir, name)):
            name += "/"
        if name not in shown:
            shown.append(name)
    found = ", ".join(shown)
    steps = None
    try:
        with open(os.path.join(logdir, SUMMARY_FILE), encoding="utf-8") as f:
            steps = json.load(f).get("steps")
    except (OSError, ValueError, AttributeError):
        pass
    if isinstance(steps, int):
        return f"a finished run of {steps} steps ({found})"
    checkpoints = list_checkpoints(logdir)
    if checkpoints:
        return f"an unfinished run, checkpointed at step {checkpoints[-1][0]} ({found})"
    return f"a run ({found})"


def already_holds_message(logdir):
    from framework.checkpoints import list_checkpoints

    if list_checkpoints(logdir):
        choices = f"continue it with --resume {logdir}, replace it with --overwrite, or give another --logdir"
    else:  # nothing to resume from: do not offer it
        choices = "replace it with --overwrite or give another --logdir (it has no checkpoint to --resume from)"
    return f"{logdir} already holds {describe_run(logdir)}; {choices}"


def lock_holder(logdir):
    """The process id written in ``logdir``'s lock file, or None."""
    try:
        with open(os.path.join(logdir, LOCK_FILE), encoding="ascii") as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def in_use_message(logdir):
    pid = lock_holder(logdir)
    by = f"another plugnet process (pid {pid})" if pid else "another plugnet process"
    return f"{logdir} is in use by {by}; wait for it to end, or give another --logdir"


class RunLock:
    """The lock on one run directory, held by this process until `release` (or its end)."""

    def __init__(self, logdir, descriptor):
        self.logdir = logdir
        self._descriptor = descriptor

    @property
    def held(self):
        return self._descriptor is not None

    def release(self):
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the file drops the flock
            self._descriptor = None

    def __del__(self):  # an experiment built but never fitted frees its directory when dropped
        self.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def try_lock(logdir):
    """A held `RunLock` on ``logdir`` (created if needed), or None when another process (or
    another open run in this one) holds it."""
    os.makedirs(logdir, exist_ok=True)
    descriptor = os.open(os.path.join(logdir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o666)
    if fcntl is not None:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return None
        except BaseException:
            os.close(descriptor)
            raise
    # Who holds it, for the message another process gets; only the holder writes here.
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
    return RunLock(logdir, descriptor)


def in_use(logdir):
    """Whether a live process holds ``logdir``'s lock (asking changes nothing on disk)."""
    path = os.path.join(logdir, LOCK_FILE)
    if fcntl is None or not os.path.exists(path):
        return False
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)  # also drops the shared lock just taken
    return False


def check_logdir(logdir, *, resume=False, overwrite=False):
    """Raise `ConfigError` if a run may not start in ``logdir``: it is in use, or (for a new
    run without ``overwrite``) it already holds a run.  Changes nothing on disk, so it can
    come before the input is checked; `claim` checks again under the lock."""
    logdir = os.fspath(logdir)
    if os.path.exists(logdir) and not os.path.isdir(logdir):
        return  # creating the directory will fail with the OS's own message
    if in_use(logdir):
        raise ConfigError(in_use_message(logdir))
    if not resume and not overwrite and holds_run(logdir):
        raise ConfigError(already_holds_message(logdir))


def claim(logdir, *, resume=False, overwrite=False):
    """Lock ``logdir`` for a run and make it ready: a `RunLock` held until released.

    In use by a live process: `ConfigError`, whatever ``resume`` and ``overwrite`` say.  A
    new run into a directory that holds one: `ConfigError` naming it and the choices, unless
    ``overwrite``, when the old run's entries are removed (only now, once everything else
    has been checked).  ``resume`` continues the run that is there.
    """
    logdir = os.fspath(logdir)
    lock = try_lock(logdir)
    if lock is None:
        raise ConfigError(in_use_message(logdir))
    try:
        if not resume and holds_run(logdir):
            if not overwrite:
                raise ConfigError(already_holds_message(logdir))
            clear_run(logdir)
    except BaseException:
        lock.release()
        raise
    return lock


def clear_run(logdir):
    """Remove the run in ``logdir`` (its `run_entries`), leaving other files and the lock."""
    for name in run_entries(logdir):
        path = os.path.join(logdir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
