"""Run configs: loading TOML, ``--set`` overrides, and checking every key.

A config is plain data (tables, lists, strings, numbers): nothing in it is evaluated, and the
only code it can bring in is a plugin module it names in ``plugins``.
"""

import copy
import importlib.resources
import json
import os
import tomllib
from collections.abc import Mapping

from framework.errors import ConfigError, did_you_mean

# Each section's known keys and the type its value must have (None: checked elsewhere, by the
# component or module that takes it).
SCHEMA = {
    "seed": int,
    "plugins": list,
    "data": None,
    "model": {"layers": list, "dtype": str, "input_shape": list, "inputs": list, "blocks": dict},
    "train": {
        "loss": None,
        "optimizer": None,
        "epochs": int,
        "batch_size": int,
        "metrics": list,
        "callbacks": list,
        "l2": (int, float),
        "shuffle": bool,
        "evaluate_every": int,
        "clip_norm": (int, float),
        "steps": int,
        "eval_batches": int,
    },
    "logging": {"logdir": str},
    "sweep": None,
}
REQUIRED = {"data": "[data] with the dataset's type", "model": "[model] with its layers"}


def load_config(path):
    """Read a TOML config file; a missing file or bad TOML is a `ConfigError`."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config path is a directory, not a file: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file ({exc.reason})") from None


def read_config(config):
    """A config mapping from a mapping or a ``.toml`` / ``.json`` file."""
    if isinstance(config, Mapping):
        return dict(config)
    path = os.fspath(config)
    if path.endswith(".json"):
        try:
            with open(path, encoding="utf-8") as f:
                value = json.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path} is not a readable config: {exc}") from exc
        if not isinstance(value, dict):
            raise ConfigError(f"{path} is not a config table")
        return value
    return load_config(path)


def default_config():
    """The built-in default example (moons), as ``plugnet train`` runs it with no config."""
    text = importlib.resources.files("framework").joinpath("default.toml").read_text()
    return tomllib.loads(text)


def parse_value(text):
    """A ``--set`` value: TOML if it parses (``0.05``, ``true``, ``[1, 2]``, ``{type="adam"}``),
    else the plain string (so ``--set train.optimizer.type=adam`` needs no quotes)."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def add_plugins(config, names):
    """``config`` with the plugin modules ``names`` (``--plugin``) after its own ``plugins``,
    each once."""
    known = list(config.get("plugins", []))
    return (
        {**config, "plugins": known + [name for name in names if name not in known]}
        if names
        else config
    )


def apply_overrides(config, assignments):
    """A copy of ``config`` with each ``KEY=VALUE`` applied; keys are dotted paths and list
    items are indexed (``model.layers.0.units=8``).  A component given by name becomes a table
    when a parameter is set on it (``train.optimizer.lr=0.1`` on ``optimizer = "sgd"``)."""
    config = copy.deepcopy(config)
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got '{assignment}'")
        set_key(config, key, parse_value(text.strip()))
    return config


def set_key(config, key, value):
    parts = key.split(".")
    node = config
    for depth, part in enumerate(parts[:-1]):
        here = ".".join(parts[: depth + 1])
        child = get_child(node, part, here, create=True)
        if isinstance(child, str):  # a component by name gains parameters
            child = {"type": child}
            put_child(node, part, child, here)
        if not isinstance(child, (dict, list)):
            raise ConfigError(
                f"cannot set '{key}': '{here}' is a {type(child).__name__}, not a table"
            )
        node = child
    put_child(node, parts[-1], value, key)


def get_child(node, part, here, create=False):
    if isinstance(node, list):
        return node[list_index(node, part, here)]
    if part not in node and create:
        node[part] = {}
    return node[part]


def put_child(node, part, value, here):
    if isinstance(node, list):
        node[list_index(node, part, here)] = value
    else:
        node[part] = value


def list_index(items, part, here):
    try:
        index = int(part)
    except ValueError:
        raise ConfigError(f"'{here}': '{part}' is not a list index") from None
    if not -len(items) <= index < len(items):
        raise ConfigError(
            f"'{here}': index {index} is out of range (the list has {len(items)} items)"
        )
    return index


def check_config(config):
    """Raise `ConfigError` for an unknown key, a missing section or a value of the wrong
    type; the message names the dotted key and, for unknown keys, the closest known one."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"a config must be a table, got {type(config).__name__}")
    check_table(config, SCHEMA, "")
    for section, what in REQUIRED.items():
        if section not in config:
            raise ConfigError(f"the config needs {what}")
    if not isinstance(config["data"], Mapping) or "type" not in config["data"]:
        raise ConfigError("[data] needs a 'type' naming a dataset")
    if "layers" not in config["model"]:
        raise ConfigError("[model] needs 'layers', a list of layer tables")
    if "loss" not in config.get("train", {}):
        raise ConfigError("[train] needs a 'loss'")
    if config.get("seed", 0) < 0:  # numpy's generators take only non-negative seeds
        raise ConfigError(f"'seed' must be >= 0, got {config['seed']}")
    for key, minimum in (
        ("epochs", 0),
        ("batch_size", 1),
        ("evaluate_every", 1),
        ("steps", 1),
        ("eval_batches", 1),
    ):
        value = config.get("train", {}).get(key)
        if value is not None and value < minimum:
            raise ConfigError(f"'train.{key}' must be >= {minimum}, got {value}")
    clip = config.get("train", {}).get("clip_norm")
    if clip is not None and clip <= 0:
        raise ConfigError(f"'train.clip_norm' must be > 0, got {clip}")
    if config.get("train", {}).get("l2", 0) < 0:
        raise ConfigError(f"'train.l2' must be >= 0, got {config['train']['l2']}")
    for plugin in config.get("plugins", []):
        if not isinstance(plugin, str):
            raise ConfigError(f"'plugins' must list module names (strings), got {plugin!r}")


def check_table(table, schema, prefix):
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            known = [f"{prefix}{k}" for k in schema]
            message = f"unknown config key '{dotted}'" + did_you_mean(dotted, known)
            raise ConfigError(f"{message} Known keys here: {', '.join(known)}")
        expected = schema[key]
        if expected is None:
            continue
        if isinstance(expected, dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"'{dotted}' must be a table, got {type(value).__name__}")
            check_table(value, expected, f"{dotted}.")
            continue
        wrong_bool = isinstance(value, bool) and expected is not bool
        if wrong_bool or not isinstance(value, expected):
            names = " or ".join(
                t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,))
            )
            raise ConfigError(f"'{dotted}' must be {names}, got {value!r}")


def flatten_config(config, prefix=""):
    """``{"train.optimizer.lr": 0.1, "model.layers.0.units": 16, ...}``: every scalar leaf
    under its dotted key (lists by index), as sweeps and the HParams tab use them."""
    flat = {}
    items = config.items() if isinstance(config, Mapping) else enumerate(config)
    for key, value in items:
        dotted = f"{prefix}{key}"
        if isinstance(value, (Mapping, list)):
            flat.update(flatten_config(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat
