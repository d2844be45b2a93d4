"""Training from a config: what ``plugnet train`` and `framework.run` do."""

import json
import os
import shutil

import attrs
import numpy as np

from framework.checkpoints import latest_whole_checkpoint, restore_checkpoint
from framework.config import check_config
from framework.errors import ConfigError, DataError, PlugnetError
from framework.model import model_from_config
from framework.registry import load_plugins, resolve
from framework.storage import save_json
from framework.trainer import Trainer

DEFAULT_LOGDIR = "runs"
SUMMARY_FILE = "summary.json"  # the run's final metrics, steps, epochs and seconds
CONFIG_FILE = "config.json"  # the run's config, saved in its logdir so `--resume` finds it


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

    @property
    def logdir(self):
        return self.trainer.logdir

    def fit(self):
        """Train as the config says; write ``LOGDIR/summary.json`` and return it."""
        train = self.config["train"]
        validation = (self.x_test, self.y_test) if len(self.y_test) else None
        try:
            self.trainer.fit(
                self.x_train,
                self.y_train,
                # The config's epochs count in all: a resumed run trains what is left of them.
                epochs=max(train.get("epochs", 1), self.trainer.epoch),
                initial_epoch=self.trainer.epoch,
                batch_size=train.get("batch_size"),
                shuffle=train.get("shuffle", True),
                validation_data=validation,
                evaluate_every=train.get("evaluate_every"),
            )
        except PlugnetError:
            # Bad input found as training begins (a callback checking its options against
            # the data, say): a run that trained nothing leaves no directory behind.
            if self.created_logdir and self.trainer.step == 0:
                shutil.rmtree(self.logdir, ignore_errors=True)
            raise
        summary = self.summary()
        save_json(os.path.join(self.logdir, SUMMARY_FILE), summary)
        return summary

    def summary(self):
        trainer = self.trainer
        summary = {"train": dict(trainer.train_logs)}
        if trainer.validation_data is not None:
            summary["test"] = dict(trainer.test_logs)
        summary.update(steps=trainer.step, epochs=trainer.epoch, seconds=round(trainer.seconds, 3))
        return summary


def build(config, *, progress=False, resume=None):
    """Check ``config``, load its plugins and data, build the model and the trainer.

    With ``resume`` (a logdir), the trainer continues from that logdir's newest whole
    checkpoint, and the run's logdir is ``resume``.  Everything that can be wrong with the
    input (a corrupt checkpoint included) is found here, before the run's config is saved as
    ``LOGDIR/config.json`` and before any other file is written.
    """
    check_config(config)
    if resume is not None:
        config = {**config, "logging": {**config.get("logging", {}), "logdir": os.fspath(resume)}}
    load_plugins(config.get("plugins", []))
    seed = config.get("seed", 0)
    data = resolve("datasets", config["data"])
    arrays = data.load(np.random.default_rng(seed))
    try:
        x_train, y_train, x_test, y_test = (np.asarray(a) for a in arrays)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"dataset '{config['data']['type']}' must return (x_train, y_train, x_test, y_test): {exc}"
        ) from exc
    model_config = config["model"]
    model = model_from_config(
        model_config["layers"],
        input_shape=model_config.get("input_shape", x_train.shape[1:]),
        dtype=model_config.get("dtype", "float32"),
        seed=seed,
    )
    train = config.get("train", {})
    logdir = config.get("logging", {}).get("logdir") or os.path.join(DEFAULT_LOGDIR, config["data"]["type"])
    trainer = Trainer(
        model,
        loss=train["loss"],
        optimizer=train.get("optimizer", "sgd"),
        metrics=train.get("metrics", []),
        logdir=logdir,
        config=config,
        l2=train.get("l2", 0.0),
        seed=seed,
    )
    # Check the data against the model before any callback exists to write files, and keep
    # it as checked: converted to the model's dtype once, so fit's own check copies nothing.
    x_train, y_train = trainer.check_data(x_train, y_train, "training")
    if len(x_test):
        x_test, y_test = trainer.check_data(x_test, y_test, "held-out")
    callbacks = list(train.get("callbacks", []))
    named = [c if isinstance(c, str) else c.get("type") for c in callbacks if isinstance(c, (str, dict))]
    if progress and "progress" not in named:
        callbacks.append("progress")
    for spec in callbacks:
        trainer.add_callback(spec)
    if resume is not None:
        restore_checkpoint(trainer, latest_whole_checkpoint(resume))
    created = not os.path.exists(logdir)
    save_run_config(logdir, config)
    return Experiment(config, trainer, x_train, y_train, x_test, y_test, created_logdir=created)


def save_run_config(logdir, config):
    try:
        save_json(os.path.join(logdir, CONFIG_FILE), config)
    except (TypeError, ValueError) as exc:  # a value JSON cannot hold (a TOML date)
        raise ConfigError(f"the config cannot be saved with the run: {exc}") from exc


def load_run_config(logdir):
    """The config a run saved in ``logdir`` (`build` writes it), to resume that run."""
    path = os.path.join(os.fspath(logdir), CONFIG_FILE)
    if not os.path.isdir(logdir):
        raise DataError(f"run directory not found: {logdir}")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{logdir} holds no {CONFIG_FILE}: give the run's config file to resume it") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not a readable config: {exc}") from exc
    if not isinstance(config, dict):
        raise DataError(f"{path} is not a config table")
    return config


def run(config=None, *, progress=False, resume=None):
    """Train from a config mapping as ``plugnet train`` does; write ``LOGDIR/summary.json``
    and return it: final ``train`` (and ``test``) metrics, ``steps``, ``epochs``, ``seconds``.

    ``resume=LOGDIR`` continues that run from its newest whole checkpoint, with the config
    saved in it unless ``config`` is given (e.g. with more epochs).
    """
    if config is None:
        if resume is None:
            raise ConfigError("run() needs a config, or resume=LOGDIR")
        config = load_run_config(resume)
    return build(config, progress=progress, resume=resume).fit()
