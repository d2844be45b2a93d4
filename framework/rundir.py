"""A run directory, and `RunDir`, the one object that owns it.

A run directory holds one training run: ``config.json`` (its config, written once the
input has been checked), ``model.npz`` (the final model), ``summary.json``,
``checkpoints/step-N.npz`` and TensorBoard's event files (in ``train/`` and ``test/``, and
the HParams session at the top).  `RunDir` is the one place that knows this layout.
``plugnet train`` claims, locks and (with ``--overwrite``) clears a directory through it;
resume, evaluate, predict, export and `framework.load_model` read a run's config, model,
newest whole checkpoint and summary through it; and it decides which plugins a use of a run
may import.

**The manifest.**  A run names each file it writes in ``plugnet-run.json`` (`MANIFEST_FILE`)
before writing the file, so a kill between the two leaves a name without its file, never a
file without its name.  A directory *holds a run* only when it holds that manifest.
``--overwrite`` removes the files the manifest names, then the directories they leave
empty, and nothing else: a user's ``train/cat.0001.jpg`` beside the event files stays.  A
file of a name plugnet writes (`plugnet_name`) found in a directory but not in its manifest
is someone else's: a new run there is refused, naming it, ``--overwrite`` or not.  Code
that writes into a run directory (the built-in callbacks do) names its files with `record`
first, and asks `recorded` before replacing a file of a name of its own choosing.

**Runs from before the manifest.**  A directory with plugnet's files and no manifest, a run
written before plugnet kept one, is still read: evaluate, predict, export and `load_model`
use it, and ``--resume`` continues it, taking its plugnet-named files into a new manifest.
A new run into it is refused naming those files, even with ``--overwrite``: plugnet cannot
tell them from a user's.

**Trust.**  Reading a run's files runs no code (nothing is unpickled).  A run's config
names plugin modules, though, and importing a module runs it, so *using* a run (evaluate,
predict, export, ``load_model``) imports only the plugins its user names (``--plugin``,
``plugins=``) and those installed as entry points: a run that needs another is refused with
one message saying how to trust it (`RunDir.config_for_use`).  Resuming a run trains one's
own config again and imports its plugins, as training does.

**Locks.**  A directory in use is locked with an advisory OS lock (``fcntl.flock``) on its
``.lock`` file, held for the life of the run.  The OS drops the lock when the process ends,
however it ends, so a run killed with SIGKILL never leaves a stale lock: the file stays, the
lock does not.  The lock file is left in place (removing it could let two processes hold
locks on two different files of the same name).
"""

import contextlib
import json
import os
import threading

from framework.checkpoints import (
    CHECKPOINT_DIR,
    CHECKPOINT_NAME,
    latest_whole_checkpoint,
    list_checkpoints,
)
from framework.config import apply_overrides, check_config
from framework.data import load_data
from framework.errors import ConfigError, DataError, PluginError
from framework.model import config_inputs, declared_inputs, model_from_config
from framework.registry import load_plugins, plugin_loaded
from framework.saving import (
    ARCHITECTURE,
    MODEL_FILE,
    model_from_arrays,
    read_tokenizer,
    save_run_model,
    weights_of,
)
from framework.storage import atomic_write, load_arrays, save_json
from framework.text import uses_vocab, with_vocab

try:
    import fcntl
except ImportError:  # not POSIX (Windows): directories are not locked
    fcntl = None

LOCK_FILE = ".lock"
MANIFEST_FILE = "plugnet-run.json"
MANIFEST_FORMAT = 1
CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
EVENT_FILE_PREFIX = "events.out.tfevents."
EVENT_DIRS = ("train", "test")  # the tensorboard callback's two writers
TEMPORARY_PREFIX = ".tmp-"  # `framework.storage.create_temporary`: .tmp-<12 hex>-<name>


def plugnet_name(name):
    """Whether plugnet writes files of this name: ``name`` is relative to a run directory,
    with ``/`` between its parts (config.json, summary.json, model.npz, the manifest,
    checkpoints/step-N.npz, and event files at the top, in train/ and in test/)."""
    parts = name.split("/")
    if len(parts) == 1:
        return name in (CONFIG_FILE, SUMMARY_FILE, MODEL_FILE, MANIFEST_FILE) or name.startswith(
            EVENT_FILE_PREFIX
        )
    if len(parts) == 2:
        folder, base = parts
        if folder == CHECKPOINT_DIR:
            return bool(CHECKPOINT_NAME.match(base))
        return folder in EVENT_DIRS and base.startswith(EVENT_FILE_PREFIX)
    return False


