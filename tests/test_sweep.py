"""`plugnet sweep` / `framework.sweep`: trials as run directories, the study in Optuna's
storage, parallel and shared workers, resuming after a kill, pruning, HParams, bad input."""

import csv
import glob
import itertools
import json
import multiprocessing.forkserver
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import optuna
import pytest

import framework
from framework.cli import main
from framework.sweeps import sweep
from framework.sweeps.space import parse_grid_option, split_values
from framework.sweeps.storage import open_storage
from framework.sweeps.study import enqueue_grid, process_alive, recover_stale
from framework.sweeps.trial import OWNER, POINT, STOPPED, VOID

SUPPORT = os.path.join(os.path.dirname(__file__), "support")
TENSORBOARD = {"type": "tensorboard", "histogram_every": 0, "image_every": 0, "graph": False}


def tiny_config(logdir="runs/sweep", epochs=4, batch_size=50, **sweep_table):
    return {
        "seed": 0,
        "data": {"type": "moons", "n_samples": 200, "noise": 0.2, "test_fraction": 0.25},
        "model": {
            "layers": [
                {"type": "dense", "units": 4, "activation": "tanh"},
                {"type": "dense", "units": 2, "activation": "softmax"},
            ]
        },
        "train": {
            "loss": "cross_entropy",
            "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9},
            "epochs": epochs,
            "batch_size": batch_size,
            "metrics": ["accuracy"],
            "callbacks": [dict(TENSORBOARD)],
        },
        "logging": {"logdir": logdir},
        "sweep": {"metric": "test.accuracy", "direction": "maximize", **sweep_table},
    }


TINY_TOML = """
seed = 0
[data]
type = "moons"
n_samples = 200
noise = 0.2
test_fraction = 0.25
[model]
layers = [{{ type = "dense", units = 4, activation = "tanh" }}, {{ type = "dense", units = 2, activation = "softmax" }}]
[train]
loss = "cross_entropy"
optimizer = {{ type = "sgd", lr = 0.1, momentum = 0.9 }}
epochs = {epochs}
batch_size = {batch_size}
metrics = ["accuracy"]
callbacks = [{{ type = "tensorboard", histogram_every = 0, image_every = 0, graph = false }}]
[logging]
logdir = "{logdir}"
[sweep]
metric = "test.accuracy"
[sweep.params]
"model.layers.0.units" = {units}
"""


def write_toml(path, logdir, units, epochs=4, batch_size=50, extra=""):
    text = TINY_TOML.format(logdir=logdir, units=units, epochs=epochs, batch_size=batch_size)
    path.write_text(text + extra)
    return str(path)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def journal_study(path, name):
    return optuna.load_study(study_name=name, storage=open_storage(str(path)))


def completed_points(study):
    return [
        t.user_attrs[POINT]
        for t in study.get_trials()
        if t.state == optuna.trial.TrialState.COMPLETE
    ]


def summaries(logdir):
    return {
        path: (os.stat(path).st_mtime_ns, open(path).read())
        for path in glob.glob(os.path.join(logdir, "trial-*", "summary.json"))
    }


def cli(*args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "framework", "sweep", *args, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


# --- a small grid on two workers -------------------------------------------------------------


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("grid") / "sweep")
    config = tiny_config(
        logdir,
        epochs=8,
        batch_size=10,
        params={"model.layers.0.units": [2, 4], "train.optimizer.lr": [0.05, 0.5]},
    )
    return config, sweep(config, jobs=2)


def test_grid_with_two_workers_runs_each_point_once(grid_sweep):
    config, result = grid_sweep
    grid = [
        {"model.layers.0.units": u, "train.optimizer.lr": lr}
        for u, lr in itertools.product([2, 4], [0.05, 0.5])
    ]
    assert sorted(json.dumps(t.params, sort_keys=True) for t in result.trials) == sorted(
        json.dumps(p, sort_keys=True) for p in grid
    )
    assert [t.state for t in result.trials] == ["complete"] * 4
    study = journal_study(os.path.join(result.logdir, "study.journal"), result.study)
    owners = {t.user_attrs[OWNER]["pid"] for t in study.get_trials()}
    assert len(owners) == 2 and os.getpid() not in owners  # two worker processes shared the grid
    best = max(result.trials, key=lambda t: t.value)
    assert result.best == best and best.value == best.metrics["test.accuracy"]


