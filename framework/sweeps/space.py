"""What a sweep varies: the ``[sweep]`` table and ``--grid`` options, checked against the
config they vary before anything is written.

Keys are the dotted keys of ``--set`` (``train.optimizer.lr``, ``model.layers.0.units``); a
list gives the values to try, ``{ low, high, log }`` a range.  Every value is tried on a copy
of the config and the component it lands in is made, so a bad value fails here, naming the
key, and not in the middle of a sweep.
"""

import copy
import itertools
import json
import numbers
from collections.abc import Mapping

import attrs

from framework.config import SCHEMA, check_config, flatten_config, parse_value, set_key
from framework.errors import ConfigError, PlugnetError, did_you_mean
from framework.registry import load_plugins, parameter_names, registry, resolve

SWEEP_KEYS = ("metric", "direction", "sampler", "trials", "pruner", "params")
SAMPLERS = ("grid", "random", "tpe")
PRUNERS = {"none": (), "median": ("n_startup_trials", "n_warmup_steps", "interval_steps")}
DIRECTIONS = ("maximize", "minimize")
RANGE_KEYS = ("low", "high", "log")
DEFAULT_TRIALS = 10
# Summary values a sweep may minimise besides the metrics: they are not model metrics.
SUMMARY_NUMBERS = ("steps", "epochs", "seconds")
LOWER_IS_BETTER = ("loss", "mse", "mae", "error", "seconds", "steps", "epochs")
# Which registry kind a config key holding a component (or a list of them) names.
COMPONENT_KINDS = {
    "data": "datasets",
    "layers": "layers",
    "optimizer": "optimizers",
    "loss": "losses",
    "metrics": "metrics",
    "callbacks": "callbacks",
    "activation": "activations",
}


@attrs.frozen
class Choice:
    """A parameter tried at each of ``values``.  Tables and lists among them are kept in the
    study as JSON text (Optuna's categorical values are scalars)."""

    key: str
    values: tuple

    @property
    def composite(self):
        return any(isinstance(v, (Mapping, list)) for v in self.values)


@attrs.frozen
class Range:
    """A parameter drawn from ``[low, high]`` (log-uniformly with ``log``); integers when
    the key holds an integer."""

    key: str
    low: float
    high: float
    log: bool = False
    integer: bool = False


@attrs.frozen
class SweepSpec:
    """A checked ``[sweep]`` table."""

    metric: str
    direction: str
    sampler: str
    trials: int
    pruner: dict
    params: tuple
    metrics: tuple  # the summary.json keys the trials will have, as ``train.loss``

    @property
    def keys(self):
        return [p.key for p in self.params]

    def grid(self):
        """Every combination of the parameters' values, as ``{key: value}``, in order."""
        return [
            dict(zip(self.keys, combo, strict=True))
            for combo in itertools.product(*(p.values for p in self.params))
        ]


def point_key(params):
    """The canonical text of a parameter combination: how trials are told apart."""
    return json.dumps(params, sort_keys=True)


# --- --grid ----------------------------------------------------------------------------------


def split_values(text):
    """``"1, [2, 3], 'a,b'"`` -> ``["1", "[2, 3]", "'a,b'"]``: commas inside brackets,
    braces or quotes belong to their value."""
    parts, current, depth, quote = [], [], 0, None
    for char in text:
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return parts


def parse_grid_option(option):
    """``KEY=V1,V2,...`` -> ``(KEY, [values])``, each value typed as ``--set`` types it."""
    key, sep, text = option.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--grid expects KEY=V1,V2,..., got '{option}'")
    items = split_values(text)
    if items == [""]:
        raise ConfigError(f"--grid {key}: the value list is empty")
    if "" in items:
        raise ConfigError(f"--grid {key}: empty value in '{text}'")
    return key, [parse_value(item) for item in items]