def listed(names, most=5):
    """``a, b, c and 4 more``."""
    names = list(names)
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


# --- the run directories this process holds -------------------------------------------------

_held = {}  # real path -> the RunDir this process has claimed there (until its lock is released)
_held_guard = threading.Lock()


def hold(run_dir):
    """Make ``run_dir`` (claimed, its lock held) the one `record` finds its files in."""
    with _held_guard:
        _held[os.path.realpath(run_dir.path)] = run_dir


def let_go(run_dir):
    with _held_guard:
        if _held.get(os.path.realpath(run_dir.path)) is run_dir:
            del _held[os.path.realpath(run_dir.path)]


def holding(path):
    """The `RunDir` this process holds that ``path`` lies in, or None."""
    directory = os.path.realpath(os.path.dirname(os.path.abspath(os.fspath(path))))
    with _held_guard:
        while True:
            if directory in _held:
                return _held[directory]
            parent = os.path.dirname(directory)
            if parent == directory:
                return None
            directory = parent


def record(*paths):
    """Name ``paths`` in the manifest of the run directory this process holds them in (the
    one its training claimed); nothing where they lie in none (a `framework.Trainer` given a
    logdir by hand keeps no manifest).  Call it *before* writing a file, so that no kill can
    leave the file unnamed: a name without its file is harmless, a file without its name is
    left behind by ``--overwrite`` and refuses the next run there."""
    for path in paths:
        run = holding(path)
        if run is not None:
            run.record(path)


def recorded(path):
    """Whether ``path`` is named in the manifest of the run directory this process holds it
    in; None where it lies in none.  A writer that would replace a file of a name of its
    own choosing asks first: an existing file that is not the run's is a user's."""
    run = holding(path)
    return None if run is None else run.name_of(path) in run.names()


def forget(*paths):
    """Take ``paths`` (files removed) out of the manifest of the run directory this process
    holds them in: the counterpart of `record`."""
    for path in paths:
        run = holding(path)
        if run is not None:
            run.forget(path)


# --- the run directory -----------------------------------------------------------------------


