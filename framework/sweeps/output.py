"""What a sweep leaves behind: its trials as results, ``sweep.csv``, the table printed at the
end, and the experiment-level HParams summary that makes TensorBoard show every trial in one
table.

Each trial directory is one HParams session, written by the trial's reporter
(`framework.sweeps.trial`; the trials' ``tensorboard`` callbacks leave their own off): the
swept keys as hyper-parameters, the final metrics as scalars tagged ``hparams/train/loss``,
``hparams/test/accuracy`` ....  The experiment summary written here, in the sweep's own
directory, names the swept keys with their domains and those metric tags.
"""

import csv
import io
import json
import numbers
import os
import time
from collections.abc import Mapping

import attrs
from optuna.trial import TrialState
from tensorboardX.proto import api_pb2
from tensorboardX.proto.event_pb2 import Event

from framework.config import flatten_config
from framework.event_files import replace_event_file
from framework.storage import atomic_write
from framework.summaries import experiment_value, metric_tag
from framework.sweeps.space import Choice
from framework.sweeps.study import counting
from framework.sweeps.trial import ERROR, POINT, SECONDS, STOPPED, SUMMARY

EXPERIMENT_SUFFIX = ".sweep"
STATES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "fail",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}


@attrs.frozen
class TrialResult:
    """One trial of a sweep: ``state`` is complete, pruned, fail, running, waiting or
    stopped (by a signal: the sweep run again runs it again);
    ``metrics`` its final ``train.*`` / ``test.*`` values; ``value`` the sweep metric's."""

    number: int
    state: str
    params: dict
    metrics: dict
    value: float | None
    seconds: float | None
    logdir: str
    error: str | None = None


@attrs.frozen
class SweepResult:
    """What `framework.sweep` returns: every counting trial of the study (by number), the
    best complete one, and where things are."""

    trials: list
    best: TrialResult | None
    metric: str
    direction: str
    logdir: str
    storage: str
    study: str
    keys: list
    interrupted_workers: int = 0

    def ranked(self):
        return rank(self.trials, self.direction)


def results(study, spec, logdir):
    """`TrialResult` of each counting trial of ``study``, by number."""
    found = []
    for trial in counting(study.get_trials(deepcopy=False)):
        attrs_ = trial.user_attrs
        params = json.loads(attrs_[POINT]) if POINT in attrs_ else dict(trial.params)
        summary = attrs_.get(SUMMARY, {})
        metrics = {k: v for k, v in summary.items() if k.startswith(("train.", "test."))}
        value = summary.get(
            spec.metric, trial.value if trial.state == TrialState.COMPLETE else None
        )
        found.append(
            TrialResult(
                number=trial.number,
                state="stopped"
                if STOPPED in attrs_
                else STATES.get(trial.state, trial.state.name.lower()),
                params=params,
                metrics=metrics,
                value=value,
                seconds=attrs_.get(SECONDS),
                logdir=os.path.join(logdir, f"trial-{trial.number:04d}"),
                error=attrs_.get(ERROR),
            )
        )
    return found


def rank(trials, direction):
    """Complete trials best first, then pruned ones by their last value, then the rest."""
    order = {"complete": 0, "pruned": 1}

    def key(trial):
        value = trial.value
        has = isinstance(value, numbers.Real) and value == value
        score = (value if direction == "minimize" else -value) if has else 0.0
        return (order.get(trial.state, 2), not has, score, trial.number)

    return sorted(trials, key=key)


def best_of(trials, direction):
    ranked = [t for t in rank(trials, direction) if t.state == "complete" and t.value is not None]
    return ranked[0] if ranked else None


def text(value):
    if value is None:
        return ""
    if isinstance(value, (Mapping, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def metric_columns(spec, trials):
    columns = list(spec.metrics)
    for trial in trials:
        columns += [k for k in trial.metrics if k not in columns]
    return columns


def write_csv(path, spec, trials):
    """``sweep.csv``: number, state, each parameter, each final metric, seconds."""
    metrics = metric_columns(spec, trials)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["number", "state", *spec.keys, *metrics, "seconds"])
    for trial in trials:
        writer.writerow(
            [trial.number, trial.state]
            + [text(trial.params.get(k)) for k in spec.keys]
            + [text(trial.metrics.get(k)) for k in metrics]
            + [text(trial.seconds)]
        )
    atomic_write(path, lambda f: f.write(buffer.getvalue().encode()))


def short(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return text(value)


def format_table(result):
    """The trials sorted by the metric, as aligned text."""
    keys = result.keys
    header = ["trial", "state", *keys, result.metric, "seconds"]
    rows = [
        [
            f"{t.number:04d}",
            t.state,
            *(short(t.params.get(k)) for k in keys),
            short(t.value),
            short(t.seconds),
        ]
        for t in result.ranked()
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


# --- the HParams experiment ------------------------------------------------------------------


def value_type(values):
    if all(isinstance(v, bool) for v in values):
        return api_pb2.DATA_TYPE_BOOL
    if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        return api_pb2.DATA_TYPE_FLOAT64
    if all(isinstance(v, str) for v in values):
        return api_pb2.DATA_TYPE_STRING
    return None


def discrete_info(name, values):
    values = list(dict.fromkeys(values))
    kind = value_type(values)
    info = api_pb2.HParamInfo(name=name, display_name=name)
    if kind is None:  # mixed kinds: no one domain TensorBoard could filter on
        return info
    info.type = kind
    for value in values:
        item = info.domain_discrete.values.add()
        if kind == api_pb2.DATA_TYPE_BOOL:
            item.bool_value = value
        elif kind == api_pb2.DATA_TYPE_FLOAT64:
            item.number_value = float(value)
        else:
            item.string_value = value
    return info


def hparam_infos(spec):
    """One `HParamInfo` per swept key (per leaf of a table-valued key, as runs flatten it):
    the values of a list, the interval of a range."""
    infos = []
    for param in spec.params:
        if not isinstance(param, Choice):
            info = api_pb2.HParamInfo(
                name=param.key, display_name=param.key, type=api_pb2.DATA_TYPE_FLOAT64
            )
            info.domain_interval.min_value = float(param.low)
            info.domain_interval.max_value = float(param.high)
            infos.append(info)
        elif param.composite:
            leaves = {}
            for value in param.values:
                flat = (
                    flatten_config(value, f"{param.key}.")
                    if isinstance(value, (Mapping, list))
                    else {param.key: value}
                )
                for key, leaf in flat.items():
                    leaves.setdefault(key, []).append(leaf)
            infos += [discrete_info(key, values) for key, values in leaves.items()]
        else:
            infos.append(discrete_info(param.key, param.values))
    return infos


def experiment_summary(spec):
    experiment = api_pb2.Experiment(
        description=f"plugnet sweep: {spec.direction} {spec.metric}",
        hparam_infos=hparam_infos(spec),
        metric_infos=[
            api_pb2.MetricInfo(
                name=api_pb2.MetricName(tag=metric_tag(key)), display_name=key.replace(".", "/")
            )
            for key in spec.metrics
        ],
    )
    return experiment_value(experiment)


def write_experiment(logdir, spec):
    """The experiment summary in ``LOGDIR``'s own event file (replacing an earlier one)."""
    event = Event(summary=experiment_summary(spec), wall_time=time.time())
    replace_event_file(logdir, [event], EXPERIMENT_SUFFIX)