def grid_params(grid):
    """``--grid`` options (strings) or a ``{key: values}`` mapping, as one mapping."""
    if grid is None:
        return {}
    if isinstance(grid, Mapping):
        return {str(k): (list(v) if isinstance(v, (list, tuple)) else v) for k, v in grid.items()}
    params = {}
    for option in grid:
        key, values = parse_grid_option(option)
        params[key] = values
    return params


# --- the config's keys -----------------------------------------------------------------------


def component_kind(path):
    """The registry kind of the component at ``path`` (a list of key parts), or None."""
    for part in reversed(path):
        if isinstance(part, str) and not part.isdigit():
            if part.endswith("_init") or part == "initializer":
                return "initializers"
            return COMPONENT_KINDS.get(part)
    return None


def component_parameters(kind, node):
    """The parameter names of the component ``node`` (a name or a table with a type)."""
    name = (
        node if isinstance(node, str) else node.get("type") if isinstance(node, Mapping) else None
    )
    if kind is None or not isinstance(name, str):
        return None
    try:
        factory = registry().entry(kind, name).factory
    except PlugnetError:
        return None
    return parameter_names(factory)


def known_keys(config):
    """Every key a sweep may set: the config's leaves, the schema's keys, and the parameters
    of each component the config names."""
    keys = set(flatten_config(config))

    def walk(node, path, schema):
        if isinstance(schema, Mapping):
            keys.update(".".join([*path, k]) for k in schema if not isinstance(schema[k], Mapping))
        if path and not isinstance(node, list):
            names = component_parameters(component_kind(path), node)
            keys.update(".".join([*path, n]) for n in names or ())
        if isinstance(node, Mapping):
            for key, child in node.items():
                walk(
                    child,
                    [*path, str(key)],
                    schema.get(key) if isinstance(schema, Mapping) else None,
                )
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, [*path, str(index)], None)

    walk(config, [], SCHEMA)
    keys.discard("sweep")
    return sorted(k for k in keys if not k.startswith("sweep."))


def unknown_key(config, key, why=None):
    message = f"unknown sweep key '{key}'"
    if why:
        message += f" ({why})"
    return ConfigError(message + did_you_mean(key, known_keys(config), cutoff=0.5))


def check_key(config, key):
    """Raise `ConfigError` unless ``key`` names a value of ``config``, a key the schema knows
    or a parameter of the component it lands in."""
    parts = key.split(".")
    node, schema = config, SCHEMA
    for depth, part in enumerate(parts):
        here = ".".join(parts[: depth + 1])
        last = depth == len(parts) - 1
        if isinstance(node, list):
            try:
                index = int(part)
            except ValueError:
                raise unknown_key(
                    config, key, f"'{'.'.join(parts[:depth])}' is a list: use an index"
                ) from None
            if not -len(node) <= index < len(node):
                raise unknown_key(config, key, f"'{here}': the list has {len(node)} items")
            node, schema = node[index], None
            continue
        if isinstance(node, str) and last:  # a component given by name gains a parameter
            names = component_parameters(component_kind(parts[:depth]), node)
            if names is None or part in names:
                return
            raise unknown_key(config, key)
        if not isinstance(node, Mapping):
            raise unknown_key(config, key, f"'{'.'.join(parts[:depth])}' is not a table")
        if part in node:
            node = node[part]
            schema = schema.get(part) if isinstance(schema, Mapping) else None
            continue
        if last and isinstance(schema, Mapping) and part in schema:
            return
        if last and "type" in node:
            names = component_parameters(component_kind(parts[:depth]), node)
            if names is None or part in names:
                return
        raise unknown_key(config, key)


def lookup(config, key):
    """The value at dotted ``key``, or None where it is not set."""
    node = config
    for part in key.split("."):
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, ValueError, IndexError, TypeError):
            return None
    return node


