"""Reading and writing arrays and JSON safely.

Writes go to a temporary file in the destination's directory, are flushed to disk and then
renamed into place, so a crash leaves either the old file or the new one, never a torn one.
Reads never unpickle: a file holding an object array is refused, so opening one runs no code.
"""

import json
import math
import os
import secrets
import tokenize
import zipfile
import zlib

import numpy as np

from framework.errors import DataError


def create_temporary(directory, name):
    """A new file ``.tmp-<random>-<name>`` in ``directory``: ``(descriptor, path)``.

    Unlike `tempfile.mkstemp` (always 0600), the file gets the mode any new file gets (0666
    less the umask), so configs, summaries and checkpoints on a shared disk are readable as
    the user's other files are."""
    while True:
        tmp = os.path.join(directory, f".tmp-{secrets.token_hex(6)}-{name}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def atomic_write(path, write, sync=True):
    """Call ``write(file)`` on a temporary binary file, then move it to ``path``.  With
    ``sync``, the bytes reach the disk before the move (a machine crash then leaves the old
    file or the new one); without it, a killed process still does, at a fraction of the cost."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = create_temporary(directory, os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_arrays(path, arrays):
    """Save a mapping of name -> array (or number) as an ``.npz`` file, atomically."""
    arrays = {key: np.asarray(value) for key, value in arrays.items()}
    for key, value in arrays.items():
        if value.dtype == object:
            raise TypeError(f"'{key}' is an object array; only numeric arrays are stored")
    atomic_write(path, lambda f: np.savez(f, **arrays))


# What zipfile and numpy raise on damaged bytes: a flipped bit can make an entry look
# encrypted (RuntimeError) or compressed by an unknown method (NotImplementedError), and a
# damaged .npy header fails numpy's tokenizer.
CORRUPT_ARCHIVE_ERRORS = (
    OSError,
    EOFError,
    KeyError,
    RuntimeError,
    NotImplementedError,
    SyntaxError,
    zipfile.BadZipFile,
    zlib.error,
    tokenize.TokenError,
)


def load_arrays(path):
    """Load every array of an ``.npz`` file into a dict, refusing pickled objects."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise DataError(pickle_refusal(path)) from exc
        raise DataError(f"{path} is not a readable .npz file: {exc}") from exc
    except CORRUPT_ARCHIVE_ERRORS as exc:
        raise DataError(f"{path} is not a readable .npz file: {exc}") from exc


def pickle_refusal(path):
    """What to say when numpy will not read ``path`` without unpickling: numpy says the
    same of an object array in an archive, of a pickle, and of bytes it cannot place."""
    if zipfile.is_zipfile(path):
        what = "holds an object (pickled) array"
    else:
        with open(path, "rb") as f:
            first = f.read(1)
        if first != b"\x80":  # every pickle of protocol 2 or later starts so
            return f"{path} is not a readable .npz file: it is neither a zip archive nor numpy data"
        what = "is a Python pickle"
    return f"{path} {what}; plugnet refuses to load it, because unpickling could run code"


def json_safe(value):
    """``value`` with NaN and infinities as None: strict JSON has no spelling for them, and a
    diverged run's summary must still be readable by any JSON parser."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def save_json(path, value):
    """Write ``value`` as indented JSON (NaN and infinities as null), atomically."""
    text = json.dumps(json_safe(value), indent=2, sort_keys=False, allow_nan=False) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
