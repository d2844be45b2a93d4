"""A trained model in use: loading it (`load_model`), reading inputs from files, writing
predictions, evaluating a run.

What ``plugnet predict`` and ``plugnet evaluate`` do, usable from Python too.  Loading
imports only the plugins its caller names (`framework.rundir` says why).  Inputs are
``.npy`` (read through a memory map, so a large file is read batch by batch), ``.npz``,
``.csv`` (one sample per row, flattened; a first row of names is skipped) and image files
for image models.  Predictions are computed in batches and written batch by batch into a
temporary file beside the output, renamed into place when whole.
"""

import contextlib
import csv
import math
import os
import sys

import numpy as np

from framework.checkpoints import CHECKPOINT_DIR, load_checkpoint
from framework.config import read_config
from framework.data import load_data
from framework.errors import ConfigError, DataError, ShapeError
from framework.registry import load_plugins
from framework.rundir import CONFIG_FILE, RunDir, check_plugins, model_from_run_config
from framework.saving import ARCHITECTURE, model_from_arrays, weights_of
from framework.storage import create_temporary, load_arrays
from framework.trainer import Trainer

INPUT_SUFFIXES = (".npy", ".npz", ".csv")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
OUTPUT_SUFFIXES = (".npy", ".csv")
DEFAULT_BATCH_SIZE = 256


def shape_text(shape):
    return "(None, " + ", ".join(map(str, shape)) + ")" if shape else "(None,)"


def suffix(path):
    return os.path.splitext(os.fspath(path))[1].lower()


def input_shape_of(model):
    shape = model.input_shape
    if isinstance(shape, list):  # a graph model with several inputs
        return [tuple(s) for s in shape]
    return tuple(shape)


# --- reading inputs --------------------------------------------------------------------------


def read_inputs(paths, model):
    """The samples in ``paths`` (one ``.npy`` / ``.npz`` / ``.csv`` file, or image files and
    directories of them), checked against the model's input shape."""
    paths = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    if not paths:
        raise DataError("no input given")
    images = [p for p in paths if os.path.isdir(p) or suffix(p) in IMAGE_SUFFIXES]
    if images:
        if len(images) != len(paths):
            raise DataError(
                "give either image files (and directories of them) or one .npy, .npz or .csv file"
            )
        return read_images(paths, model)
    if len(paths) > 1:
        raise DataError(
            f"give one .npy, .npz or .csv file, not {len(paths)} files (several inputs work only for images)"
        )
    path = paths[0]
    kind = suffix(path)
    if kind not in INPUT_SUFFIXES:
        known = ", ".join(INPUT_SUFFIXES + IMAGE_SUFFIXES)
        raise DataError(
            f"cannot read input {path}: unknown extension '{kind or '(none)'}'; use one of {known}"
        )
    if not os.path.isfile(path):
        raise DataError(f"input file not found: {path}")
    if kind == ".npy":
        x = read_npy(path)
    elif kind == ".npz":
        x = read_npz(path, model)
    else:
        x = read_csv(path, model)
    check_shape(x, model, path)
    return x


def read_npy(path):
    try:
        # A memory map: the samples are read from disk as each batch needs them.
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise DataError(
                f"{path} holds pickled objects; plugnet refuses to load it, because unpickling could run code"
            ) from exc
        raise DataError(f"{path} is not a readable .npy file: {exc}") from exc
    except (OSError, EOFError, SyntaxError) as exc:
        raise DataError(f"{path} is not a readable .npy file: {exc}") from exc


def read_npz(path, model):
    arrays = load_arrays(path)
    names = [item.name for item in getattr(model, "inputs", None) or []]
    if len(names) > 1:
        missing = [name for name in names if name not in arrays]
        if missing:
            raise DataError(
                f"{path} needs an array for each model input: {', '.join(names)}; missing {', '.join(missing)}"
            )
        return {name: arrays[name] for name in names}
    for key in (*names, "input", "x"):
        if key in arrays:
            return arrays[key]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise DataError(
        f"{path} holds {len(arrays)} arrays ({', '.join(sorted(arrays)) or 'none'}); name the "
        f"inputs 'x' (or '{names[0] if names else 'input'}'), or save one array"
    )