def test_csv_rows_equal_each_trials_summary(grid_sweep):
    _, result = grid_sweep
    rows = read_csv(os.path.join(result.logdir, "sweep.csv"))
    assert list(rows[0]) == [
        "number",
        "state",
        "model.layers.0.units",
        "train.optimizer.lr",
        "train.loss",
        "train.accuracy",
        "test.loss",
        "test.accuracy",
        "seconds",
    ]
    assert len(rows) == 4
    for row in rows:
        trial_dir = os.path.join(result.logdir, f"trial-{int(row['number']):04d}")
        summary = json.load(open(os.path.join(trial_dir, "summary.json")))
        config = (
            json.load(open(os.path.join(trial_dir, "config.json")))
            if os.path.exists(os.path.join(trial_dir, "config.json"))
            else None
        )
        assert row["state"] == "complete"
        for section in ("train", "test"):
            for name, value in summary[section].items():
                assert float(row[f"{section}.{name}"]) == value
        assert float(row["seconds"]) >= summary["seconds"] > 0
        if config is not None:  # the trial ran the parameters its row names
            assert str(config["model"]["layers"][0]["units"]) == row["model.layers.0.units"]
            assert str(config["train"]["optimizer"]["lr"]) == row["train.optimizer.lr"]


def test_running_again_continues_without_rerunning(grid_sweep):
    config, result = grid_sweep
    before = summaries(result.logdir)
    again = sweep(config, jobs=2)
    assert [t.number for t in again.trials] == [t.number for t in result.trials]
    assert summaries(result.logdir) == before


def test_hparams_read_back_with_tensorboard(grid_sweep):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    from tensorboard.plugins.hparams import metadata

    _, result = grid_sweep
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(result.logdir)
    multiplexer.Reload()
    content = multiplexer.PluginRunToTagToContent("hparams")
    # One experiment for the whole directory: the sweep's, at its root.
    with_experiment = [run for run, tags in content.items() if metadata.EXPERIMENT_TAG in tags]
    assert with_experiment == ["."]
    experiment = metadata.parse_experiment_plugin_data(content["."][metadata.EXPERIMENT_TAG])
    domains = {
        h.name: sorted(v.number_value for v in h.domain_discrete.values)
        for h in experiment.hparam_infos
    }
    assert domains == {"model.layers.0.units": [2, 4], "train.optimizer.lr": [0.05, 0.5]}
    tags = [m.name.tag for m in experiment.metric_infos]
    assert tags == [
        "hparams/train/loss",
        "hparams/train/accuracy",
        "hparams/test/loss",
        "hparams/test/accuracy",
    ]
    # Each trial is one session whose hyper-parameters and metric values are the trial's.
    sessions = sorted(
        run for run, tags in content.items() if metadata.SESSION_START_INFO_TAG in tags
    )
    assert sessions == [f"trial-{t.number:04d}" for t in result.trials]
    for trial in result.trials:
        run = f"trial-{trial.number:04d}"
        start = metadata.parse_session_start_info_plugin_data(
            content[run][metadata.SESSION_START_INFO_TAG]
        )
        assert (
            start.hparams["model.layers.0.units"].number_value
            == trial.params["model.layers.0.units"]
        )
        assert (
            start.hparams["train.optimizer.lr"].number_value == trial.params["train.optimizer.lr"]
        )
        for tag in tags:
            (event,) = multiplexer.Scalars(run, tag)
            key = tag.removeprefix("hparams/").replace("/", ".")
            assert event.value == pytest.approx(trial.metrics[key], rel=1e-6)


# --- many processes, one study -------------------------------------------------------------


