"""Sweeps: many trainings of one config that differ in hyper-parameters.

Optuna decides what to try and keeps the study (by default in ``LOGDIR/study.journal``);
plugnet's own training runs each trial as an ordinary run directory ``LOGDIR/trial-NNNN``.
Workers are this process (``jobs=1``), processes forked from a fork server (``jobs=N``) or
Ray tasks; all of them meet only in the storage, so processes on other machines pointed at
the same storage and study join the same sweep.  See `framework.sweeps.study` for how each
trial runs once, and `framework.sweeps.stopping` for what SIGINT and SIGTERM do.
"""

import contextlib
import ctypes
import os
import signal
import sys
import traceback
from multiprocessing import connection

import attrs
import optuna

from framework.config import add_plugins, apply_overrides
from framework.errors import ConfigError, PlugnetError
from framework.run import paused_gc
from framework.sweeps.output import (
    SweepResult,
    TrialResult,
    best_of,
    format_table,
    results,
    write_csv,
    write_experiment,
)
from framework.sweeps.server import worker_context
from framework.sweeps.space import Choice, parse_sweep
from framework.sweeps.stopping import StopRequest, SweepStopped, signal_handlers
from framework.sweeps.storage import open_storage, redact, release
from framework.sweeps.study import (
    STUDY_METRIC,
    Plan,
    counts,
    encode,
    enqueue_grid,
    recover_stale,
    work,
)

__all__ = ["SweepResult", "SweepStopped", "TrialResult", "sweep", "summary_lines"]

DEFAULT_LOGDIR = "runs"
RAY_EXTRA = 'pip install "plugnet[ray]"'
FINISHED = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.PRUNED,
    optuna.trial.TrialState.FAIL,
)


