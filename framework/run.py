"""Training from a config: what ``plugnet train`` and `framework.run` do."""

import contextlib
import gc
import json
import os
import shutil

import attrs
import numpy as np

from framework.base import kind_of
from framework.checkpoints import list_checkpoints, restore_checkpoint
from framework.config import check_config
from framework.data import load_data
from framework.errors import ConfigError, PlugnetError
from framework.model import config_inputs, model_from_config
from framework.registry import load_plugins
from framework.rundir import CONFIG_FILE, SUMMARY_FILE, RunDir, RunLock
from framework.stopping import GracefulStop, Interrupted
from framework.storage import json_safe
from framework.text import with_vocab
from framework.trainer import Trainer

DEFAULT_LOGDIR = "runs"


@contextlib.contextmanager
def paused_gc():
    """Python's cyclic garbage collector held off through a stretch of set-up, then resumed
    (left off where it already was).  Also a decorator.

    Setting up a run imports the plugins and the dataset's library (scikit-learn brings
    scipy): hundreds of thousands of objects that live as long as the process.  With the
    collector on, each time the heap grows by a quarter it walks all of them again, about a
    tenth of the set-up's time (0.13 s of the 1.3 s a sweep command spends before its first
    trial, here).  Set-up makes little cyclic garbage, and that is collected once the
    collector runs again; training itself runs with the collector on."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@attrs.define
class Experiment:
    """A config made into a trainer and its data, ready to `fit`."""

    config: dict
    trainer: Trainer
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    created_logdir: bool = False  # the logdir did not exist before this run
    lock: RunLock | None = None  # this process's lock on the logdir, held until fit ends
    run_dir: RunDir | None = None  # the run directory: what the run writes, it records
    stop: GracefulStop = attrs.field(
        factory=GracefulStop
    )  # `stop.request()` stops at a step boundary

    @property
    def logdir(self):
        return self.trainer.logdir

    def fit(self, *, handle_signals=True):
        """Train as the config says; write ``LOGDIR/summary.json`` and return it.

        With ``handle_signals`` (in the main thread), SIGINT and SIGTERM stop training at
        the next step boundary (see `framework.stopping`); a run stopped so, or by
        ``stop.request()``, ends with its callbacks' ``on_train_end`` (the checkpoint of
        that step, closed event files) and raises `Interrupted` instead of writing the
        summary.  The logdir's lock is released when this returns or raises.
        """
        try:
            with self.stop if handle_signals else contextlib.nullcontext():
                summary = self._fit()
        except Interrupted as exc:
            if not exc.at_once or exc.checkpoint is not None:
                raise
            # A second signal stopped the run at once: the newest checkpoint, from before
            # the step it stopped in, is the one to resume from.
            found = list_checkpoints(self.logdir)
            raise Interrupted(
                exc.signum, step=exc.step, logdir=exc.logdir, at_once=True,
                checkpoint=found[-1][1] if found else None,
            ) from None  # fmt: skip
        finally:
            if self.lock is not None:
                self.lock.release()
        return summary

    def _fit(self):
        train = self.config["train"]
        validation = (self.x_test, self.y_test) if len(self.y_test) else None
        if self.stop not in self.trainer.callbacks:
            self.trainer.add_callback(self.stop)
        try:
            # The config's epochs and steps count in all: a resumed run trains what is left.
            steps = train.get("steps")
            epochs = train.get("epochs", None if steps is not None else 1)
            self.trainer.fit(
                self.x_train,
                self.y_train,
                epochs=None if epochs is None else max(epochs, self.trainer.epoch),
                initial_epoch=None if epochs is None else self.trainer.epoch,
                batch_size=train.get("batch_size"),
                shuffle=train.get("shuffle", True),
                validation_data=validation,
                evaluate_every=train.get("evaluate_every"),
                steps=None if steps is None else max(steps - self.trainer.step, 0),
                eval_batches=train.get("eval_batches"),
            )
        except PlugnetError:
            # Bad input found as training begins (a callback checking its options against
            # the data, say): a run that trained nothing leaves no directory behind.
            if self.created_logdir and self.trainer.step == 0:
                shutil.rmtree(self.logdir, ignore_errors=True)
            raise
        if self.stop.requested:
            raise self.interrupted()
        run_dir = self.run_dir or RunDir(self.logdir)
        run_dir.save_model(self.trainer.model)  # the final weights
        summary = self.summary()
        run_dir.write_json(SUMMARY_FILE, summary)
        return summary

    def interrupted(self):
        """The `Interrupted` of a run stopped at a step boundary, naming the checkpoint of
        that step if the run wrote one."""
        step = self.trainer.step
        found = list_checkpoints(self.logdir)
        checkpoint = found[-1][1] if found and found[-1][0] == step else None
        return Interrupted(self.stop.signum, step=step, logdir=self.logdir, checkpoint=checkpoint)

    def summary(self):
        trainer = self.trainer
        summary = {"train": dict(trainer.train_logs)}
        if trainer.validation_data is not None:
            summary["test"] = dict(trainer.test_logs)
        summary.update(steps=trainer.step, epochs=trainer.epoch, seconds=round(trainer.seconds, 3))
        return summary


def check_token_inputs(model, data, x, dataset):
    """Refuse a model whose input of token ids is read by a float layer.  A dataset says its
    x holds token ids with ``token_ids = True`` (or ``tokens = True``; or a collection of the
    input names that do):
    integer dtype alone is no sign, since pixels and counts are integers too."""
    marked = getattr(data, "token_ids", None)
    if marked is None:
        marked = getattr(data, "tokens", False)
    if not (marked is True or isinstance(marked, (list, tuple, set, frozenset))):
        return  # (a ``tokens`` parameter naming a tokenizer kind is no marker)
    arrays = x if isinstance(x, dict) else {model.input_names[0]: x}
    names = model.input_names if marked is True else [n for n in model.input_names if n in marked]
    for name in names:
        dtype = getattr(arrays.get(name), "dtype", None)
        if name not in arrays or dtype is None or not np.issubdtype(dtype, np.integer):
            continue
        float_reader = next(
            (
                layer
                for layer in model.layers
                if name in model.inbound[layer.name] and not getattr(layer, "integer_input", False)
            ),
            None,
        )
        if float_reader is None:
            continue
        example = f'{{ type = "embedding", input_dim = {getattr(data, "vocab", None) or "VOCAB"}, output_dim = 32 }}'
        where = "the model's input" if len(model.inputs) == 1 else f"input '{name}'"
        raise ConfigError(
            f"layer {float_reader.name} ({kind_of(float_reader)}) reads {where}, which holds integer token "
            f"ids (dataset '{dataset}'), but it takes float values: read the ids with an embedding first, "
            f"e.g. {example}"
        )


@paused_gc()
def build(config, *, progress=False, resume=None, overwrite=False, data=None):
    """Check ``config``, load its plugins and data, build the model and the trainer.

    With ``resume`` (a logdir), the trainer continues from that logdir's newest whole
    checkpoint, and the run's logdir is ``resume``.  Everything that can be wrong with the
    input (a corrupt checkpoint included) is found here, before the run's config is saved as
    ``LOGDIR/config.json`` and before any other file is written.

    A logdir holds one run (`framework.rundir`): a new run into one that holds a run is a
    `ConfigError` naming it, unless ``overwrite``, which removes the old run once the input
    has passed every check.  The logdir is locked for this process until the experiment's
    `fit` ends; one in use by a live process is refused, whatever ``resume`` and
    ``overwrite`` say.

    ``data``: what `framework.data.load_data` returned for a config with the same ``data``,
    ``seed`` and ``plugins`` (a sweep loads its data once for all its trials); by default it
    is loaded.
    """
    check_config(config)
    if resume is not None:
        config = {**config, "logging": {**config.get("logging", {}), "logdir": os.fspath(resume)}}
    logdir = config.get("logging", {}).get("logdir") or os.path.join(
        DEFAULT_LOGDIR, config["data"]["type"]
    )
    run_dir = RunDir(logdir)
    run_dir.check(resume=resume is not None, overwrite=overwrite)  # early: before the data load
    load_plugins(config.get("plugins", []))  # training trusts its own config's plugins
    seed = config.get("seed", 0)
    data, (x_train, y_train, x_test, y_test) = load_data(config) if data is None else data
    dataset = config["data"]["type"]
    model_config = config["model"]
    input_names, input_shape = config_inputs(model_config, x_train, f"dataset '{dataset}'")
    model = model_from_config(
        with_vocab(model_config["layers"], data, f"dataset '{dataset}'"),
        input_shape=input_shape,
        dtype=model_config.get("dtype", "float32"),
        seed=seed,
        inputs=input_names,
        blocks=model_config.get("blocks"),
    )
    model.tokenizer = getattr(data, "tokenizer", None)  # saved in model.npz with the weights
    check_token_inputs(model, data, x_train, dataset)
    train = config.get("train", {})
    trainer = Trainer(
        model,
        loss=train["loss"],
        optimizer=train.get("optimizer", "sgd"),
        metrics=train.get("metrics", []),
        logdir=logdir,
        config=config,
        l2=train.get("l2", 0.0),
        seed=seed,
        clip_norm=train.get("clip_norm"),
    )
    # Check the data against the model before any callback exists to write files, and keep
    # it as checked: converted to the model's dtype once, so fit's own check copies nothing.
    x_train, y_train = trainer.check_data(x_train, y_train, "training")
    if len(y_test):
        x_test, y_test = trainer.check_data(x_test, y_test, "held-out")
    if train.get("eval_batches") is not None and not len(y_test):
        raise ConfigError(
            f"train.eval_batches estimates the held-out loss, but dataset '{dataset}' holds "
            "nothing out: drop eval_batches or give the dataset a held-out part"
        )
    callbacks = list(train.get("callbacks", []))
    named = [
        c if isinstance(c, str) else c.get("type") for c in callbacks if isinstance(c, (str, dict))
    ]
    if progress and "progress" not in named:
        callbacks.append("progress")
    for spec in callbacks:
        trainer.add_callback(spec)
    if resume is not None:
        restore_checkpoint(trainer, run_dir.latest_checkpoint())
    config_text = run_config_text(config)
    created = not os.path.exists(logdir)
    lock = run_dir.claim(resume=resume is not None, overwrite=overwrite)
    try:
        run_dir.write(CONFIG_FILE, lambda f: f.write(config_text))
    except BaseException:
        lock.release()
        raise
    return Experiment(
        config, trainer, x_train, y_train, x_test, y_test,
        created_logdir=created, lock=lock, run_dir=run_dir,
    )  # fmt: skip


def run_config_text(config):
    """``config`` as the JSON text of ``LOGDIR/config.json``; a `ConfigError` if it cannot be."""
    try:
        return (json.dumps(json_safe(config), indent=2, allow_nan=False) + "\n").encode()
    except (TypeError, ValueError) as exc:  # a value JSON cannot hold (a TOML date)
        raise ConfigError(f"the config cannot be saved with the run: {exc}") from exc


def run(config=None, *, progress=False, resume=None, overwrite=False):
    """Train from a config mapping as ``plugnet train`` does; write ``LOGDIR/summary.json``
    and return it: final ``train`` (and ``test``) metrics, ``steps``, ``epochs``, ``seconds``.

    ``resume=LOGDIR`` continues that run from its newest whole checkpoint, with the config
    saved in it unless ``config`` is given (e.g. with more epochs).  A logdir that already
    holds a run is refused (`ConfigError`) unless ``overwrite=True`` replaces that run.
    SIGINT or SIGTERM stops training at a step boundary and raises
    `framework.stopping.Interrupted` (a `KeyboardInterrupt`).
    """
    if config is None:
        if resume is None:
            raise ConfigError("run() needs a config, or resume=LOGDIR")
        config = RunDir(resume).config(resume=True)
    return build(config, progress=progress, resume=resume, overwrite=overwrite).fit()