def test_sigkill_midway_then_rerun_completes_each_point_once(tmp_path):
    logdir = tmp_path / "killed"
    config = write_toml(
        tmp_path / "sweep.toml", logdir, "[2, 3, 4, 5, 6]", epochs=60, batch_size=10
    )
    process = cli(config)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            done = glob.glob(str(logdir / "trial-*" / "summary.json"))
            started = glob.glob(str(logdir / "trial-*" / "train"))
            if len(done) >= 2 and len(started) > len(done):  # two finished, one in the middle
                break
            assert process.poll() is None, process.communicate()
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    finished = summaries(logdir)
    assert len(finished) >= 2
    study = journal_study(logdir / "study.journal", "killed")
    assert any(t.state == optuna.trial.TrialState.RUNNING for t in study.get_trials())

    rerun = subprocess.run(
        [sys.executable, "-m", "framework", "sweep", config, "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr
    study = journal_study(logdir / "study.journal", "killed")
    points = completed_points(study)
    assert sorted(json.loads(p)["model.layers.0.units"] for p in points) == [2, 3, 4, 5, 6]
    interrupted = [t for t in study.get_trials() if t.user_attrs.get(VOID) == "interrupted"]
    assert interrupted and all(not (logdir / f"trial-{t.number:04d}").exists() for t in interrupted)
    after = summaries(logdir)
    assert {path: after[path] for path in finished} == finished  # finished trials untouched
    rows = read_csv(logdir / "sweep.csv")
    assert sorted(int(r["model.layers.0.units"]) for r in rows) == [2, 3, 4, 5, 6]
    assert {r["state"] for r in rows} == {"complete"}


def test_two_processes_sharing_storage_split_the_grid(tmp_path):
    storage = tmp_path / "shared.journal"
    units = [2, 3, 4, 5, 6, 7, 8, 9]
    configs = [
        write_toml(tmp_path / f"{name}.toml", tmp_path / name, str(units), epochs=10, batch_size=10)
        for name in "ab"
    ]
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([SUPPORT, os.environ.get("PYTHONPATH", "")]),
        PLUGNET_BARRIER_DIR=str(barrier),
        PLUGNET_BARRIER_COUNT="2",
    )
    processes = [
        cli(c, "--storage", str(storage), "--study", "shared", "--plugin", "sweep_barrier", env=env)
        for c in configs
    ]
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    ran = {
        name: sorted(glob.glob(str(tmp_path / name / "trial-*" / "summary.json"))) for name in "ab"
    }
    numbers = [os.path.basename(os.path.dirname(p)) for paths in ran.values() for p in paths]
    assert len(numbers) == len(set(numbers)) == len(units)  # no trial in both places
    study = journal_study(storage, "shared")
    assert sorted(json.loads(p)["model.layers.0.units"] for p in completed_points(study)) == units
    assert all(ran.values()), ran  # both processes took a share
    for name in "ab":  # each machine's sweep.csv lists the whole study
        assert len(read_csv(tmp_path / name / "sweep.csv")) == len(units)


def test_points_enqueued_twice_run_once(tmp_path):
    """Two processes starting together both enqueue the grid: the later copies are marked
    duplicates when taken, and only the first of each point runs."""
    from framework.sweeps.space import parse_sweep

    config = tiny_config(str(tmp_path / "dup"), params={"model.layers.0.units": [2, 3, 4]})

    _, spec = parse_sweep(config)
    storage = open_storage(str(tmp_path / "race.journal"))
    study = optuna.create_study(storage=storage, study_name="race", direction="maximize")
    enqueue_grid(study, spec)
    enqueue_grid(
        optuna.load_study(study_name="race", storage=storage), spec
    )  # nothing new: points exist
    assert len(study.get_trials()) == 3
    for params in spec.grid():  # what a second process racing the first would add
        study.enqueue_trial(dict(params), user_attrs={POINT: json.dumps(params, sort_keys=True)})
    result = sweep(
        config, storage=str(tmp_path / "race.journal"), study="race", logdir=str(tmp_path / "race")
    )
    assert sorted(t.params["model.layers.0.units"] for t in result.trials) == [2, 3, 4]
    voided = [t for t in study.get_trials() if t.user_attrs.get(VOID)]
    assert [t.user_attrs[VOID] for t in voided] == ["duplicate"] * 3
    assert [t.number for t in voided] == [3, 4, 5]


def test_stale_trials_are_recovered_by_heartbeat_or_dead_process(tmp_path):
    from framework.sweeps.space import parse_sweep
    from framework.sweeps.study import Plan

    base, spec = parse_sweep(tiny_config(params={"model.layers.0.units": [2, 3, 4]}))
    storage = open_storage(str(tmp_path / "stale.journal"))
    study = optuna.create_study(storage=storage, study_name="s")
    plan = Plan(
        config=base,
        spec=spec,
        logdir=str(tmp_path),
        storage=str(tmp_path / "stale.journal"),
        study="s",
    )
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    owners = [
        {
            "host": "another-host",
            "pid": 1,
            "start": None,
            "beat": time.time() - 1000,
        },  # silent for long
        {"host": "another-host", "pid": 1, "start": None, "beat": time.time()},  # alive elsewhere
        {
            "host": socket.gethostname(),
            "pid": int(dead.stdout),
            "start": None,
            "beat": time.time(),
        },  # gone
    ]
    for units, owner in zip([2, 3, 4], owners, strict=True):
        point = json.dumps({"model.layers.0.units": units})
        study.enqueue_trial(
            {"model.layers.0.units": units}, user_attrs={POINT: point, OWNER: owner}
        )
        trial = study.ask()
        (tmp_path / f"trial-{trial.number:04d}").mkdir()
    assert recover_stale(study, storage, plan) == 2
    states = {t.number: (t.state.name, t.user_attrs.get(VOID)) for t in study.get_trials()}
    assert states[0] == ("FAIL", "interrupted") and states[2] == ("FAIL", "interrupted")
    assert states[1] == ("RUNNING", None)
    waiting = [
        json.loads(t.user_attrs[POINT]) for t in study.get_trials() if t.state.name == "WAITING"
    ]
    assert waiting == [{"model.layers.0.units": 2}, {"model.layers.0.units": 4}]
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith("trial-")) == ["trial-0001"]