def sweep(
    config,
    *,
    grid=None,
    trials=None,
    jobs=None,
    storage=None,
    study=None,
    ray=None,
    logdir=None,
    seed=None,
    overrides=(),
    plugins=(),
    progress=False,
):
    """Run (or continue) the sweep ``config`` describes and return a `SweepResult`.

    ``grid``: ``["KEY=V1,V2", ...]`` (as ``--grid``) or ``{key: [values]}``, added to or
    replacing ``[sweep.params]``; ``trials``: the budget of the random and TPE samplers;
    ``jobs``: worker processes here (default 1; with ``ray``, the cluster's CPUs);
    ``storage``: an Optuna database URL or a journal file path (default
    ``LOGDIR/study.journal``); ``study``: the study's name in it (default: the sweep
    directory's name); ``ray``: a Ray address (``auto``, ``host:port``, or ``local`` for a
    throw-away cluster on this machine); ``logdir``, ``seed``, ``overrides`` (``KEY=VALUE``)
    and ``plugins`` as for training; ``progress``: a bar over the trials on a terminal.

    Bad input raises `ConfigError` before anything is written.  SIGINT or SIGTERM stops
    the running trials at their next step and raises `SweepStopped` (a `KeyboardInterrupt`);
    calling ``sweep`` again with the same arguments runs them again and finishes the sweep.
    With ``jobs`` above 1, a script that calls ``sweep`` does so under ``if __name__ ==
    "__main__":``, as Python's fork server, which starts the workers, needs.
    """
    if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
        raise ConfigError(f"--jobs must be a whole number of workers, at least 1; got {jobs!r}")
    if ray is not None and not ray_installed():
        raise ConfigError(f"--ray needs Ray, which is not installed: {RAY_EXTRA}")
    # The set-up imports the plugins and the dataset's library (scikit-learn, scipy):
    # hundreds of thousands of lasting objects, which the garbage collector would otherwise
    # scan again each time the heap grows by a quarter (see `framework.run.paused_gc`).
    with paused_gc():
        config = with_options(config, overrides, seed, plugins)
        workers = jobs or 1
        # Started first, so that its imports run beside the set-up below.
        context = worker_context() if ray is None and workers > 1 else None
        base, spec = parse_sweep(config, grid, trials)
        if spec.sampler == "grid":
            spec = attrs.evolve(spec, trials=len(spec.grid()))
        logdir = os.path.abspath(
            logdir
            or config.get("logging", {}).get("logdir")
            or os.path.join(DEFAULT_LOGDIR, f"{base['data']['type']}-sweep")
        )
        if os.path.exists(logdir) and not os.path.isdir(logdir):
            raise ConfigError(f"the sweep directory {logdir} is a file")
        url = storage or os.path.join(logdir, "study.journal")
        if "://" not in url:
            url = os.path.abspath(url)
        study_name = study or os.path.basename(logdir)
        if storage:  # reach it before writing anything
            store = open_storage(url)
            os.makedirs(logdir, exist_ok=True)
        else:
            os.makedirs(logdir, exist_ok=True)
            store = open_storage(url)
        handle = prepare(store, study_name, spec, url)
        cores = available_cores()
        plan = Plan(
            config=base,
            spec=spec,
            logdir=logdir,
            storage=url,
            study=study_name,
            seed=int(base.get("seed", 0)),
            threads=1 if ray else max(1, cores // workers),
            shared=bool(storage),
            data=shared_data(base, spec, local=ray is None and workers == 1),
        )
        recover_stale(handle, store, plan)
        if spec.sampler == "grid":
            enqueue_grid(handle, spec)
        write_experiment(logdir, spec)
    csv_path = os.path.join(logdir, "sweep.csv")

    def refresh():
        write_csv(csv_path, spec, results(handle, spec, logdir))

    done = finished_count(handle)
    bar = progress_bar(progress, spec.trials, min(done, spec.trials))
    lost = 0
    try:
        if ray is not None:
            lost = run_ray(plan, ray, jobs, handle, bar, refresh)
        elif workers == 1:
            run_here(plan, bar, refresh)
        else:
            release(store)  # the children open their own connections
            lost = run_processes(plan, workers, context, bar, refresh)
    finally:
        bar.close()
        refresh()
    trials_ = results(handle, spec, logdir)
    return SweepResult(
        trials=trials_,
        best=best_of(trials_, spec.direction),
        metric=spec.metric,
        direction=spec.direction,
        logdir=logdir,
        storage=redact(url),
        study=study_name,
        keys=spec.keys,
        interrupted_workers=lost,
    )


def run_here(plan, bar, refresh):
    """The one worker in this process; SIGINT and SIGTERM stop its trial (`StopRequest`)."""
    stop, stopped = StopRequest(), []

    def report(number, state):
        if state == "stopped":
            stopped.append(number)
        else:
            bar.update(1)
        refresh()

    with stop.handling():
        work(plan, 0, report=report, stop=stop)
    if stop.requested:
        raise SweepStopped(stop.signum, stopped)


def ray_installed():
    try:
        import ray  # noqa: F401 - only whether it imports
    except ImportError:
        return False
    return True


def with_options(config, overrides, seed, plugins):
    config = apply_overrides(config, list(overrides))
    if seed is not None:
        config["seed"] = seed
    return add_plugins(config, plugins)


# The most data sent along to worker processes: pickling more through a pipe costs more
# than each worker loading it again.
SHARED_DATA_BYTES = 32 * 2**20


def shared_data(config, spec, local):
    """The trials' data, loaded once here when no trial can differ in it (no parameter of
    the sweep is ``seed`` or under ``data`` or ``plugins``), so that no trial spends its time
    loading it: a scikit-learn dataset costs each fresh worker a second of imports.  `None`
    where they may differ, where loading fails (each trial then reports the error as its
    own), and, unless the trials run in this process (``local``), where the data are too big
    to send to the workers."""
    if any(key == "seed" or key.split(".")[0] in ("data", "plugins") for key in spec.keys):
        return None
    from framework.run import load_data

    try:
        loaded = load_data(config)
    except Exception:  # noqa: BLE001 - a dataset plugin may raise anything: each trial reports it
        return None
    _, arrays = loaded
    size = sum(
        a.nbytes for part in arrays for a in (part.values() if isinstance(part, dict) else [part])
    )
    return loaded if local or size <= SHARED_DATA_BYTES else None


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def distributions(spec):
    """The Optuna distribution of each swept key, as trials record them."""
    made = {}
    for param in spec.params:
        if isinstance(param, Choice):
            made[param.key] = optuna.distributions.CategoricalDistribution(
                list(encode({"v": v})["v"] for v in param.values)
            )
        elif param.integer:
            made[param.key] = optuna.distributions.IntDistribution(
                param.low, param.high, log=param.log
            )
        else:
            made[param.key] = optuna.distributions.FloatDistribution(
                param.low, param.high, log=param.log
            )
    return made


def prepare(store, name, spec, url):
    """Create or load the study; refuse one that optimises something else or tried other
    values of a key (Optuna cannot mix those in one study)."""
    where = f"the study '{name}' in {redact(url)}"
    try:
        study = optuna.create_study(
            storage=store, study_name=name, direction=spec.direction, load_if_exists=True
        )
    except Exception as exc:  # noqa: BLE001 - storage errors surface here on first use
        raise ConfigError(f"cannot use storage '{redact(url)}': {exc}") from None
    metric = study.user_attrs.get(STUDY_METRIC)
    if metric is None:
        study.set_user_attr(STUDY_METRIC, spec.metric)
    elif metric != spec.metric or study.direction.name.lower() != spec.direction:
        raise ConfigError(
            f"{where} was made to {study.direction.name.lower()} '{metric}', not to {spec.direction} "
            f"'{spec.metric}': name another study with --study, or another --logdir"
        )
    wanted = distributions(spec)
    for trial in study.get_trials(deepcopy=False):
        for key, old in trial.distributions.items():
            new = wanted.get(key)
            if new is None:
                continue
            try:
                optuna.distributions.check_distribution_compatibility(old, new)
            except ValueError:
                raise ConfigError(
                    f"{where} tried other values of '{key}' ({distribution_text(old)}); name another "
                    "study with --study, or another --logdir"
                ) from None
    return study


def distribution_text(distribution):
    choices = getattr(distribution, "choices", None)
    if choices is not None:
        return ", ".join(map(str, choices))
    return f"{distribution.low} to {distribution.high}"


class NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def progress_bar(progress, total, initial):
    if not progress:
        return NoBar()
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, unit="trial", desc="sweep", disable=None, file=sys.stderr
    )


