"""The study a sweep keeps in Optuna's storage, and the workers that run its trials.

Every worker — a process here, a Ray task, a process on another machine — talks only to the
storage, so any number of them can share one study.  Three rules keep each trial run once:

* Trials are taken, never handed out.  Grid points are enqueued as WAITING trials; a worker
  takes one by moving it to RUNNING, which the storage lets exactly one worker do.
* The lowest number wins.  Two processes starting together may enqueue the same point twice;
  whoever takes a trial whose point an earlier, still counting trial already has marks it a
  duplicate and moves on.
* Cut-off trials are found and run again.  A worker stamps its trial with its host, process
  and a heartbeat; a RUNNING trial whose process is gone (same host) or whose heartbeat is
  stale (another host) is marked interrupted by whoever notices first, and its point enqueued
  again.  Marked trials (``plugnet_void``) count for nothing and are left out of results.
"""

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Mapping

import attrs
import numpy as np
import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from framework.sweeps.space import point_key
from framework.sweeps.storage import open_storage
from framework.sweeps.trial import OWNER, POINT, STOPPED, VOID, MetricMissing, run_trial

STUDY_METRIC = "plugnet_metric"  # the study's metric, so a re-run with another one is refused
HEARTBEAT_SECONDS = 15.0
STALE_SECONDS = 90.0  # a heartbeat this old means the worker on another host is gone
HOST = socket.gethostname()

optuna.logging.set_verbosity(optuna.logging.WARNING)


@attrs.frozen
class Plan:
    """All a worker needs to join a sweep; plain data, so it travels to processes and Ray."""

    config: dict  # what every trial starts from (no [sweep] table)
    spec: object  # the `SweepSpec`
    logdir: str  # absolute: workers may run elsewhere
    storage: str  # a database URL or the absolute path of a journal file
    study: str
    seed: int = 0
    threads: int | None = None  # BLAS threads per worker
    shared: bool = False  # the storage was given: other machines may be in the study
    data: tuple | None = None  # the trials' data, loaded once (`framework.run.load_data`)

    def trial_dir(self, number):
        return os.path.join(self.logdir, f"trial-{number:04d}")


def trial_id(storage, study, number):
    study_id = storage.get_study_id_from_name(study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def counts(trial):
    return VOID not in trial.user_attrs


def point_of(trial):
    return trial.user_attrs.get(POINT)


def counting(trials):
    """The trials that count, in order: not marked void, and not a later copy of a point
    that an earlier counting trial has (a duplicate whose taker has yet to mark it), so that
    a listing made at any moment shows each point once."""
    seen = set()
    for trial in sorted(trials, key=lambda t: t.number):
        point = point_of(trial)
        if not counts(trial) or point in seen:
            continue
        if point is not None:
            seen.add(point)
        yield trial


# --- who runs what -------------------------------------------------------------------------


def process_start(pid):
    """``(start time in clock ticks, state)`` of a process from /proc, or None where there is
    no /proc (then only the pid is checked)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[19]), fields[0].decode()
    except (OSError, IndexError, ValueError):
        return None


def owner_stamp():
    info = process_start(os.getpid())
    return {
        "host": HOST,
        "pid": os.getpid(),
        "start": info[0] if info else None,
        "beat": time.time(),
    }


def process_alive(pid, start):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    info = process_start(pid)
    if info is None:
        return not os.path.exists("/proc/self/stat")  # no /proc at all: trust the pid
    ticks, state = info
    return state not in ("Z", "X") and (
        start is None or ticks == start
    )  # not a zombie, not a reused pid


def is_stale(trial, now):
    if STOPPED in trial.user_attrs:  # stopped by a signal: to be run again
        return True
    owner = trial.user_attrs.get(OWNER)
    if not isinstance(owner, Mapping):  # taken but not yet stamped, or by an old worker
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        return now - started > STALE_SECONDS
    if owner.get("host") == HOST:
        return not process_alive(owner.get("pid"), owner.get("start"))
    return now - owner.get("beat", 0) > STALE_SECONDS


def void(storage, tid, reason):
    """Mark a RUNNING trial as not counting; True for the one caller that did it."""
    try:
        storage.set_trial_user_attr(tid, VOID, reason)
        storage.set_trial_state_values(tid, TrialState.FAIL)
        return True
    except UpdateFinishedTrialError:
        return False


def enqueue(study, params):
    study.enqueue_trial(encode(params), user_attrs={POINT: point_key(params)})


def encode(params):
    """Parameters as Optuna keeps them: tables and lists as JSON text."""
    return {
        k: json.dumps(v, sort_keys=True) if isinstance(v, (Mapping, list)) else v
        for k, v in params.items()
    }


def recover_stale(study, storage, plan):
    """Mark trials whose worker is gone, and trials stopped by a signal, as interrupted,
    enqueue their points again and drop what they had written; return how many."""
    now = time.time()
    recovered = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_stale(trial, now):
            continue
        if void(storage, trial_id(storage, study, trial.number), "interrupted"):
            if point_of(trial) is not None:
                enqueue(study, json.loads(point_of(trial)))
            shutil.rmtree(plan.trial_dir(trial.number), ignore_errors=True)
            recovered += 1
    return recovered


def enqueue_grid(study, spec):
    """Enqueue each grid point that no counting trial has yet."""
    have = {point_of(t) for t in study.get_trials(deepcopy=False) if counts(t)}
    for params in spec.grid():
        if point_key(params) not in have:
            enqueue(study, params)


@attrs.define
class Claimed:
    trial: object  # optuna.trial.Trial
    tid: int
    number: int
    params: dict | None  # None: to be suggested by the sampler


def take_waiting(study, storage):
    """Move the first WAITING trial that no counting trial before it duplicates to RUNNING,
    for this worker alone; None when there is none."""
    for waiting in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        tid = trial_id(storage, study, waiting.number)
        try:
            if not storage.set_trial_state_values(tid, TrialState.RUNNING):
                continue  # another worker took it first
        except UpdateFinishedTrialError:
            continue
        storage.set_trial_user_attr(tid, OWNER, owner_stamp())
        point = point_of(waiting)
        earlier = [
            t
            for t in study.get_trials(deepcopy=False)
            if t.number < waiting.number and counts(t) and point_of(t) == point
        ]
        if earlier:
            void(storage, tid, "duplicate")
            continue
        params = json.loads(point) if point is not None else None
        return Claimed(optuna.trial.Trial(study, tid), tid, waiting.number, params)
    return None


def take_new(study, storage, plan):
    """Ask the sampler for a new trial while the study has fewer than ``trials`` counting
    ones; a trial numbered past the budget (several workers asked at once) is surplus."""
    trials = study.get_trials(deepcopy=False)
    if sum(counts(t) for t in trials) >= plan.spec.trials:
        return None
    trial = study.ask()
    tid = trial_id(storage, study, trial.number)
    storage.set_trial_user_attr(tid, OWNER, owner_stamp())
    before = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number and counts(t)]
    if len(before) >= plan.spec.trials:
        void(storage, tid, "surplus")
        return None
    point = storage.get_trial(tid).user_attrs.get(POINT)  # `ask` may have taken an enqueued one
    return Claimed(trial, tid, trial.number, json.loads(point) if point else None)


def interrupt(study, storage, plan, claimed):
    """Ctrl-C or a signal stopped a trial: it did not finish, so it runs again later."""
    point = storage.get_trial(claimed.tid).user_attrs.get(POINT)
    if void(storage, claimed.tid, "interrupted"):
        if point is not None:
            enqueue(study, json.loads(point))
        shutil.rmtree(plan.trial_dir(claimed.number), ignore_errors=True)


class Heartbeat:
    """Refreshes the stamp of the trial this worker runs, so other hosts see it alive."""

    def __init__(self, storage, interval=HEARTBEAT_SECONDS):
        self.storage = storage
        self.interval = interval
        self.current = None
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, name="plugnet-sweep-heartbeat", daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopped.wait(self.interval):
            with self.lock:
                if self.current is not None:
                    try:
                        self.storage.set_trial_user_attr(self.current, OWNER, owner_stamp())
                    except Exception:  # noqa: BLE001 - finished meanwhile, or storage hiccup
                        pass

    def watch(self, tid):
        with self.lock:
            self.current = tid

    def stop(self):
        self.stopped.set()


def sampler_seed(plan, index, existing):
    """Distinct, reproducible seeds: per worker and per continuation of the study (and per
    process where other machines may share the study)."""
    words = [plan.seed, existing, index]
    if plan.shared:
        words += [os.getpid(), sum(HOST.encode())]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def make_sampler(plan, seed):
    if plan.spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    return optuna.samplers.RandomSampler(seed=seed)  # grid trials are all enqueued: never sampled


def make_pruner(spec):
    options = {k: v for k, v in spec.pruner.items() if k != "type"}
    if spec.pruner["type"] == "median":
        return optuna.pruners.MedianPruner(**options)
    return optuna.pruners.NopPruner()


def load(plan, storage, index=0):
    existing = len(optuna.load_study(study_name=plan.study, storage=storage).trials)
    return optuna.load_study(
        study_name=plan.study,
        storage=storage,
        sampler=make_sampler(plan, sampler_seed(plan, index, existing)),
        pruner=make_pruner(plan.spec),
    )


def work(plan, index=0, report=None, stop=None):
    """One worker: take trials and run them until the study has nothing left to run, or
    until ``stop`` (a `StopRequest`) is requested.  ``report(number, state)`` is called after
    each trial."""
    from threadpoolctl import threadpool_limits

    storage = open_storage(plan.storage)
    study = load(plan, storage, index)
    heartbeat = Heartbeat(storage)
    done = 0
    try:
        with threadpool_limits(limits=plan.threads):
            while stop is None or not stop.requested:
                recover_stale(study, storage, plan)
                claimed = take_waiting(study, storage)
                if claimed is None and plan.spec.sampler != "grid":
                    claimed = take_new(study, storage, plan)
                if claimed is None:
                    return done
                heartbeat.watch(claimed.tid)
                try:
                    state = run_trial(plan, study, storage, claimed, stop)
                except BaseException as exc:
                    if not isinstance(exc, MetricMissing):
                        interrupt(study, storage, plan, claimed)
                    raise
                finally:
                    heartbeat.watch(None)
                done += 1
                if report is not None:
                    report(claimed.number, state)
            return done
    finally:
        heartbeat.stop()