# --- how workers start, and stopping them ---------------------------------------------------


def test_workers_start_without_forking_this_process(tmp_path, monkeypatch, recwarn):
    """Workers come from a fork server: this process, which holds threads (here one of a
    caller's own), never forks (Python 3.12+ warns that such a child may deadlock)."""

    def forbidden():
        raise AssertionError("the sweep process forked")

    monkeypatch.setattr(os, "fork", forbidden)
    idle = threading.Event()
    thread = threading.Thread(target=idle.wait)
    thread.start()
    try:
        result = sweep(
            tiny_config(str(tmp_path / "server"), params={"model.layers.0.units": [2, 3]}), jobs=2
        )
    finally:
        idle.set()
        thread.join()
    assert [t.state for t in result.trials] == ["complete", "complete"]
    study = journal_study(os.path.join(result.logdir, "study.journal"), result.study)
    owners = {t.user_attrs[OWNER]["pid"] for t in study.get_trials()}
    assert len(owners) == 2 and os.getpid() not in owners
    assert not [w for w in recwarn if "fork" in str(w.message)]
    server = getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)  # CPython's
    if server is not None:  # the server itself forks with no thread but its own
        with open(f"/proc/{server}/status") as f:
            assert "Threads:\t1\n" in f.read()


def wait_for(condition, process, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize(("jobs", "signum"), [(2, signal.SIGTERM), (1, signal.SIGINT)])
def test_a_signal_stops_the_trials_and_the_same_command_finishes_them(tmp_path, jobs, signum):
    logdir = tmp_path / "stopped"
    config = write_toml(tmp_path / "sweep.toml", logdir, "[2, 3, 4]", epochs=150, batch_size=10)
    command = [
        sys.executable,
        "-W",
        "always::DeprecationWarning",
        "-m",
        "framework",
        "sweep",
        config,
        "--quiet",
    ]
    command += ["--jobs", str(jobs)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(glob.glob(str(logdir / "trial-*" / "train"))) >= jobs, process)
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    name = signal.Signals(signum).name
    assert process.returncode == 128 + signum, err
    assert err.count("\n") == 1 and err.startswith(f"plugnet: sweep stopped ({name}): trial-"), err
    assert err.endswith("stopped; run the same command again to finish them\n")
    rows = read_csv(logdir / "sweep.csv")
    stopped = [int(r["number"]) for r in rows if r["state"] == "stopped"]
    assert 1 <= len(stopped) <= jobs and all(f"trial-{n:04d}" in err for n in stopped)
    study = journal_study(logdir / "study.journal", "stopped")
    for number in stopped:  # left for the next run, by a worker that stopped it and is gone
        trial = study.trials[number]
        assert trial.state == optuna.trial.TrialState.RUNNING and trial.user_attrs[STOPPED] == name
        assert not process_alive(trial.user_attrs[OWNER]["pid"], trial.user_attrs[OWNER]["start"])

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "multi-threaded" not in err + rerun.stderr  # Python 3.12+'s warning about fork()
    rows = read_csv(logdir / "sweep.csv")
    assert sorted(int(r["model.layers.0.units"]) for r in rows) == [2, 3, 4]
    assert {r["state"] for r in rows} == {"complete"}
    study = journal_study(logdir / "study.journal", "stopped")
    assert sorted(json.loads(p)["model.layers.0.units"] for p in completed_points(study)) == [
        2,
        3,
        4,
    ]
    for number in stopped:  # run again under another number; what it had written is gone
        assert study.trials[number].user_attrs[VOID] == "interrupted"
        assert not (logdir / f"trial-{number:04d}").exists()


# --- samplers and pruning --------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_samplers_draw_from_ranges_and_keep_the_budget(tmp_path, sampler):
    params = {
        "train.optimizer.lr": {"low": 0.01, "high": 1.0, "log": True},
        "model.layers.0.units": {"low": 2, "high": 6},
    }
    config = tiny_config(
        str(tmp_path / sampler), epochs=2, sampler=sampler, trials=3, params=params
    )
    result = framework.sweep(config)  # the package-level Python API
    assert len(result.trials) == 3 and {t.state for t in result.trials} == {"complete"}
    for trial in result.trials:
        assert 0.01 <= trial.params["train.optimizer.lr"] <= 1.0
        units = trial.params["model.layers.0.units"]
        assert isinstance(units, int) and 2 <= units <= 6
    assert len({t.params["train.optimizer.lr"] for t in result.trials}) == 3
    assert len(sweep(config).trials) == 3  # the budget is the study's, not each run's
    assert len(sweep(config, trials=4).trials) == 4


def test_median_pruner_stops_a_trial_that_is_clearly_behind(tmp_path):
    config = tiny_config(
        str(tmp_path / "prune"),
        epochs=10,
        metric="test.loss",
        direction="minimize",
        pruner={"type": "median", "n_startup_trials": 1},
        params={"train.optimizer.lr": [0.5, 1e-6]},
    )
    result = sweep(config)
    good, bad = sorted(result.trials, key=lambda t: t.number)
    assert good.state == "complete" and bad.state == "pruned"
    assert json.load(open(os.path.join(good.logdir, "summary.json")))["epochs"] == 10
    assert json.load(open(os.path.join(bad.logdir, "summary.json")))["epochs"] <= 3  # stopped early
    assert [r["state"] for r in read_csv(os.path.join(result.logdir, "sweep.csv"))] == [
        "complete",
        "pruned",
    ]
    assert result.best == good
    study = journal_study(os.path.join(result.logdir, "study.journal"), result.study)
    assert all(trial.intermediate_values for trial in study.get_trials())  # what the pruner read


def test_without_a_pruner_no_epoch_is_reported_to_optuna(tmp_path):
    # Each report is a write and an fsync of the journal, which nothing would read.
    config = tiny_config(
        str(tmp_path / "plain"), epochs=5, params={"train.optimizer.lr": [0.5, 0.1]}
    )
    result = sweep(config)
    study = journal_study(os.path.join(result.logdir, "study.journal"), result.study)
    trials = study.get_trials()
    assert len(trials) == 2 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert all(t.intermediate_values == {} and t.value is not None for t in trials)


# --- the command line ----------------------------------------------------------------------


def test_grid_option_values_are_typed_like_set(tmp_path, capsys):
    config = write_toml(tmp_path / "s.toml", tmp_path / "g", "[2]", epochs=2)
    code = main(["sweep", config, "--grid", "train.optimizer.lr=1,0.5", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = read_csv(tmp_path / "g" / "sweep.csv")
    assert sorted(r["train.optimizer.lr"] for r in rows) == [
        "0.5",
        "1.0",
    ]  # 1 is a float for a float key
    assert "best: trial-" in out and f"tensorboard --logdir {tmp_path / 'g'}" in out
    assert out.index("test.accuracy") < out.index("best:")  # the table comes first


def test_tables_as_values_are_tried_whole(tmp_path):
    optimizers = [{"type": "adam", "lr": 0.01}, {"type": "sgd", "lr": 0.5}]
    config = tiny_config(str(tmp_path / "opt"), epochs=2, params={"train.optimizer": optimizers})
    result = sweep(config)
    assert [t.params["train.optimizer"] for t in result.trials] == optimizers
    for trial in result.trials:  # the table replaced the config's optimizer, momentum and all
        assert (
            json.load(open(os.path.join(trial.logdir, "config.json")))["train"]["optimizer"]
            == trial.params["train.optimizer"]
        )
    rows = read_csv(os.path.join(result.logdir, "sweep.csv"))
    assert [json.loads(r["train.optimizer"]) for r in rows] == optimizers


def test_split_values_keeps_brackets_and_quotes_whole():
    assert split_values("1, [2, 3], {a = 1, b = 2}, 'x,y'") == [
        "1",
        "[2, 3]",
        "{a = 1, b = 2}",
        "'x,y'",
    ]
    assert parse_grid_option("model.layers.0.activation=tanh,relu") == (
        "model.layers.0.activation",
        ["tanh", "relu"],
    )
    assert parse_grid_option("train.l2=0,1e-3") == ("train.l2", [0, 0.001])


BAD_SWEEPS = [
    (
        ["--grid", "model.layers.0.unitz=2,3"],
        "unknown sweep key 'model.layers.0.unitz'; did you mean 'model.layers.0.units'?",
    ),
    (["--grid", "train.optimizer.momentun=0.1,0.5"], "did you mean 'train.optimizer.momentum'?"),
    (["--grid", "model.layers.5.units=2"], "unknown sweep key 'model.layers.5.units'"),
    (["--grid", "model.layers.0.units="], "--grid model.layers.0.units: the value list is empty"),
    (["--grid", "model.layers.0.units=0,2"], "sweep value model.layers.0.units = 0: layer 'dense'"),
    (
        ["--grid", "model.layers.0.activation=tanh,rleu"],
        "unknown activation 'rleu'; did you mean 'relu'?",
    ),
    ('"train.l2" = []', "sweep key 'train.l2': the value list is empty"),
    (
        '"train.l2" = { low = 0.1, high = 0.01 }',
        "sweep key 'train.l2': low (0.1) must be less than high (0.01)",
    ),
    (
        '"train.l2" = { low = 0.1, hihg = 1.0 }',
        "a range takes low, high and log, not 'hihg'; did you mean 'high'?",
    ),
    (
        ["--set", "sweep.metric=test.f1"],
        "sweep metric 'test.f1' is not in the runs' summary.json; it has: train.loss, train.accuracy, test.loss, test.accuracy",
    ),
    (["--set", "sweep.sampler=grib"], "unknown sweep sampler 'grib'; did you mean 'grid'?"),
    (["--set", "sweep.pruner=medain"], "unknown sweep pruner 'medain'; did you mean 'median'?"),
    (
        ["--set", "sweep.trails=3"],
        "unknown config key 'sweep.trails'; did you mean 'sweep.trials'?",
    ),
    (["--jobs", "0"], "--jobs must be a whole number of workers, at least 1; got 0"),
    (
        ["--storage", "postgresql://me:secret@127.0.0.1:9/db"],
        "storage 'postgresql://me:***@127.0.0.1:9/db'",
    ),
    (["--storage", "/no/such/dir/study.journal"], "directory /no/such/dir does not exist"),
]


@pytest.mark.parametrize(("args", "message"), BAD_SWEEPS)
def test_bad_input_is_one_message_exit_2_and_writes_nothing(tmp_path, capsys, args, message):
    extra = args + "\n" if isinstance(args, str) else ""  # more [sweep.params] lines
    config = write_toml(tmp_path / "s.toml", tmp_path / "never", "[2, 3]", epochs=1, extra=extra)
    code = main(["sweep", config, "--quiet", *([] if extra else args)])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("plugnet: error: ") and err.count("\n") == 1, err
    assert message in err
    assert "secret" not in err and "Traceback" not in err
    assert not (tmp_path / "never").exists()


def test_ray_without_ray_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    config = write_toml(tmp_path / "s.toml", tmp_path / "never", "[2, 3]", epochs=1)
    assert main(["sweep", config, "--ray", "auto", "--quiet"]) == 2
    assert 'pip install "plugnet[ray]"' in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


# --- real servers: PostgreSQL and Ray -------------------------------------------------------


def postgres_binary(name):
    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(directory, name)):
            return os.path.join(directory, name)
    return shutil.which(name)


@pytest.fixture
def postgres_url():
    """A throw-away PostgreSQL server on loopback, from Debian's binaries."""
    initdb, pg_ctl = postgres_binary("initdb"), postgres_binary("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed")
    pytest.importorskip("psycopg")
    run_as, user = [], None
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser to start the server as postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    root = tempfile.mkdtemp(prefix="plugnet-pg-")
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = os.path.join(root, "data")
    subprocess.run(
        [*run_as, initdb, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [
            *run_as,
            pg_ctl,
            "-D",
            data,
            "-l",
            os.path.join(root, "log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run_as, pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


def test_postgresql_storage_shared_by_two_workers(tmp_path, postgres_url):
    import psycopg

    config = tiny_config(str(tmp_path / "pg"), params={"model.layers.0.units": [2, 3, 4]})
    result = sweep(config, jobs=2, storage=postgres_url, study="pg")
    assert sorted(t.params["model.layers.0.units"] for t in result.trials) == [2, 3, 4]
    assert {t.state for t in result.trials} == {"complete"}
    assert result.storage == postgres_url
    with psycopg.connect(postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM trials JOIN studies USING (study_id) WHERE study_name = 'pg' AND state = 'COMPLETE'"
        )
        assert cursor.fetchone()[0] == 3
    again = sweep(config, jobs=2, storage=postgres_url, study="pg")
    assert len(again.trials) == 3


def test_ray_local_cluster_runs_the_trials(tmp_path):
    pytest.importorskip("ray")
    config = tiny_config(str(tmp_path / "ray"), params={"model.layers.0.units": [2, 3]})
    result = sweep(config, ray="local", jobs=2)
    assert sorted(t.params["model.layers.0.units"] for t in result.trials) == [2, 3]
    assert {t.state for t in result.trials} == {"complete"}
    study = journal_study(os.path.join(result.logdir, "study.journal"), result.study)
    assert os.getpid() not in {
        t.user_attrs[OWNER]["pid"] for t in study.get_trials()
    }  # Ray's workers ran them


def test_a_listing_shows_each_point_once_while_a_duplicate_awaits_its_mark():
    from framework.sweeps.study import counting, enqueue

    study = optuna.create_study()
    for params in ({"units": 2}, {"units": 3}, {"units": 2}):  # two processes enqueued 2 twice
        enqueue(study, params)
    assert [t.number for t in counting(study.get_trials())] == [0, 1]


# --- the trials' data, loaded once ------------------------------------------------------------


def counted_config(tmp_path, params):
    config = tiny_config(str(tmp_path / "sweep"), epochs=2, batch_size=30, params=params)
    config["plugins"] = ["counted_dataset"]
    config["data"] = {"type": "counted_blobs", "log": str(tmp_path / "loads.txt")}
    return config


def loads(tmp_path):
    return (tmp_path / "loads.txt").read_text().split()


@pytest.mark.parametrize("jobs", [1, 2])
def test_trials_that_cannot_differ_in_data_share_one_load(tmp_path, jobs):
    result = sweep(counted_config(tmp_path, {"model.layers.0.units": [2, 3, 4]}), jobs=jobs)
    assert [t.state for t in result.trials] == ["complete"] * 3
    assert loads(tmp_path) == [str(os.getpid())]  # once, here, before any worker started
    # Each trial trained on what its own load would have given: the same run, alone.
    alone = tiny_config(str(tmp_path / "alone"), epochs=2, batch_size=30)
    alone["plugins"], alone["data"] = ["counted_dataset"], counted_config(tmp_path, {})["data"]
    alone["model"]["layers"][0]["units"] = 3
    del alone["sweep"]
    summary = framework.run(alone)
    trial = next(t for t in result.trials if t.params["model.layers.0.units"] == 3)
    assert trial.metrics["test.accuracy"] == summary["test"]["accuracy"]
    assert trial.metrics["train.loss"] == summary["train"]["loss"]


@pytest.mark.parametrize("key, values", [("data.spread", [0.5, 1.5]), ("seed", [1, 2])])
def test_trials_that_may_differ_in_data_load_their_own(tmp_path, key, values):
    result = sweep(counted_config(tmp_path, {key: values}), jobs=1)
    assert [t.state for t in result.trials] == ["complete"] * 2
    assert len(loads(tmp_path)) == 2


def test_data_that_fails_to_load_fails_each_trial_as_before(tmp_path):
    config = counted_config(tmp_path, {"model.layers.0.units": [2, 3]})
    config["data"]["log"] = str(tmp_path / "missing" / "loads.txt")  # cannot be written
    result = sweep(config, jobs=1)
    assert [t.state for t in result.trials] == ["fail", "fail"]
