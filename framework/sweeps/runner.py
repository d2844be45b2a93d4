"""Sweeps: many trainings of one config that differ in hyper-parameters.

Optuna decides what to try and keeps the study (by default in ``LOGDIR/study.journal``);
plugnet's own training runs each trial as an ordinary run directory ``LOGDIR/trial-NNNN``.
Workers are this process (``jobs=1``), forked processes (``jobs=N``) or Ray tasks; all of
them meet only in the storage, so processes on other machines pointed at the same storage
and study join the same sweep.  See `framework.sweeps.study` for how each trial runs once.
"""

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import traceback
from multiprocessing import connection

import attrs
import optuna

from framework.config import add_plugins, apply_overrides
from framework.errors import ConfigError, PlugnetError
from framework.sweeps.output import (
    SweepResult,
    TrialResult,
    best_of,
    format_table,
    results,
    write_csv,
    write_experiment,
)
from framework.sweeps.space import Choice, parse_sweep
from framework.sweeps.storage import open_storage, redact, release
from framework.sweeps.study import STUDY_METRIC, Plan, counts, encode, enqueue_grid, recover_stale, work

__all__ = ["SweepResult", "TrialResult", "sweep", "summary_lines"]

DEFAULT_LOGDIR = "runs"
RAY_EXTRA = 'pip install "plugnet[ray]"'
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


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

    Bad input raises `ConfigError` before anything is written.
    """
    if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
        raise ConfigError(f"--jobs must be a whole number of workers, at least 1; got {jobs!r}")
    if ray is not None and not ray_installed():
        raise ConfigError(f"--ray needs Ray, which is not installed: {RAY_EXTRA}")
    config = with_options(config, overrides, seed, plugins)
    base, spec = parse_sweep(config, grid, trials)
    if spec.sampler == "grid":
        spec = attrs.evolve(spec, trials=len(spec.grid()))
    logdir = os.path.abspath(
        logdir or config.get("logging", {}).get("logdir") or os.path.join(DEFAULT_LOGDIR, f"{base['data']['type']}-sweep")
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
    workers = jobs or 1
    plan = Plan(
        config=base,
        spec=spec,
        logdir=logdir,
        storage=url,
        study=study_name,
        seed=int(base.get("seed", 0)),
        threads=1 if ray else max(1, cores // workers),
        shared=bool(storage),
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
            work(plan, 0, report=lambda number, state: (bar.update(1), refresh()))
        else:
            release(store)  # the children open their own connections
            lost = run_processes(plan, workers, bar, refresh)
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
            made[param.key] = optuna.distributions.IntDistribution(param.low, param.high, log=param.log)
        else:
            made[param.key] = optuna.distributions.FloatDistribution(param.low, param.high, log=param.log)
    return made


def prepare(store, name, spec, url):
    """Create or load the study; refuse one that optimises something else or tried other
    values of a key (Optuna cannot mix those in one study)."""
    where = f"the study '{name}' in {redact(url)}"
    try:
        study = optuna.create_study(storage=store, study_name=name, direction=spec.direction, load_if_exists=True)
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

    return tqdm(total=total, initial=initial, unit="trial", desc="sweep", disable=None, file=sys.stderr)


# --- worker processes ------------------------------------------------------------------------


def die_with_parent():
    """Ask Linux to send SIGTERM to this worker when the sweep process dies, so a killed
    sweep leaves no orphans training on (their trials are found and run again)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def worker_process(plan, index, messages, parent):
    """A worker process; ``messages`` is the write end of its pipe to the sweep process."""
    die_with_parent()
    if os.getppid() != parent:  # the parent died before the request above took effect
        os._exit(143)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        work(plan, index, report=lambda number, state: messages.send(("trial", number, state)))
    except PlugnetError as exc:
        messages.send(("error", type(exc).__name__, str(exc)))
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        sys.exit(1)


def worker_error(kind, text):
    """The error a worker reported (by class name, as it crossed a process boundary) to
    raise here: a bad config stays a ConfigError."""
    return ConfigError(text) if kind in ("ConfigError", "MetricMissing") else PlugnetError(text)


def start_method():
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def run_processes(plan, jobs, bar, refresh):
    """``jobs`` worker processes; returns how many ended abnormally."""
    context = multiprocessing.get_context(start_method())
    pipes, processes = [], []
    for i in range(jobs):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=worker_process, args=(plan, i, sender, os.getpid()), name=f"plugnet-sweep-{i}"
        )
        process.start()
        sender.close()  # the worker holds the write end: end of file when it exits
        pipes.append(receiver)
        processes.append(process)
    errors = []
    try:
        # Wake on a message or an end of file, never on a timer: the sweep ends the moment
        # its last worker does.
        while pipes:
            for pipe in connection.wait(pipes):
                try:
                    message = pipe.recv()
                except EOFError:
                    pipes.remove(pipe)
                    continue
                if message[0] == "trial":
                    bar.update(1)
                    refresh()
                else:
                    errors.append(message)
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join()
    if errors:
        raise worker_error(*errors[0][1:])
    return sum(1 for p in processes if p.exitcode not in (0, None))


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
        lines.append(f"best: trial-{result.best.number:04d}  {result.metric} {result.best.value:.6g}  {params}")
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
    lines.append(f"compare the trials in TensorBoard's HParams tab: tensorboard --logdir {result.logdir}")
    return lines