def typed(config, key, value):
    """``value`` typed as the key's current value is: an integer given for a float key is a
    float (``--grid train.optimizer.lr=1,0.1`` tries 1.0 and 0.1)."""
    current = lookup(config, key)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def check_value(config, key, value):
    """Try ``key = value`` on a copy of ``config``: the config must still check and the
    component the key lands in must accept it."""
    trial = copy.deepcopy(config)
    try:
        set_key(trial, key, value)
        check_config(trial)
        parts = key.split(".")
        # The innermost component on the key's path is the one whose parameter changed.
        for depth in range(len(parts), 0, -1):
            path = parts[:depth]
            kind = component_kind(path)
            node = lookup(trial, ".".join(path))
            if kind and (isinstance(node, str) or (isinstance(node, Mapping) and "type" in node)):
                if kind != "callbacks":  # callbacks may open files when made
                    resolve(kind, node)
                break
    except PlugnetError as exc:
        raise ConfigError(f"sweep value {key} = {value!r}: {exc}") from None


# --- the [sweep] table -----------------------------------------------------------------------


def is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def parse_param(config, key, spec):
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ConfigError(f"sweep key '{key}': the value list is empty")
        values = tuple(typed(config, key, v) for v in spec)
        for value in values:
            check_value(config, key, value)
        return Choice(key, values)
    if isinstance(spec, Mapping):
        for name in spec:
            if name not in RANGE_KEYS:
                hint = did_you_mean(name, RANGE_KEYS)
                raise ConfigError(
                    f"sweep key '{key}': a range takes low, high and log, not '{name}'{hint}"
                )
        if "low" not in spec or "high" not in spec:
            raise ConfigError(f"sweep key '{key}': a range needs both low and high")
        low, high, log = spec["low"], spec["high"], spec.get("log", False)
        if not (is_number(low) and is_number(high)):
            raise ConfigError(
                f"sweep key '{key}': low and high must be numbers, got {low!r} and {high!r}"
            )
        if not isinstance(log, bool):
            raise ConfigError(f"sweep key '{key}': log must be true or false, got {log!r}")
        if low >= high:
            raise ConfigError(f"sweep key '{key}': low ({low}) must be less than high ({high})")
        if log and low <= 0:
            raise ConfigError(f"sweep key '{key}': a log range needs low > 0, got {low}")
        current = lookup(config, key)
        integer = (isinstance(current, int) and not isinstance(current, bool)) or (
            current is None and isinstance(low, int) and isinstance(high, int)
        )
        if integer and not (float(low).is_integer() and float(high).is_integer()):
            raise ConfigError(f"sweep key '{key}' holds an integer: low and high must be integers")
        low, high = (int(low), int(high)) if integer else (float(low), float(high))
        for value in (low, high):
            check_value(config, key, value)
        return Range(key, low, high, log, integer)
    raise ConfigError(
        f"sweep key '{key}': give a list of values or a range {{ low = ..., high = ... }}, got {spec!r}"
    )


def held_out(config):
    """Whether runs of ``config`` will have held-out data (a ``test`` summary)."""
    try:
        dataset = resolve("datasets", config["data"])
    except PlugnetError:
        return True
    fraction = getattr(dataset, "test_fraction", None)
    return fraction is None or fraction > 0


def summary_metrics(config):
    """The metric keys of the summary.json of a run of ``config``: ``train.loss``,
    ``train.accuracy``, then the same for ``test`` where data are held out."""
    names = ["loss"]
    for spec in config.get("train", {}).get("metrics", []):
        name = (
            spec
            if isinstance(spec, str)
            else spec.get("type")
            if isinstance(spec, Mapping)
            else None
        )
        if isinstance(name, str) and name not in names:
            names.append(name)
    sections = ("train", "test") if held_out(config) else ("train",)
    return tuple(f"{section}.{name}" for section in sections for name in names)