def is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_csv(path, model):
    """One sample per row; a first row with no number in it is a header and skipped.  A cell
    that is not a number is an error naming its line and column (both counted from 1)."""
    with open(path, encoding="utf-8", newline="") as f:
        first = f.readline()
    if not first.strip():
        raise DataError(f"{path} is empty")
    header = not any(is_number(cell) for cell in next(csv.reader([first])))
    dtype = np.float64 if np.dtype(model.dtype) == np.float64 else np.float32
    try:
        x = np.loadtxt(
            path, delimiter=",", dtype=dtype, ndmin=2, skiprows=int(header), encoding="utf-8"
        )
    except ValueError as exc:
        raise DataError(
            csv_problem(path, header) or f"{path} is not a readable CSV file: {exc}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a text file ({exc.reason})") from exc
    if len(x) == 0:
        raise DataError(f"{path} holds no rows")
    shape = input_shape_of(model)
    if isinstance(shape, list):
        raise DataError(
            f"a model with {len(shape)} inputs reads them from an .npz file, one array per input"
        )
    size = math.prod(shape)
    if x.shape[1] == size and len(shape) > 1:
        x = x.reshape(len(x), *shape)  # rows are flattened samples (an image's pixels)
    elif x.shape[1] != size:
        raise ShapeError(
            f"{path} has rows of {x.shape[1]} values; the model takes samples of shape "
            f"{shape_text(shape)} ({size} values per row)"
        )
    return x


def csv_problem(path, header):
    """Where the first bad cell of a CSV file is (what numpy's message leaves unclear)."""
    with open(path, encoding="utf-8", newline="") as f:
        width = None
        for line, row in enumerate(csv.reader(f), start=1):
            if header and line == 1:
                continue
            if not row:
                continue
            if width is not None and len(row) != width:
                return f"{path}, line {line}: {len(row)} values, but the lines before have {width}"
            width = len(row)
            for column, cell in enumerate(row, start=1):
                if not is_number(cell):
                    return f"{path}, line {line}, column {column}: {cell!r} is not a number"
    return None


def image_files(paths):
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(
                os.path.join(path, name)
                for name in os.listdir(path)
                if suffix(name) in IMAGE_SUFFIXES
            )
            if not found:
                raise DataError(f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif not os.path.isfile(path):
            raise DataError(f"input file not found: {path}")
        else:
            files.append(path)
    return files


IMAGE_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def read_images(paths, model):
    """Images as one ``(N, height, width, channels)`` batch in [0, 1] (pixel / 255, as the
    built-in image datasets are scaled), converted to the model's channels (grey, RGB,
    RGBA); a picture of another size is an error naming both sizes."""
    from PIL import Image, UnidentifiedImageError

    shape = input_shape_of(model)
    if isinstance(shape, list) or len(shape) != 3 or shape[2] not in IMAGE_MODES:
        raise DataError(
            f"image files are inputs only for image models (input (height, width, 1, 3 or 4 "
            f"channels)); this model takes {shape_text(shape) if not isinstance(shape, list) else shape}"
        )
    height, width, channels = shape
    files = image_files(paths)
    batch = np.empty((len(files), height, width, channels), dtype=model.dtype)
    for index, path in enumerate(files):
        try:
            with Image.open(path) as image:
                image = image.convert(IMAGE_MODES[channels])
                pixels = np.asarray(image)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DataError(f"{path} is not a readable image: {exc}") from exc
        if pixels.shape[:2] != (height, width):
            raise ShapeError(
                f"{path} is {pixels.shape[0]}x{pixels.shape[1]} pixels (height x width); the "
                f"model takes {height}x{width} images"
            )
        batch[index] = pixels.reshape(height, width, channels) / np.float32(255)
    return batch


def check_shape(x, model, path):
    expected = input_shape_of(model)
    if isinstance(x, dict):
        for (name, array), shape in zip(x.items(), expected, strict=True):
            if tuple(array.shape[1:]) != shape:
                raise ShapeError(
                    f"{path}: input '{name}' holds samples of shape {shape_text(array.shape[1:])}; the model's is {shape_text(shape)}"
                )
        return
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"{path} holds no samples")
    if tuple(x.shape[1:]) != expected:
        hint = ""
        if tuple(x.shape) == expected:
            hint = " (one sample without its batch axis? save it as x[None])"
        raise ShapeError(
            f"{path} holds samples of shape {shape_text(x.shape[1:])}; the model takes "
            f"{shape_text(expected)}{hint}"
        )
    if not np.issubdtype(x.dtype, np.number) and x.dtype != bool:
        raise DataError(f"{path} must hold numbers, got dtype {x.dtype}")


