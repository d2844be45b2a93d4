"""Where a sweep's study lives: an Optuna database URL or a journal file, opened with
messages that name the storage (never its password) when it cannot be reached."""

import os

try:
    import fcntl
except ImportError:  # Windows: Optuna's own lock file
    fcntl = None

import optuna

from framework.errors import ConfigError


def redact(url):
    """``url`` without its password, for messages."""
    if "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given
        return url


def open_storage(url):
    """Optuna storage for a database URL or a journal file path; `ConfigError` (naming the
    storage, no traceback) when it cannot be reached."""
    if "://" not in url:
        directory = os.path.dirname(os.path.abspath(url))
        if not os.path.isdir(directory):
            raise ConfigError(f"cannot use storage '{url}': directory {directory} does not exist")
        try:
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            lock = JournalLock(url) if fcntl is not None else None
            return JournalStorage(JournalFileBackend(url, lock_obj=lock))
        except OSError as exc:
            raise ConfigError(f"cannot use storage '{url}': {exc.strerror or exc}") from None
    engine_kwargs = {"pool_pre_ping": True}
    if url.startswith(("postgresql", "mysql")):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except ImportError:
        hint = ': pip install "psycopg[binary]"' if url.startswith("postgres") else ""
        raise ConfigError(
            f"cannot use storage '{redact(url)}': its database driver is not installed{hint}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy's errors for bad URLs, refused connections...
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        reason = reason[0] if reason else type(exc).__name__
        raise ConfigError(f"cannot reach storage '{redact(url)}': {reason}") from None


class JournalLock:
    """The journal file's writer lock, held with flock(2) on ``PATH.flock``.

    The kernel drops it when its process dies, so a killed sweep never leaves the study
    locked (Optuna's default lock file would stall the next run for its 30 s grace period).
    Holding it, a writer also cuts off a line a killed writer left half-written, which would
    otherwise run into the next line and make the journal unreadable."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def acquire(self):
        fd = os.open(self.path + ".flock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.repair()
        return True

    def release(self):
        fd, self.fd = self.fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def repair(self):
        with open(self.path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            tail = min(size, 1 << 20)
            f.seek(size - tail)
            end = f.read(tail).rfind(b"\n")
            f.truncate(size - tail + end + 1 if end >= 0 else 0)


def release(storage):
    """Close a storage's database connections (before forking: children open their own)."""
    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()