# --- worker processes ------------------------------------------------------------------------


def die_with_parent(sweep_pid):
    """Ask Linux to send SIGTERM to this worker when its parent (the fork server, which
    exits with the sweep process) dies, so a killed sweep leaves no orphans training on
    (their trials are found and run again); exit now if the sweep is already gone."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    try:
        os.kill(sweep_pid, 0)
    except ProcessLookupError:
        os._exit(143)
    except PermissionError:
        pass
    if os.getppid() != parent:  # the parent died before the request above took effect
        os._exit(143)


def adopt_environment(environ):
    """The sweep process's environment as it is now: the fork server keeps the one it was
    started with, and a forked worker would have seen the sweep's own."""
    for key in set(os.environ) - set(environ):
        del os.environ[key]
    os.environ.update(environ)


def worker_process(plan, index, messages, sweep_pid, environ):
    """A worker process; ``messages`` is the write end of its pipe to the sweep process."""
    die_with_parent(sweep_pid)
    adopt_environment(environ)
    # Its own process group: Ctrl-C at a terminal reaches the sweep process alone, which
    # passes it on once (a second signal would stop the running trial at once).
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    stop = StopRequest()
    try:
        with stop.handling():
            work(
                plan,
                index,
                report=lambda number, state: messages.send(("trial", number, state)),
                stop=stop,
            )
    except PlugnetError as exc:
        messages.send(("error", type(exc).__name__, str(exc)))
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(128 + (stop.signum or signal.SIGINT))
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
    if stop.signum is not None:
        sys.exit(128 + stop.signum)


def worker_error(kind, text):
    """The error a worker reported (by class name, as it crossed a process boundary) to
    raise here: a bad config stays a ConfigError."""
    return ConfigError(text) if kind in ("ConfigError", "MetricMissing") else PlugnetError(text)