def parse_pruner(value):
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, Mapping) or not isinstance(value.get("type"), str):
        raise ConfigError(
            f"sweep pruner must be a name ({', '.join(PRUNERS)}) or a table with a type, got {value!r}"
        )
    kind = value["type"]
    if kind not in PRUNERS:
        hint = did_you_mean(kind, PRUNERS)
        raise ConfigError(
            f"unknown sweep pruner '{kind}'{hint} Known pruners: {', '.join(PRUNERS)}"
        )
    for name, option in value.items():
        if name == "type":
            continue
        if name not in PRUNERS[kind]:
            known = ", ".join(PRUNERS[kind]) or "none"
            raise ConfigError(f"sweep pruner '{kind}' has no option '{name}'; its options: {known}")
        if not isinstance(option, int) or isinstance(option, bool) or option < 0:
            raise ConfigError(
                f"sweep pruner option '{name}' must be an integer >= 0, got {option!r}"
            )
    return dict(value)


def choose(what, value, known):
    if value not in known:
        hint = did_you_mean(value, known)
        raise ConfigError(f"unknown sweep {what} '{value}'{hint} Known: {', '.join(known)}")
    return value


def parse_sweep(config, grid=None, trials=None):
    """Split a config into the config every trial starts from (without ``[sweep]``) and the
    checked `SweepSpec`; ``grid`` (``--grid`` options or a mapping) adds to or replaces
    ``[sweep.params]``, ``trials`` replaces ``sweep.trials``."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"a config must be a table, got {type(config).__name__}")
    base = {key: value for key, value in config.items() if key != "sweep"}
    table = config.get("sweep", {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"[sweep] must be a table, got {type(table).__name__}")
    for key in table:
        if key not in SWEEP_KEYS:
            hint = did_you_mean(key, SWEEP_KEYS, prefix="sweep.")
            raise ConfigError(
                f"unknown config key 'sweep.{key}'{hint} Known keys here: {', '.join(SWEEP_KEYS)}"
            )
    check_config(base)
    load_plugins(base.get("plugins", []))
    params = table.get("params", {})
    if not isinstance(params, Mapping):
        raise ConfigError(f"[sweep.params] must be a table of key = values, got {params!r}")
    params = {**params, **grid_params(grid)}
    if not params:
        raise ConfigError(
            "a sweep needs parameters: [sweep.params] in the config, or --grid KEY=V1,V2,..."
        )
    for key in params:
        check_key(base, key)
    parsed = tuple(parse_param(base, key, spec) for key, spec in params.items())

    metrics = summary_metrics(base)
    metric = table.get("metric", "test.loss" if "test.loss" in metrics else "train.loss")
    if metric not in (*metrics, *SUMMARY_NUMBERS):
        raise ConfigError(
            f"sweep metric '{metric}' is not in the runs' summary.json; it has: "
            f"{', '.join((*metrics, *SUMMARY_NUMBERS))}"
        )
    default_direction = (
        "minimize" if any(w in metric.split(".")[-1] for w in LOWER_IS_BETTER) else "maximize"
    )
    direction = choose("direction", table.get("direction", default_direction), DIRECTIONS)
    all_lists = all(isinstance(p, Choice) for p in parsed)
    sampler = choose("sampler", table.get("sampler", "grid" if all_lists else "tpe"), SAMPLERS)
    if sampler == "grid" and not all_lists:
        ranged = next(p.key for p in parsed if isinstance(p, Range))
        raise ConfigError(
            f"the grid sampler needs lists of values, but '{ranged}' is a range; "
            'use sampler = "random" or "tpe", or give a list'
        )
    count = trials if trials is not None else table.get("trials", DEFAULT_TRIALS)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ConfigError(f"sweep trials must be a positive integer, got {count!r}")
    spec = SweepSpec(
        metric=metric,
        direction=direction,
        sampler=sampler,
        trials=count,
        pruner=parse_pruner(table.get("pruner", "none")),
        params=parsed,
        metrics=metrics,
    )
    return base, spec
