"""One trial of a sweep: its config, its training, what it reports to Optuna while it
trains, and what it records in the study when it ends."""

import contextlib
import copy
import json
import logging
import math
import signal
import time
from collections.abc import Mapping

from optuna.trial import TrialState

from framework.config import flatten_config, set_key
from framework.errors import ConfigError, PlugnetError
from framework.hookspecs import hookimpl
from framework.stopping import signal_name
from framework.sweeps.space import Choice, point_key

logger = logging.getLogger("plugnet.sweep")

# What the study keeps of each trial, as Optuna user attributes.
VOID = "plugnet_void"  # why a trial does not count: duplicate, surplus, interrupted
POINT = "plugnet_point"  # the trial's parameters as canonical JSON
OWNER = "plugnet_owner"  # host, pid, process start and heartbeat of the worker running it
SUMMARY = "plugnet_summary"  # the run's flattened summary.json
SECONDS = "plugnet_seconds"  # wall time of the whole trial
ERROR = "plugnet_error"
STOPPED = "plugnet_stopped"  # the signal that stopped the trial: it runs again from the start


def suggest(trial, spec):
    """The trial's parameters, through Optuna's suggest API (fixed for enqueued trials)."""
    params = {}
    for param in spec.params:
        if isinstance(param, Choice):
            if param.composite:
                choices = [json.dumps(v, sort_keys=True) for v in param.values]
                params[param.key] = json.loads(trial.suggest_categorical(param.key, choices))
            else:
                params[param.key] = trial.suggest_categorical(param.key, list(param.values))
        elif param.integer:
            params[param.key] = trial.suggest_int(param.key, param.low, param.high, log=param.log)
        else:
            params[param.key] = trial.suggest_float(param.key, param.low, param.high, log=param.log)
    return params


class Reporter:
    """The sweep's callback on each trial.

    With a pruner, after every epoch (an epoch ends with the evaluation on held-out data) it
    reports the sweep metric to Optuna and stops a trial the pruner gives up on.  Epochs, not
    global steps, are the pruner's time axis, so trials with different batch sizes still
    compare.  Without one nothing reads those values, and each report is a write and an
    fsync of Optuna's journal: 1,200 of them took 0.3 s of a 2-second moons trial, so none
    is made (the epoch curves are in TensorBoard; the trial's final value goes to Optuna).

    At the end it writes the trial's HParams session (its flattened config against its final
    metrics, tagged ``hparams/train/loss``... as the tensorboard callback tags them) but no
    experiment summary: TensorBoard reads one experiment for a whole log directory, and the
    sweep's, with every swept key's domain, is the one to show.
    """

    kind = "sweep_reporter"

    def __init__(self, trial, metric, stop=None, prunes=True):
        self.trial = trial
        self.prunes = prunes
        self.stop = stop  # the worker's `StopRequest`: a stopped trial's session is no success
        section, _, name = metric.partition(".")
        self.log_key = {"train": name, "test": f"val_{name}"}.get(section)
        self.pruned = False
        self.started = time.time()

    @hookimpl
    def on_train_begin(self):
        self.started = time.time()

    @hookimpl
    def on_epoch_end(self, trainer, epoch, logs):
        value = logs.get(self.log_key) if self.log_key and self.prunes else None
        if value is None:
            return
        self.trial.report(float(value), epoch)
        if self.trial.should_prune():
            self.pruned = True
            trainer.stop_training = True

    @hookimpl
    def on_train_end(self, trainer):
        # TensorBoard's statuses are success, failure, running and unknown: a pruned trial
        # is neither a success nor a failure, and filters apart from both.
        stopped = self.stop is not None and self.stop.requested
        self.write_session(trainer, "unknown" if self.pruned or stopped else "success")

    @hookimpl
    def on_exception(self, trainer, exception):
        with contextlib.suppress(Exception):  # the training's own exception is the one to see
            self.write_session(trainer, "failure")

    def write_session(self, trainer, status):
        from framework.rundir import record
        from framework.summaries import final_metrics, run_hparams, write_hparams_session

        path = write_hparams_session(
            trainer.logdir, run_hparams(trainer.config), final_metrics(trainer), status,
            step=trainer.step, start_time=self.started, experiment=False,
        )  # fmt: skip
        record(path)  # the trial's run directory keeps it in its manifest


