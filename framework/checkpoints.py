"""Checkpoints: a trainer's whole state in one ``.npz`` file, and resuming from it.

``LOGDIR/checkpoints/step-<N>.npz`` is written after ``N`` steps.  It holds

* every parameter under its `Sequential.state_dict` key (``dense_0/weights``, ...), so a
  checkpoint is readable with plain ``numpy.load``;
* ``step``, ``epoch`` and ``batch_in_epoch`` (batches of ``epoch`` already done) as integers;
* ``state``: one JSON text (a numpy unicode array) describing everything else — the
  optimizer's ``state_dict``, the data-order and dropout generators' states, the epoch's running
  loss and metric totals, the history, the seconds trained so far and the state of callbacks
  that have a ``state_dict`` — whose arrays (optimizer moments, ...) are stored beside it under
  ``state/...`` keys and referenced from the JSON by name.

Numbers that do not fit 64 bits (a PCG64 generator's 128-bit state) are plain JSON integers,
so nothing is ever pickled: a checkpoint is read with ``allow_pickle=False`` and loading one
runs no code.  Files are written through `framework.save_arrays`, to a temporary file renamed
into place, so a crash leaves the previous checkpoints whole.
"""

import json
import logging
import os
import re

import numpy as np

from framework.base import kind_of
from framework.errors import ConfigError, DataError
from framework.storage import load_arrays, save_arrays

CHECKPOINT_DIR = "checkpoints"
FORMAT_VERSION = 1
CHECKPOINT_NAME = re.compile(r"^step-(\d+)\.npz$")
COUNTERS = ("step", "epoch", "batch_in_epoch")
ARRAY = "__array__"  # marks a reference to a stored array inside the JSON state

logger = logging.getLogger("plugnet.checkpoints")


# --- where checkpoints live ----------------------------------------------------------------


def checkpoint_dir(logdir):
    return os.path.join(os.fspath(logdir), CHECKPOINT_DIR)


def checkpoint_path(logdir, step):
    return os.path.join(checkpoint_dir(logdir), f"step-{int(step)}.npz")


def list_checkpoints(logdir):
    """``[(step, path)]`` of the checkpoint files in ``LOGDIR/checkpoints``, oldest first.

    Temporary files of an interrupted write (``.tmp-*``) are not checkpoints and are skipped.
    """
    directory = checkpoint_dir(logdir)
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        match = CHECKPOINT_NAME.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(directory, name)))
    return sorted(found)


# --- nested state as JSON plus arrays --------------------------------------------------------


def encode_tree(value, prefix, arrays):
    """A JSON-able copy of ``value`` (dicts, lists, numbers, strings, arrays) in which each
    array is moved into ``arrays`` under a key made from ``prefix`` and its path."""
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        if array.dtype == object:
            raise TypeError(f"'{prefix}' is an object array; only numeric arrays are stored")
        arrays[prefix] = array
        reference = {ARRAY: prefix}
        if isinstance(value, np.generic):
            reference["scalar"] = True
        return reference
    if isinstance(value, dict):
        encoded = {}
        for key, item in value.items():
            if not isinstance(key, str) or key == ARRAY:
                raise TypeError(f"'{prefix}' has key {key!r}; state keys must be strings")
            encoded[key] = encode_tree(item, f"{prefix}/{key}", arrays)
        return encoded
    if isinstance(value, (list, tuple)):
        return [encode_tree(item, f"{prefix}/{index}", arrays) for index, item in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"'{prefix}' is of type {type(value).__name__}; a checkpoint stores only arrays, numbers and strings"
    )


def decode_tree(value, arrays):
    """The inverse of `encode_tree`."""
    if isinstance(value, dict):
        if ARRAY in value:
            key = value[ARRAY]
            if key not in arrays:
                raise KeyError(f"array '{key}' is missing")
            array = arrays[key]
            return array[()] if value.get("scalar") else array
        return {key: decode_tree(item, arrays) for key, item in value.items()}
    if isinstance(value, list):
        return [decode_tree(item, arrays) for item in value]
    return value


# --- saving ----------------------------------------------------------------------------------


def callback_keys(trainer):
    """``{key: callback}`` for callbacks that keep state, keyed by registered name (with a
    ``_1``, ``_2`` suffix for repeats) so the same config finds them again on resume."""
    keys, seen = {}, {}
    for callback in trainer.callbacks:
        if not callable(getattr(callback, "state_dict", None)):
            continue
        kind = kind_of(callback)
        count = seen.get(kind, 0)
        seen[kind] = count + 1
        keys[kind if count == 0 else f"{kind}_{count}"] = callback
    return keys