def run_processes(plan, jobs, context, bar, refresh):
    """``jobs`` worker processes; returns how many ended abnormally.  SIGINT and SIGTERM
    here are passed on to the workers, whose running trials stop at their next step; then
    `SweepStopped` is raised."""
    pipes, processes = [], []
    forward = Forwarder(processes)
    with forward.handling():
        for i in range(jobs):
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(
                target=worker_process, args=(plan, i, sender, os.getpid(), dict(os.environ)),
                name=f"plugnet-sweep-{i}",
            )  # fmt: skip
            process.start()
            sender.close()  # the worker holds the write end: end of file when it exits
            pipes.append(receiver)
            processes.append(process)
            if forward.signum is not None:  # stopped while starting them
                forward.send(process)
        errors, stopped = [], []
        try:
            # Wake on a message or an end of file, never on a timer: the sweep ends the
            # moment its last worker does.
            while pipes:
                for pipe in connection.wait(pipes):
                    try:
                        message = pipe.recv()
                    except EOFError:
                        pipes.remove(pipe)
                        continue
                    if message[0] == "trial":
                        if message[2] == "stopped":
                            stopped.append(message[1])
                        else:
                            bar.update(1)
                        refresh()
                    else:
                        errors.append(message)
        finally:
            for process in processes:
                process.join(timeout=None if forward.signum is not None else 30)
                if process.is_alive():
                    process.terminate()
                    process.join()
    if errors:
        raise worker_error(*errors[0][1:])
    if forward.signum is not None:
        raise SweepStopped(forward.signum, stopped)
    return sum(1 for p in processes if p.exitcode not in (0, None))


class Forwarder:
    """The sweep process's SIGINT and SIGTERM handler while workers run: each signal is
    passed on to every live worker (the first stops their trials at the next step, a second
    at once)."""

    def __init__(self, processes):
        self.processes = processes
        self.signum = None

    def handle(self, signum, frame):
        self.signum = self.signum or signum
        for process in self.processes:
            self.send(process, signum)

    def send(self, process, signum=None):
        with contextlib.suppress(OSError, ValueError):  # ended meanwhile
            if process.is_alive():
                os.kill(process.pid, signum or self.signum)

    def handling(self):
        return signal_handlers(self.handle)


# --- Ray -------------------------------------------------------------------------------------


def ray_work(plan, index):
    """A Ray task: one worker; returns ``("ok", trials run)`` or ``("error", kind, text)``."""
    try:
        return ("ok", work(plan, index))
    except PlugnetError as exc:
        return ("error", type(exc).__name__, str(exc))


def run_ray(plan, address, jobs, study, bar, refresh):
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = not ray.is_initialized()
    if started:
        options = {"include_dashboard": False, "logging_level": "WARNING"}
        if address == "local":
            options.update(num_cpus=jobs or available_cores(), object_store_memory=80 * 2**20)
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"cannot reach the Ray cluster at '{address}': {exc}") from None
    try:
        count = jobs or max(1, int(ray.cluster_resources().get("CPU", 1)))
        task = ray.remote(num_cpus=1, max_retries=0)(ray_work)
        pending = [task.remote(plan, i) for i in range(count)]
        seen = finished_count(study)
        outcomes = []
        while pending:
            ready, pending = ray.wait(pending, timeout=0.5)
            outcomes += ray.get(ready)
            now = finished_count(study)
            if now > seen:
                bar.update(now - seen)
                seen = now
                refresh()
        for outcome in outcomes:
            if outcome[0] == "error":
                raise worker_error(*outcome[1:])
        return 0
    finally:
        if started:
            ray.shutdown()


def finished_count(study):
    return sum(1 for t in study.get_trials(deepcopy=False, states=FINISHED) if counts(t))


# --- the closing report ----------------------------------------------------------------------


def summary_lines(result):
    """The end of ``plugnet sweep``: the table, the best parameters, failures, and how to
    look at it all in TensorBoard."""
    lines = [format_table(result), ""]
    if result.best is not None:
        params = ", ".join(f"{k}={v!r}" for k, v in result.best.params.items())
        lines.append(
            f"best: trial-{result.best.number:04d}  {result.metric} {result.best.value:.6g}  {params}"
        )
    else:
        lines.append("no trial completed")
    for trial in result.trials:
        if trial.state == "fail" and trial.error:
            lines.append(f"trial-{trial.number:04d} failed: {trial.error}")
    if result.interrupted_workers:
        lines.append(
            f"{result.interrupted_workers} worker(s) ended abnormally; run the same command again to finish their trials"
        )
    lines.append(f"sweep.csv and the study in {result.logdir}")
    lines.append(
        f"compare the trials in TensorBoard's HParams tab: tensorboard --logdir {result.logdir}"
    )
    return lines
