"""`early_stopping`: stop when a monitored value has stopped improving."""

import math
from typing import ClassVar

import attrs
from attrs.validators import ge, in_, instance_of

from framework import Callback, ConfigError, did_you_mean, format_value, hookimpl, report

LOWER_IS_BETTER = ("loss", "mse", "mae", "rmse", "error")


def logged_keys(trainer):
    """The keys of the epoch logs this trainer will produce: ``loss``, each metric, and their
    ``val_`` twins when there are held-out data."""
    keys = ["loss", *getattr(trainer, "metrics", {})]
    if getattr(trainer, "validation_data", None) is not None:
        keys += [f"val_{key}" for key in keys]
    return keys


def direction_of(monitor, metrics):
    """``"min"`` or ``"max"``: a metric's own ``higher_is_better`` decides; otherwise the name
    does (losses and errors go down, anything else goes up)."""
    name = monitor.removeprefix("val_")
    metric = metrics.get(name)
    if metric is not None and hasattr(metric, "higher_is_better"):
        return "max" if metric.higher_is_better else "min"
    lowered = name.lower()
    if lowered in LOWER_IS_BETTER or lowered.endswith(("loss", "error")):
        return "min"
    return "max"


@attrs.define(eq=False)
class EarlyStopping(Callback):
    """Stops training once ``monitor`` has not improved for ``patience`` epochs in a row
    (``patience = 0`` stops at the first epoch without improvement).

    An improvement is a change by more than ``min_delta`` in the good direction: down for
    ``mode = "min"``, up for ``"max"``; ``"auto"`` takes it from the metric
    (``higher_is_better``) or the name (losses, ``mse``, ``mae`` go down).  A NaN never
    improves.  With ``restore_best`` the weights of the best epoch are put back when training
    stops or ends, before the final held-out evaluation, so the reported test metrics are the
    restored model's.  A stop is explained in ``trainer.stop_reason`` and, with ``verbose``,
    in one line on standard error once training has ended.  After training, ``best``,
    ``best_epoch`` and ``stopped_epoch`` (epochs counted from 0, ``None`` when it did not
    stop) say what happened.
    """

    kind: ClassVar[str] = "early_stopping"

    monitor: str = attrs.field(default="val_loss", validator=instance_of(str))
    patience: int = attrs.field(default=5, validator=[instance_of(int), ge(0)])
    min_delta: float = attrs.field(default=0.0, validator=[instance_of((int, float)), ge(0)])
    mode: str = attrs.field(default="auto", validator=in_(("auto", "min", "max")))
    restore_best: bool = attrs.field(default=True, validator=instance_of(bool))
    verbose: bool = attrs.field(default=True, validator=instance_of(bool))

    direction: str | None = attrs.field(init=False, default=None, repr=False)
    best: float | None = attrs.field(init=False, default=None, repr=False)
    best_epoch: int | None = attrs.field(init=False, default=None, repr=False)
    stopped_epoch: int | None = attrs.field(init=False, default=None, repr=False)
    wait: int = attrs.field(init=False, default=0, repr=False)
    _best_params: object = attrs.field(init=False, default=None, repr=False)
    _reason: str | None = attrs.field(init=False, default=None, repr=False)
    _restored: bool = attrs.field(init=False, default=False, repr=False)

    def state_dict(self):
        """The best value so far, its epoch and weights, and the epochs waited: what a
        checkpoint keeps so a resumed run stops where an uninterrupted one would."""
        state = {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}
        if self._best_params is not None:
            state["best_params"] = self._best_params
        return state

    def load_state_dict(self, state):
        self.best, self.best_epoch, self.wait = (
            state["best"],
            state["best_epoch"],
            int(state["wait"]),
        )
        self._best_params = state.get("best_params")
        self._restored = True

    @hookimpl
    def on_train_begin(self, trainer):
        # Checked before the first step, so a misspelt monitor costs no training time.
        self._check_monitor(logged_keys(trainer), trainer)
        metrics = getattr(trainer, "metrics", {})
        self.direction = self.mode if self.mode != "auto" else direction_of(self.monitor, metrics)
        self.stopped_epoch = self._reason = None
        if self._restored:  # resumed from a checkpoint: carry on counting from its state
            self._restored = False
            return
        self.best = math.inf if self.direction == "min" else -math.inf
        self.best_epoch = self.stopped_epoch = self._best_params = self._reason = None
        self.wait = 0

    @hookimpl
    def on_epoch_end(self, trainer, epoch, logs):
        if self.monitor not in logs:
            self._check_monitor(list(logs), trainer)
        value = logs[self.monitor]
        if self._improves(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self._best_params = trainer.model.get_params()
            return
        self.wait += 1
        if self.wait >= max(self.patience, 1):
            trainer.stop_training = True
            self.stopped_epoch = epoch
            restored = self._restore(trainer)
            reason = f"early stopping at epoch {epoch + 1}: {self.monitor} has not improved for {self.wait} epochs"
            if restored:
                best = f"{self.monitor} {format_value(self.best)}"
                reason += f"; restored the weights of epoch {self.best_epoch + 1} ({best})"
            trainer.stop_reason = self._reason = reason
        elif trainer.epoch >= trainer.epochs:
            self._restore(trainer)  # the last epoch: restore before the final evaluation

    @hookimpl
    def on_train_end(self, trainer):
        # Again at the very end: a full-batch optimizer writes its own last point back after
        # the last epoch, and a stop by another callback ends training between epochs.
        self._restore(trainer)
        if self.verbose and self._reason:
            report(f"plugnet: {self._reason}")  # at the end, below the progress output

    def _improves(self, value):
        if self.direction == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def _restore(self, trainer):
        """Put the best epoch's weights back; whether there were any to put back."""
        if not self.restore_best or self._best_params is None:
            return False
        trainer.model.set_params(self._best_params)
        return True

    def _check_monitor(self, keys, trainer):
        if self.monitor in keys:
            return
        message = f"early_stopping monitors '{self.monitor}', which this run does not log"
        message += did_you_mean(self.monitor, keys)
        message += f" Logged values: {', '.join(keys)}"
        if self.monitor.startswith("val_") and getattr(trainer, "validation_data", None) is None:
            message += (
                " (val_ values need held-out data: a test_fraction above 0, or validation_data)"
            )
        raise ConfigError(message)