def trainer_state(trainer):
    """Everything `save_checkpoint` writes, as a mapping of name -> array."""
    arrays = dict(trainer.model.state_dict())
    for name in COUNTERS:
        arrays[name] = np.int64(getattr(trainer, name))
    state = {
        "format": FORMAT_VERSION,
        "optimizer_kind": kind_of(trainer.optimizer),
        "optimizer": trainer.optimizer.state_dict(),
        "rng": {
            "data": trainer.rng.bit_generator.state,
            "data_epoch": trainer.epoch_rng_state,
            "model": trainer.model.rng.bit_generator.state,
        },
        "epoch_totals": trainer.epoch_totals,
        "epoch_seen": trainer.epoch_seen,
        "train_logs": trainer.train_logs,
        "test_logs": trainer.test_logs,
        "history": trainer.history,
        "seconds": trainer.seconds,
        "callbacks": {
            key: callback.state_dict() for key, callback in callback_keys(trainer).items()
        },
    }
    try:
        skeleton = encode_tree(state, "state", arrays)
        text = json.dumps(skeleton, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot write a checkpoint: {exc}") from exc
    arrays["state"] = np.array(text)
    return arrays


def save_checkpoint(trainer, path):
    """Write ``trainer``'s whole state to ``path`` atomically; returns ``path``."""
    save_arrays(path, trainer_state(trainer))
    return path


# --- loading ---------------------------------------------------------------------------------


def load_checkpoint(path):
    """Read a checkpoint into ``{"path", "step", "epoch", "batch_in_epoch", "params",
    "state"}``; a missing, torn or foreign file is a `DataError` naming it."""
    path = os.fspath(path)
    arrays = load_arrays(path)  # allow_pickle=False: object arrays are refused
    missing = [key for key in (*COUNTERS, "state") if key not in arrays]
    if missing:
        raise DataError(f"{path} is not a plugnet checkpoint: it has no {', '.join(missing)}")
    try:
        counters = {}
        for name in COUNTERS:
            value = arrays[name]
            if value.shape != () or not np.issubdtype(value.dtype, np.integer) or value < 0:
                raise ValueError(f"'{name}' must be a non-negative integer, got {value!r}")
            counters[name] = int(value)
        text = arrays["state"]
        if text.shape != () or text.dtype.kind != "U":
            raise ValueError("'state' must be a JSON text")
        state = decode_tree(json.loads(str(text[()])), arrays)
        if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"unsupported checkpoint format {state.get('format') if isinstance(state, dict) else state!r}"
            )
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not a readable plugnet checkpoint: {exc}") from exc
    params = {
        key: value
        for key, value in arrays.items()
        if key not in COUNTERS and key != "state" and not key.startswith("state/")
    }
    return {"path": path, **counters, "params": params, "state": state}


def latest_whole_checkpoint(logdir):
    """The newest checkpoint of ``logdir`` that loads, as `load_checkpoint` returns it.

    An unreadable newer one is skipped with a warning naming it (logger
    ``plugnet.checkpoints``); no checkpoint, or none whole, is a `DataError`.
    """
    found = list_checkpoints(logdir)
    if not found:
        raise DataError(f"no checkpoint to resume from in {checkpoint_dir(logdir)}")
    problems = []
    for _, path in reversed(found):
        try:
            checkpoint = load_checkpoint(path)
        except DataError as exc:
            problems.append(str(exc))
            continue
        for problem in problems:
            logger.warning("skipping unreadable checkpoint: %s; resuming from %s", problem, path)
        return checkpoint
    raise DataError(
        f"no whole checkpoint in {checkpoint_dir(logdir)}: every one is unreadable "
        f"(newest: {problems[0]})"
    )


# --- restoring -------------------------------------------------------------------------------


def set_generator_state(generator, state, what, path):
    try:
        generator.bit_generator.state = state
    except (TypeError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: the {what} generator's state cannot be restored: {exc}") from exc


def restore_checkpoint(trainer, checkpoint):
    """Put a loaded checkpoint's state into ``trainer`` (whose model is built), so `fit`
    continues exactly where the checkpointed run was.  A checkpoint that does not fit the
    trainer's model, optimizer or callbacks is a `DataError` (or `ShapeError`)."""
    path, state = checkpoint["path"], checkpoint["state"]
    model = trainer.model
    if not model.built:
        raise ConfigError("build the model (give input_shape) before restoring a checkpoint")
    kind = kind_of(trainer.optimizer)
    if state.get("optimizer_kind") not in (None, kind):
        raise DataError(
            f"{path} was written with optimizer '{state['optimizer_kind']}'; this run uses '{kind}'"
        )
    model.load_state_dict(checkpoint["params"], source=path)
    try:
        trainer.optimizer.load_state_dict(state["optimizer"])
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise DataError(
            f"{path}: the optimizer state does not fit optimizer '{kind}': {exc}"
        ) from exc
    rngs = state["rng"]
    set_generator_state(trainer.rng, rngs["data"], "data-order", path)
    set_generator_state(model.rng, rngs["model"], "model (dropout)", path)
    trainer.epoch_rng_state = rngs.get("data_epoch")
    trainer.step = checkpoint["step"]
    trainer.epoch = checkpoint["epoch"]
    trainer.batch_in_epoch = checkpoint["batch_in_epoch"]
    totals = state.get("epoch_totals")
    if totals and set(totals) == {"loss", *trainer.metrics}:
        trainer.epoch_totals, trainer.epoch_seen = dict(totals), int(state.get("epoch_seen", 0))
    trainer.train_logs = dict(state.get("train_logs") or {})
    trainer.test_logs = dict(state.get("test_logs") or {})
    trainer.history = {key: list(values) for key, values in (state.get("history") or {}).items()}
    trainer.seconds = float(state.get("seconds", 0.0))
    saved = state.get("callbacks") or {}
    for key, callback in callback_keys(trainer).items():
        if key in saved and callable(getattr(callback, "load_state_dict", None)):
            try:
                callback.load_state_dict(saved[key])
            except (TypeError, ValueError, KeyError) as exc:
                raise DataError(
                    f"{path}: the state of callback '{key}' cannot be restored: {exc}"
                ) from exc
    trainer.resumed_from_step = checkpoint["step"]
    return trainer


def resume(trainer, logdir):
    """Restore ``trainer`` from the newest whole checkpoint of ``logdir``; returns the
    checkpoint's path.  Then ``trainer.fit(...)`` with the same data and arguments continues
    the run as if it had never stopped."""
    checkpoint = latest_whole_checkpoint(logdir)
    restore_checkpoint(trainer, checkpoint)
    return checkpoint["path"]