# --- predicting into a file ------------------------------------------------------------------


def samples_in(x):
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def batch_of(x, start, stop):
    if isinstance(x, dict):
        return {name: np.asarray(array[start:stop]) for name, array in x.items()}
    return np.asarray(x[start:stop])


def check_finite(batch, start, path):
    arrays = batch.values() if isinstance(batch, dict) else [batch]
    for array in arrays:
        if np.issubdtype(array.dtype, np.floating) and not (
            np.isfinite(array.min()) and np.isfinite(array.max())
        ):
            bad = np.argwhere(~np.isfinite(array))[0]
            where = (start + int(bad[0]), *map(int, bad[1:]))
            raise DataError(f"{path} contains NaN or inf (first at index {where})")


def to_classes(y):
    """The arg-max class of each output (a single output: 1 where it is above 0.5)."""
    if y.shape[-1] == 1:
        return (y[..., 0] > 0.5).astype(np.int64)
    return np.argmax(y, axis=-1).astype(np.int64)


@contextlib.contextmanager
def temporary_beside(path):
    """A temporary file name in ``path``'s directory, renamed to ``path`` when the block ends
    without an error and removed when it fails."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = create_temporary(directory, os.path.basename(path))
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_output_path(out):
    kind = suffix(out)
    if kind not in OUTPUT_SUFFIXES:
        raise DataError(
            f"cannot write predictions to {out}: unknown extension '{kind or '(none)'}'; use .npy or .csv"
        )
    if os.path.isdir(out):
        raise DataError(f"cannot write predictions to {out}: it is a directory")


def predict_to_file(
    model, x, out, *, classes=False, batch_size=DEFAULT_BATCH_SIZE, progress=None, source="input"
):
    """Predict ``x`` in batches of ``batch_size`` and write the outputs (or, with
    ``classes``, the arg-max classes) to ``out`` (``.npy`` or ``.csv``).  ``progress``: a
    progress bar on stderr (default: when stderr is a terminal).  Returns the number of
    samples written."""
    from tqdm import tqdm

    check_output_path(out)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch size must be a positive integer, got {batch_size!r}")
    n = samples_in(x)
    out_shape = tuple(model.output_shape)
    shape = (n, *(out_shape[:-1] if classes else out_shape))
    dtype = np.int64 if classes else np.dtype(model.dtype)
    if progress is None:
        progress = sys.stderr.isatty()
    # A bar only for inputs of more than one batch: a short one would flash by.
    bar = tqdm(
        total=n,
        unit="sample",
        disable=not progress or n <= batch_size,
        leave=False,
        file=sys.stderr,
    )
    with bar, temporary_beside(out) as tmp:
        if suffix(out) == ".npy":
            target = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)

            def write(start, y):
                target[start : start + len(y)] = y

        else:
            handle = open(tmp, "w", encoding="utf-8")
            # Enough digits for exact round trips.
            fmt = "%d" if classes else ("%.17g" if dtype == np.float64 else "%.9g")

            def write(start, y):
                np.savetxt(handle, y.reshape(len(y), -1), fmt=fmt, delimiter=",")

        try:
            for start in range(0, n, batch_size):
                batch = batch_of(x, start, start + batch_size)
                check_finite(batch, start, source)
                y = model.predict(batch)
                write(start, to_classes(y) if classes else y)
                bar.update(samples_in(batch))
        finally:
            if suffix(out) == ".npy":
                target.flush()
                del target
            else:
                handle.close()
    return n


# --- loading a trained model ---------------------------------------------------------------


def load_model(path, config=None, plugins=()):
    """A trained model, built and ready to ``predict``, from

    * a run directory: its ``model.npz`` (the final weights), or, for a run that did not get
      to its end, its newest whole checkpoint and its ``config.json``;
    * a model file written by ``model.save(path)`` (or a run's ``model.npz``);
    * a checkpoint file (``LOGDIR/checkpoints/step-N.npz``), with its run's ``config.json``;
    * a weights file of ``model.save_weights``, with ``config`` (a mapping or a ``.toml`` /
      ``.json`` file) or a ``config.json`` beside it.

    ``plugins``: the plugin modules to import first, those you trust.  Loading imports
    nothing else: not the plugins a run's (or ``config``'s) config names, which must be
    loaded already (named here, built in, or installed as entry points), or a `PluginError`
    says which to trust (`framework.rundir.RunDir.config_for_use`).  Model, checkpoint and
    weights files hold no code.  A path that is none of these, or a damaged file, is a
    `DataError`.
    """
    path = os.fspath(path)
    load_plugins(list(plugins))
    if config is not None:
        config = read_config(config)
        check_plugins(config, "the config given to load_model")
    if os.path.isdir(path):
        run = RunDir(path)
        return run.load_model(config if config is not None else run.config_for_use())
    if not os.path.exists(path):
        raise DataError(f"no run directory or model file at {path}")
    arrays = load_arrays(path)
    if ARCHITECTURE in arrays:
        return model_from_arrays(arrays, path)
    if config is None:
        run = run_beside(path)
        if run is None:
            raise DataError(
                f"{path} holds weights but not the model's architecture: give the config that "
                "made it (load_model(path, config=...)), or load the run directory"
            )
        config = run.config_for_use()
    model = model_from_run_config(config)
    if "state" in arrays and "step" in arrays:  # a checkpoint: its own reader checks it
        model.load_state_dict(load_checkpoint(path)["params"], source=path)
    else:
        model.load_state_dict(weights_of(arrays), source=path)
    return model


def run_beside(path):
    """The run a file belongs to: the run directory it lies in, or the one above its
    ``checkpoints/``; None if neither holds a ``config.json``."""
    directory = os.path.dirname(os.path.abspath(path))
    candidates = [directory]
    if os.path.basename(directory) == CHECKPOINT_DIR:
        candidates.insert(0, os.path.dirname(directory))
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, CONFIG_FILE)):
            return RunDir(candidate)
    return None


# --- evaluating a run ------------------------------------------------------------------------


def held_out(config, what="evaluate"):
    """``(x_test, y_test)`` of a run's config, as it split them; a `DataError` if it holds
    nothing out."""
    _, (_, _, x_test, y_test) = load_data(config)
    if len(y_test) == 0:
        raise DataError(
            f"the run's data holds nothing out (its test split is empty), so there is nothing to "
            f"{what} on; give other data with --set, e.g. --set data.test_fraction=0.2"
        )
    return x_test, y_test


def evaluate_run(run_dir, overrides=(), plugins=()):
    """The metrics of a run directory's model on its config's held-out data (with
    ``overrides``, ``--set`` style, applied to that config: other data):
    ``({"loss": ..., metric: ...}, number of samples)``.  ``plugins``: as `load_model`'s."""
    if not os.path.isdir(run_dir):
        raise DataError(
            f"{run_dir} is not a run directory (evaluate reads a run's config.json and model)"
        )
    run = RunDir(run_dir)
    config = run.config_for_use(plugins, overrides)
    model = run.load_model(config)
    x_test, y_test = held_out(config)
    train = config.get("train", {})
    trainer = Trainer(
        model, loss=train["loss"], metrics=train.get("metrics", []), l2=train.get("l2", 0.0)
    )
    return trainer.evaluate(x_test, y_test, batch_size=train.get("batch_size")), len(y_test)