def trial_config(plan, params, number):
    """The config of one trial: the sweep's config with its parameters set, logging to
    ``LOGDIR/trial-NNNN`` and with the tensorboard callback, whose HParams session makes the
    trial a row of the sweep's HParams table."""
    config = copy.deepcopy(plan.config)
    for key, value in params.items():
        set_key(config, key, value)
    config.setdefault("logging", {})["logdir"] = plan.trial_dir(number)
    train = config.setdefault("train", {})
    callbacks = list(train.get("callbacks", []))
    names = [
        c if isinstance(c, str) else c.get("type") if isinstance(c, Mapping) else None
        for c in callbacks
    ]
    if "tensorboard" not in names:
        callbacks.append("tensorboard")
        names.append("tensorboard")
    # The reporter writes the trial's HParams session, without a per-run experiment.
    callbacks = [
        {**({"type": c} if isinstance(c, str) else c), "hparams": False}
        if name == "tensorboard"
        else c
        for c, name in zip(callbacks, names, strict=True)
    ]
    train["callbacks"] = callbacks
    return config


class MetricMissing(ConfigError):
    """The runs' summary.json lacks the sweep's metric."""


def run_trial(plan, study, storage, claimed, stop=None):
    """Train one trial and tell the study how it went; return its state's name.

    With ``stop`` (the worker's `StopRequest`), a signal stops the trial at its next step
    (or, a second one, at once): it is then marked stopped and left to be run again, and
    ``"stopped"`` returned.
    """
    from framework.run import build

    spec = plan.spec
    started = time.perf_counter()
    tid = claimed.tid
    params = suggest(claimed.trial, spec)
    storage.set_trial_user_attr(tid, POINT, point_key(params))
    reporter = Reporter(claimed.trial, spec.metric, stop, prunes=spec.pruner["type"] != "none")
    try:
        config = trial_config(plan, params, claimed.number)
        experiment = build(
            config, overwrite=True, data=plan.data
        )  # a trial cut off by a crash runs again afresh
        experiment.trainer.add_callback(reporter)
        if stop is not None:
            experiment.trainer.add_callback(stop)
        summary = experiment.fit()
    except KeyboardInterrupt as exc:
        if stop is None:
            raise
        # A second signal, or a run that raises when a signal stops it: stopped all the same.
        stop.request(getattr(exc, "signum", None) or signal.SIGINT)
        return mark_stopped(storage, claimed, stop, started)
    except Exception as exc:
        storage.set_trial_user_attr(tid, ERROR, f"{type(exc).__name__}: {exc}")
        storage.set_trial_user_attr(tid, SECONDS, round(time.perf_counter() - started, 3))
        study.tell(claimed.number, state=TrialState.FAIL)
        if not isinstance(exc, PlugnetError):
            logger.warning("trial %d failed: %s: %s", claimed.number, type(exc).__name__, exc)
        return "fail"
    if stop is not None and stop.stopped is experiment.trainer:  # not a signal after the end
        return mark_stopped(storage, claimed, stop, started)
    flat = flatten_config(summary)
    storage.set_trial_user_attr(tid, SUMMARY, flat)
    storage.set_trial_user_attr(tid, SECONDS, round(time.perf_counter() - started, 3))
    value = flat.get(spec.metric)
    if value is None:
        message = (
            f"sweep metric '{spec.metric}' is not in the runs' summary.json; it has: "
            + ", ".join(k for k in flat if isinstance(flat[k], (int, float)))
        )
        storage.set_trial_user_attr(tid, ERROR, message)
        study.tell(claimed.number, state=TrialState.FAIL)
        raise MetricMissing(message)
    if reporter.pruned:
        study.tell(claimed.number, state=TrialState.PRUNED)
        return "pruned"
    if not math.isfinite(value):
        storage.set_trial_user_attr(tid, ERROR, f"{spec.metric} is {value}")
        study.tell(claimed.number, state=TrialState.FAIL)
        return "fail"
    study.tell(claimed.number, float(value))
    return "complete"


def mark_stopped(storage, claimed, stop, started):
    """A trial stopped by a signal: marked, and left RUNNING for whoever next looks for work
    in the study to run again (`framework.sweeps.study.recover_stale`)."""
    storage.set_trial_user_attr(claimed.tid, SECONDS, round(time.perf_counter() - started, 3))
    storage.set_trial_user_attr(
        claimed.tid, STOPPED, signal_name(stop.signum)
    )  # last: then it may be taken over
    return "stopped"