class RunDir:
    """One run directory: its layout, its manifest, its lock, and what may be read from it.

    ``RunDir(path)`` touches nothing on disk; ``claim`` takes the directory for a run."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._names = None  # the manifest's names, once read (a set)
        self._guard = threading.Lock()

    def __fspath__(self):
        return self.path

    def __repr__(self):
        return f"RunDir({self.path!r})"

    def file(self, name):
        """The path of ``name`` (``/``-separated, relative to the run directory)."""
        return os.path.join(self.path, *name.split("/"))

    def name_of(self, path):
        """``path`` relative to the run directory, ``/``-separated; a `ValueError` for a path
        outside it."""
        relative = os.path.relpath(
            os.path.realpath(os.path.abspath(os.fspath(path))),
            os.path.realpath(os.path.abspath(self.path)),
        )
        if relative == os.curdir or relative.split(os.sep)[0] == os.pardir:
            raise ValueError(f"{path} is not a file of the run in {self.path}")
        return relative.replace(os.sep, "/")

    # --- the manifest ----------------------------------------------------------------------

    def has_manifest(self):
        return os.path.isfile(self.file(MANIFEST_FILE))

    def names(self):
        """The names of the files this run wrote (its manifest's), a set; empty where there is
        no manifest.  An unreadable manifest is a `ConfigError` naming it."""
        if self._names is None:
            self._names = self._read_manifest()
        return set(self._names)

    def _read_manifest(self):
        path = self.file(MANIFEST_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                manifest = json.load(f)
        except FileNotFoundError:
            return set()
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(self._foreign_manifest(f"it is not readable JSON: {exc}")) from exc
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            raise ConfigError(self._foreign_manifest("it is not a manifest plugnet wrote"))
        files = manifest.get("files")
        if not isinstance(files, list) or not all(isinstance(name, str) for name in files):
            raise ConfigError(self._foreign_manifest("its 'files' is not a list of names"))
        return set(files)

    def _foreign_manifest(self, why):
        return (
            f"{self.file(MANIFEST_FILE)} is not a run manifest ({why}); plugnet neither reads "
            "nor replaces it: move it away, or give another --logdir"
        )

    def _write_manifest(self, names):
        text = json.dumps({"format": MANIFEST_FORMAT, "files": sorted(names)}, indent=1) + "\n"
        # Not synced: a killed process loses nothing, and a machine crash at worst loses a
        # name, whose file then refuses a new run here: it is never taken for a user's file
        # to delete.  Syncing cost 5 ms a checkpoint here, as much as the checkpoint.
        atomic_write(self.file(MANIFEST_FILE), lambda f: f.write(text.encode()), sync=False)
        self._names = set(names)

    def record(self, *paths):
        """Name ``paths`` (files of this run, to be written) in the manifest.  Names of files
        no longer there (checkpoints the run pruned) leave it at the same time."""
        with self._guard:
            names = self.names()
            new = {self.name_of(path) for path in paths}
            if new <= names:
                return
            kept = {name for name in names if os.path.lexists(self.file(name))}
            self._write_manifest(kept | new)

    def forget(self, *paths):
        """Take ``paths`` (files of this run it removed) out of the manifest."""
        with self._guard:
            names = self.names()
            gone = {self.name_of(path) for path in paths} & names
            if gone:
                self._write_manifest(names - gone)

    def write(self, name, write):
        """Record ``name``, then write it atomically with ``write(binary file)``: the way to
        add a file of one's own to a run (a tokenizer, samples); returns its path."""
        path = self.file(name)
        self.record(path)
        atomic_write(path, write)
        return path

    def write_json(self, name, value):
        """Record ``name``, then write ``value`` to it as JSON (`framework.save_json`)."""
        path = self.file(name)
        self.record(path)
        save_json(path, value)
        return path

    def read_json(self, name):
        """The JSON value of the run's file ``name``; None where there is no such file, and a
        `DataError` naming it where it is not readable JSON."""
        path = self.file(name)
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path} is not readable JSON: {exc}") from exc

    # --- what is there ---------------------------------------------------------------------

    def plugnet_files(self):
        """The names of the files here that plugnet writes (`plugnet_name`), whoever wrote
        them, sorted."""
        found = []
        for folder in ("", CHECKPOINT_DIR, *EVENT_DIRS):
            try:
                names = os.listdir(self.file(folder) if folder else self.path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for name in names:
                name = f"{folder}/{name}" if folder else name
                if name != MANIFEST_FILE and plugnet_name(name) and os.path.isfile(self.file(name)):
                    found.append(name)
        return sorted(found)

    def foreign_files(self):
        """The files here of names plugnet writes that the manifest does not name: a user's,
        another tool's, or a run's from before the manifest."""
        names = self.names()
        return [name for name in self.plugnet_files() if name not in names]

    def holds_run(self):
        return self.has_manifest()

    def entries(self):
        """The names at the top of the directory that hold the run's files, sorted."""
        return sorted(
            {name.split("/")[0] for name in self.names() if os.path.lexists(self.file(name))}
        )

    def describe(self):
        """A few words on the run here: how far it went, and what it left."""
        shown = []
        for name in self.entries():
            if name.startswith(EVENT_FILE_PREFIX):
                name = "event files"
            elif os.path.isdir(self.file(name)):
                name += "/"
            if name not in shown:
                shown.append(name)
        found = ", ".join(shown)
        steps = None
        with contextlib.suppress(DataError, AttributeError):
            steps = (self.read_json(SUMMARY_FILE) or {}).get("steps")
        if isinstance(steps, int):
            return f"a finished run of {steps} steps ({found})"
        checkpoints = self.checkpoints()
        if checkpoints:
            return f"an unfinished run, checkpointed at step {checkpoints[-1][0]} ({found})"
        return f"a run ({found})"

    # --- reading ---------------------------------------------------------------------------

    def config(self, resume=False):
        """The config the run saved (``config.json``), as a dict; a `DataError` where there is
        none or it is not readable.  ``resume``: the messages speak of resuming."""
        if not os.path.isdir(self.path):
            raise DataError(f"run directory not found: {self.path}")
        config = self.read_json(CONFIG_FILE)
        if config is None:
            if resume:
                raise DataError(
                    f"{self.path} holds no {CONFIG_FILE}: give the run's config file to resume it"
                )
            raise DataError(
                f"{self.path} is not a plugnet run directory: it has no {CONFIG_FILE} "
                "(give the logdir of a run that `plugnet train` made)"
            )
        if not isinstance(config, dict):
            raise DataError(f"{self.file(CONFIG_FILE)} is not a config table")
        return config

    def summary(self):
        """The run's ``summary.json`` (final metrics, steps, seconds), or None before its end."""
        return self.read_json(SUMMARY_FILE)

    def checkpoints(self):
        """``[(step, path)]`` of the run's checkpoints, oldest first."""
        return list_checkpoints(self.path)

    def latest_checkpoint(self):
        """The newest checkpoint that loads (`framework.checkpoints.latest_whole_checkpoint`)."""
        return latest_whole_checkpoint(self.path)

    def config_for_use(self, plugins=(), overrides=()):
        """The run's config, to use the trained run: ``plugins`` (the user's ``--plugin`` or
        ``plugins=``) are imported, ``overrides`` (``--set`` assignments) applied, and every
        plugin the config then names must be loaded (one of ``plugins``, a built-in or an
        installed entry point): a run's config never makes plugnet import a module
        (`check_plugins`)."""
        load_plugins(list(plugins))
        config = apply_overrides(self.config(), list(overrides))
        check_plugins(config, f"the run in {self.path}")
        return config

    def load_model(self, config):
        """The run's trained model: its ``model.npz`` (the final weights) or, for a run that
        did not get to its end, its newest whole checkpoint, built as ``config`` (the run's,
        as `config_for_use` returns it) says where the file holds weights alone."""
        model_path = self.file(MODEL_FILE)
        if os.path.exists(model_path):
            try:
                arrays = load_arrays(model_path)
            except DataError as exc:
                if self.checkpoints():
                    raise DataError(
                        f"{exc} (delete it to load the run's newest checkpoint instead)"
                    ) from exc
                raise
            if ARCHITECTURE in arrays:
                return model_from_arrays(arrays, model_path)
            tokenizer = read_tokenizer(arrays, model_path)
            model = model_from_run_config(config)
            model.load_state_dict(weights_of(arrays), source=model_path)
            model.tokenizer = tokenizer or model.tokenizer
            return model
        if not self.checkpoints():
            raise DataError(
                f"{self.path} holds no weights: no {MODEL_FILE} (written when training ends) "
                f"and no checkpoint in {self.file(CHECKPOINT_DIR)}; train it to the end, or "
                "resume it with `plugnet train --resume`"
            )
        checkpoint = self.latest_checkpoint()
        model = model_from_run_config(config)
        model.load_state_dict(checkpoint["params"], source=checkpoint["path"])
        return model

    def save_model(self, model):
        """Record and write the run's final model (``model.npz``)."""
        path = self.file(MODEL_FILE)
        self.record(path)
        return save_run_model(model, path)

    # --- claiming --------------------------------------------------------------------------

    def refusal(self, resume=False, overwrite=False):
        """Why a run may not start here (a message), or None.  Changes nothing on disk."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            return None  # creating the directory will fail with the OS's own message
        if in_use(self.path):
            return in_use_message(self.path)
        return None if resume else self._new_run_refusal(overwrite)

    def _new_run_refusal(self, overwrite):
        if self.holds_run() and not overwrite:
            return already_holds_message(self.path)
        foreign = self.foreign_files()
        if foreign:
            return self.foreign_message(foreign)
        return None

    def foreign_message(self, foreign):
        weights = [
            name for name in foreign if name == MODEL_FILE or name.startswith(CHECKPOINT_DIR)
        ]
        older = CONFIG_FILE in foreign and bool(weights) and not self.has_manifest()
        hint = (
            f"; if they are a run of an older plugnet, continue it with --resume {self.path}"
            if older
            else ""
        )
        return (
            f"{self.path} holds files of the names plugnet writes that no run of its own wrote "
            f"there: {listed(foreign)}; plugnet replaces and removes only what its runs "
            f"recorded (in {MANIFEST_FILE}), so move them away or give another --logdir{hint}"
        )

    def check(self, resume=False, overwrite=False):
        """Raise `ConfigError` if a run may not start here: it is in use, or (a new run) it
        holds a run and ``overwrite`` is not given, or it holds files of plugnet's names that
        are not its run's.  Changes nothing on disk, so it can come before the input is
        checked; `claim` checks again under the lock."""
        message = self.refusal(resume, overwrite)
        if message:
            raise ConfigError(message)

    def claim(self, resume=False, overwrite=False):
        """Lock the directory for a run and make it ready: a `RunLock`, held until released.

        In use by a live process: `ConfigError`, whatever ``resume`` and ``overwrite`` say.
        A new run: refused as `check` says; with ``overwrite`` the old run's files are
        removed (only now, once everything else has been checked).  ``resume`` continues
        the run that is there; one from before the manifest is given one, naming its files
        of plugnet's names.  From here until the lock is released, `record` finds this run.
        """
        lock = try_lock(self.path)
        if lock is None:
            raise ConfigError(in_use_message(self.path))
        try:
            self._names = None  # read afresh, under the lock
            if resume:
                if not self.has_manifest():
                    self._write_manifest(self.plugnet_files())
            else:
                message = self._new_run_refusal(overwrite)
                if message:
                    raise ConfigError(message)
                self.clear()
                self._write_manifest(set())
        except BaseException:
            lock.release()
            raise
        lock.run_dir = self
        hold(self)
        return lock

    def clear(self):
        """Remove the run's files (those its manifest names, and the temporary files of
        their cut-off writes), then the directories that leaves empty; nothing else."""
        names = self.names()
        folders = set()
        for name in sorted(names):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.file(name))
            folder = os.path.dirname(name.replace("/", os.sep))
            while folder:
                folders.add(folder)
                folder = os.path.dirname(folder)
        for folder in {"", *folders}:
            directory = os.path.join(self.path, folder) if folder else self.path
            with contextlib.suppress(OSError):
                for entry in os.listdir(directory):
                    # .tmp-<12 hex>-<name>: a torn write of one of the run's files
                    if entry.startswith(TEMPORARY_PREFIX) and entry[17:18] == "-":
                        target = f"{folder.replace(os.sep, '/')}/{entry[18:]}".lstrip("/")
                        if target in names:
                            os.unlink(os.path.join(directory, entry))
        for folder in sorted(folders, key=len, reverse=True):
            with contextlib.suppress(OSError):  # not empty: a user's files are in it
                os.rmdir(os.path.join(self.path, folder))
        if names and self.has_manifest():
            self._write_manifest(set())


def check_plugins(config, source):
    """Refuse to use ``config`` (from ``source``, e.g. "the run in runs/a") where it names
    plugin modules that are not loaded: a `PluginError` naming them and how to trust them.
    Importing a module runs its code, so plugnet never imports one because a config that
    came with a run names it."""
    missing = [name for name in config.get("plugins", []) if not plugin_loaded(name)]
    if missing:
        names = ", ".join(f"'{name}'" for name in missing)
        options = " ".join(f"--plugin {name}" for name in missing)
        raise PluginError(
            f"{source} needs the plugin module{'s' * (len(missing) > 1)} {names}, which "
            "plugnet does not import because a run's config names it (importing a module runs "
            f"its code); if you trust it, pass {options} (in Python: plugins={missing!r}), or "
            "install it as a distribution with a 'plugnet' entry point"
        )


def model_from_run_config(config):
    """A built model (fresh weights) as a run's ``config`` makes it, its plugins loaded.  The
    input shape is the config's (``model.input_shape`` or its inputs') or, where the config
    does not give it, that of the dataset's samples (so the dataset is loaded, as training
    does)."""
    check_config(config)
    model_config = config["model"]
    declared = declared_inputs(model_config)
    shapes_given = (
        all(shape is not None for _, shape in declared)
        if declared
        else "input_shape" in model_config
    )
    layers = model_config["layers"]
    dataset, x = None, None
    if not shapes_given or uses_vocab(layers):  # the data's shapes, or its vocabulary
        dataset, arrays = load_data(config)
        x = None if shapes_given else arrays[0]
    dataset_name = f"dataset '{config['data'].get('type')}'"
    names, input_shape = config_inputs(model_config, x, dataset_name)
    model = model_from_config(
        with_vocab(layers, dataset, dataset_name),
        input_shape=input_shape,
        dtype=model_config.get("dtype", "float32"),
        inputs=names,
        blocks=model_config.get("blocks"),
    )
    model.tokenizer = getattr(dataset, "tokenizer", None)
    return model


# --- the functions of before `RunDir`, kept: each asks a RunDir ------------------------------


def run_entries(logdir):
    """The names in ``logdir`` that hold its run's files, sorted; empty when ``logdir`` holds
    no run (no manifest) or does not exist."""
    return RunDir(logdir).entries()


def holds_run(logdir):
    return RunDir(logdir).holds_run()


def describe_run(logdir):
    """A few words on the run in ``logdir``: how far it went, and what it left."""
    return RunDir(logdir).describe()


def already_holds_message(logdir):
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
        self.run_dir = None  # the RunDir that claimed it: `record` finds it until release

    @property
    def held(self):
        return self._descriptor is not None

    def release(self):
        run_dir, self.run_dir = self.run_dir, None
        if run_dir is not None:
            let_go(run_dir)
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
