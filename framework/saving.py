"""Saving a whole model to one ``.npz`` file, and loading a trained model back.

A model file holds every array of `model.state_dict()` (parameters and layer state, under
``layer/name`` keys, readable with plain ``numpy.load``) and, under ``architecture``, one JSON
text describing how to rebuild the model: its dtype, its inputs, and for each layer its
registered kind, the values of its parameters (its attrs fields; a component such as an
activation or an initializer as ``{"type": kind, ...fields}``), its name and the names that
feed it.  Nothing is pickled: the file is read with ``allow_pickle=False`` and rebuilding
the model only makes registered components from plain data, as a config does.

`load_model` also reads what a training run leaves behind: a run directory (its
``config.json`` and ``model.npz``, or its newest whole checkpoint when the run did not
finish), a checkpoint file, or a weights file with the config that made it.
"""

import inspect
import json
import logging
import os
from collections.abc import Mapping

import attrs
import numpy as np

from framework.base import kind_of
from framework.errors import ConfigError, DataError
from framework.storage import load_arrays, save_arrays

MODEL_FILE = "model.npz"  # a run's final model, in its logdir
ARCHITECTURE = "architecture"  # the key of the JSON text inside a model file
TOKENIZER = "tokenizer"  # the key of a language model's tokenizer (JSON text), if it has one
FORMAT_VERSION = 1

logger = logging.getLogger("plugnet.saving")


# --- describing a model as plain data --------------------------------------------------------


def encode_value(value, where):
    """``value`` as JSON data: components as ``{"type": kind, ...fields}``, tuples as lists."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [encode_value(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(key): encode_value(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, np.ndarray) and value.dtype != object:
        return value.tolist()
    if attrs.has(type(value)) or hasattr(value, "get_config") or getattr(value, "kind", None):
        return {"type": kind_of(value), **component_config(value, where)}  # a component
    raise ConfigError(
        f"{where} is a {type(value).__name__}, which a model file cannot hold: give it as a "
        "number, a string, a list or a registered component"
    )


def component_config(component, where):
    """The keyword arguments that make ``component`` again: its ``get_config()`` if it has
    one, else its attrs fields, else the attributes named like its constructor's parameters."""
    if callable(getattr(component, "get_config", None)):
        fields = dict(component.get_config())
    elif attrs.has(type(component)):
        fields = {
            field.alias or field.name: getattr(component, field.name)
            for field in attrs.fields(type(component))
            if field.init
        }
    else:
        fields = {}
        for name, parameter in inspect.signature(type(component)).parameters.items():
            if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                continue
            if not hasattr(component, name):
                raise ConfigError(
                    f"{where} ({type(component).__name__}) keeps no attribute '{name}' for its "
                    "parameter of that name, so it cannot be saved; make it an attrs class or "
                    "give it a get_config() method returning its parameters"
                )
            fields[name] = getattr(component, name)
    return {key: encode_value(value, f"{where}.{key}") for key, value in fields.items()}


def model_inputs(model):
    """``[(name, shape, dtype name or None)]`` of the model's inputs (a dtype where they are
    integer token ids)."""
    integer = model.integer_inputs() if hasattr(model, "integer_inputs") else set()
    found = []
    for item, shape in zip(model.inputs, model.input_shapes, strict=True):
        dtype = getattr(item, "dtype", None)
        if dtype is None and item.name in integer:
            dtype = np.int64
        found.append((item.name, tuple(shape), np.dtype(dtype).name if dtype is not None else None))
    return found


def inbound_names(model, index, layer):
    """The names of the values feeding ``layer`` (model inputs or layer names)."""
    return list(model.inbound[layer.name])


def describe(model):
    """The architecture of a built model as JSON data (see the module's docstring)."""
    if not model.built:
        raise ConfigError(
            "the model is not built yet (give input_shape, or fit or predict once): nothing to save"
        )
    layers = []
    for index, layer in enumerate(model.layers):
        kind = kind_of(layer)
        layers.append(
            {
                "name": layer.name,
                "inputs": inbound_names(model, index, layer),
                "layer": {"type": kind, **component_config(layer, f"layer {layer.name} ({kind})")},
            }
        )
    return {
        "format": FORMAT_VERSION,
        "dtype": np.dtype(model.dtype).name,
        "inputs": [
            {"name": name, "shape": list(shape), **({"dtype": dtype} if dtype else {})}
            for name, shape, dtype in model_inputs(model)
        ],
        "layers": layers,
        "output": model.output_layer.name,
    }


def save_model(model, path):
    """Write ``model`` (architecture and weights) to the ``.npz`` file ``path``, atomically."""
    arrays = dict(model.state_dict())
    if ARCHITECTURE in arrays:
        raise ConfigError(
            f"a layer's parameter is keyed '{ARCHITECTURE}', which model files reserve"
        )
    arrays[ARCHITECTURE] = np.array(json.dumps(describe(model)))
    add_tokenizer(model, arrays)
    save_arrays(path, arrays)
    return os.fspath(path)


def add_tokenizer(model, arrays):
    """A language model's ``tokenizer`` (its vocabulary) into a model file's ``arrays``, as
    JSON text, so sampling needs no data file."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        return
    if TOKENIZER in arrays:
        raise ConfigError(f"a layer's parameter is keyed '{TOKENIZER}', which model files reserve")
    arrays[TOKENIZER] = np.array(tokenizer.to_json())


def read_tokenizer(arrays, path):
    """The tokenizer a model file holds (taken out of ``arrays``), or None."""
    if TOKENIZER not in arrays:
        return None
    from framework.text import Tokenizer

    return Tokenizer.from_json(str(arrays.pop(TOKENIZER)[()]), f"the tokenizer in {path}")


def save_run_model(model, path):
    """A run's ``model.npz``: architecture and weights, or, where a plugin's layer cannot be
    described as data, the weights alone (with a warning), which `load_model` reads with the
    run's ``config.json``: a finished training never fails for want of an architecture."""
    try:
        return save_model(model, path)
    except ConfigError as exc:
        logger.warning(
            "%s holds the weights only (load it with the run's config.json): %s", path, exc
        )
        arrays = dict(model.state_dict())
        add_tokenizer(model, arrays)
        save_arrays(path, arrays)
        return os.fspath(path)


# --- rebuilding ------------------------------------------------------------------------------


def is_chain(architecture):
    """Whether each layer takes the one before it (the first: the one input)."""
    inputs, layers = architecture["inputs"], architecture["layers"]
    if len(inputs) != 1:
        return False
    previous = inputs[0]["name"]
    for entry in layers:
        if list(entry["inputs"]) != [previous]:
            return False
        previous = entry["name"]
    return architecture.get("output", previous) == previous


def build_from_architecture(architecture):
    """A built model (fresh weights) from `describe`'s data: a `Sequential` for a chain, a
    `Model` of the same graph otherwise, with the saved layer names."""
    from framework.model import Input, Model, Sequential
    from framework.registry import resolve

    dtype = architecture["dtype"]
    layers = []
    for entry in architecture["layers"]:
        layer = resolve("layers", entry["layer"])
        layer.name, layer.named = entry["name"], True
        layers.append(layer)
    if is_chain(architecture):
        return Sequential(layers, input_shape=architecture["inputs"][0]["shape"], dtype=dtype)
    values = {}
    inputs = []
    for spec in architecture["inputs"]:
        values[spec["name"]] = Input(
            tuple(spec["shape"]), name=spec["name"], dtype=spec.get("dtype")
        )
        inputs.append(values[spec["name"]])
    for layer, entry in zip(layers, architecture["layers"], strict=True):
        fed = [values[name] for name in entry["inputs"]]
        values[entry["name"]] = layer(fed if getattr(layer, "multi_input", False) else fed[0])
    return Model(
        inputs if len(inputs) > 1 else inputs[0], values[architecture["output"]], dtype=dtype
    )


def read_architecture(text, path):
    try:
        architecture = json.loads(str(text[()]))
        if not isinstance(architecture, dict) or architecture.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"unsupported format {architecture.get('format') if isinstance(architecture, dict) else architecture!r}"
            )
        for key in ("dtype", "inputs", "layers"):
            if key not in architecture:
                raise ValueError(f"no '{key}'")
    except (ValueError, TypeError, AttributeError) as exc:
        raise DataError(
            f"{path} is not a readable plugnet model file: its architecture is damaged ({exc})"
        ) from exc
    return architecture


def model_from_arrays(arrays, path):
    tokenizer = read_tokenizer(arrays, path)
    architecture = read_architecture(arrays.pop(ARCHITECTURE), path)
    try:
        model = build_from_architecture(architecture)
    except (KeyError, TypeError, IndexError) as exc:
        raise DataError(
            f"{path} is not a readable plugnet model file: its architecture is damaged ({exc!r})"
        ) from exc
    model.load_state_dict(arrays, source=path)
    model.tokenizer = tokenizer
    return model


# --- configs and run directories -------------------------------------------------------------


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
    from framework.config import load_config

    return load_config(path)


def model_from_config(config):
    """A built model (fresh weights) as ``config``'s ``[model]`` makes it.  The input shape is
    ``model.input_shape`` or, where the config does not give it, that of the dataset's
    samples (so the dataset is loaded, as training does)."""
    from framework.config import check_config
    from framework.model import config_inputs, declared_inputs
    from framework.model import model_from_config as build_model
    from framework.registry import load_plugins

    check_config(config)
    load_plugins(config.get("plugins", []))
    model_config = config["model"]
    declared = declared_inputs(model_config)
    shapes_given = (
        all(shape is not None for _, shape in declared)
        if declared
        else "input_shape" in model_config
    )
    from framework.text import uses_vocab, with_vocab

    layers = model_config["layers"]
    dataset, x = None, None
    if not shapes_given or uses_vocab(layers):  # the data's shapes, or its vocabulary
        dataset, arrays = dataset_and_arrays(config)
        x = None if shapes_given else arrays[0]
    dataset_name = f"dataset '{config['data'].get('type')}'"
    names, input_shape = config_inputs(model_config, x, dataset_name)
    model = build_model(
        with_vocab(layers, dataset, dataset_name),
        input_shape=input_shape,
        dtype=model_config.get("dtype", "float32"),
        inputs=names,
        blocks=model_config.get("blocks"),
    )
    model.tokenizer = getattr(dataset, "tokenizer", None)
    return model


def dataset_and_arrays(config):
    """``(dataset, (x_train, y_train, x_test, y_test))`` of ``config``'s dataset, split as its
    run split them (the same seed)."""
    from framework.data import dataset_arrays
    from framework.registry import load_plugins, resolve

    load_plugins(config.get("plugins", []))
    data = resolve("datasets", config["data"])
    arrays = data.load(np.random.default_rng(config.get("seed", 0)))
    return data, dataset_arrays(arrays, config["data"].get("type"))


def load_data(config):
    """``(x_train, y_train, x_test, y_test)`` of ``config``'s dataset, split as its run split
    them (the same seed)."""
    return dataset_and_arrays(config)[1]


def run_config(run_dir):
    """The ``config.json`` of a run directory."""
    from framework.run import CONFIG_FILE

    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise DataError(
            f"{run_dir} is not a plugnet run directory: it has no {CONFIG_FILE} "
            "(give the logdir of a run that `plugnet train` made)"
        )
    return read_config(path)


def config_beside(path):
    """The config of the run a file belongs to: ``config.json`` in its directory, or in the
    directory above ``checkpoints/``; None if there is none."""
    from framework.run import CONFIG_FILE

    directory = os.path.dirname(os.path.abspath(path))
    candidates = [directory]
    if os.path.basename(directory) == "checkpoints":
        candidates.insert(0, os.path.dirname(directory))
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, CONFIG_FILE)):
            return read_config(os.path.join(candidate, CONFIG_FILE))
    return None


def weights_of(arrays):
    """The model's arrays in a checkpoint's or weights file's contents (a checkpoint also
    holds counters and its JSON state)."""
    from framework.checkpoints import COUNTERS

    return {
        key: value
        for key, value in arrays.items()
        if key not in COUNTERS and key not in ("state", TOKENIZER) and not key.startswith("state/")
    }


def load_model(path, config=None, plugins=()):
    """A trained model, built and ready to ``predict``, from

    * a run directory: its ``model.npz`` (the final weights), or, for a run that did not get
      to its end, its newest whole checkpoint and its ``config.json``;
    * a model file written by ``model.save(path)`` (or a run's ``model.npz``);
    * a checkpoint file (``LOGDIR/checkpoints/step-N.npz``), with its run's ``config.json``;
    * a weights file of ``model.save_weights``, with ``config`` (a mapping or a ``.toml`` /
      ``.json`` file) or a ``config.json`` beside it.

    ``plugins`` are plugin modules to load first (those a run's config names are loaded
    anyway).  A path that is none of these, or a damaged file, is a `DataError`.
    """
    from framework.registry import load_plugins

    load_plugins(list(plugins))
    path = os.fspath(path)
    if config is not None:
        config = read_config(config)
    if os.path.isdir(path):
        return load_run(path, config)
    if not os.path.exists(path):
        raise DataError(f"no run directory or model file at {path}")
    arrays = load_arrays(path)
    if ARCHITECTURE in arrays:
        if config is not None:
            load_plugins(config.get("plugins", []))
        return model_from_arrays(arrays, path)
    config = config if config is not None else config_beside(path)
    if config is None:
        raise DataError(
            f"{path} holds weights but not the model's architecture: give the config that made "
            "it (load_model(path, config=...)), or load the run directory"
        )
    model = model_from_config(config)
    if "state" in arrays and "step" in arrays:  # a checkpoint: its own reader checks it
        from framework.checkpoints import load_checkpoint

        model.load_state_dict(load_checkpoint(path)["params"], source=path)
    else:
        model.load_state_dict(weights_of(arrays), source=path)
    return model


def load_run(run_dir, config=None):
    from framework.checkpoints import checkpoint_dir, latest_whole_checkpoint, list_checkpoints
    from framework.registry import load_plugins

    config = config if config is not None else run_config(run_dir)
    load_plugins(config.get("plugins", []))
    model_path = os.path.join(run_dir, MODEL_FILE)
    if os.path.exists(model_path):
        try:
            arrays = load_arrays(model_path)
        except DataError as exc:
            if list_checkpoints(run_dir):
                raise DataError(
                    f"{exc} (delete it to load the run's newest checkpoint instead)"
                ) from exc
            raise
        if ARCHITECTURE in arrays:
            return model_from_arrays(arrays, model_path)
        tokenizer = read_tokenizer(arrays, model_path)
        model = model_from_config(config)
        model.load_state_dict(weights_of(arrays), source=model_path)
        model.tokenizer = tokenizer or model.tokenizer
        return model
    if not list_checkpoints(run_dir):
        raise DataError(
            f"{run_dir} holds no weights: no {MODEL_FILE} (written when training ends) and no "
            f"checkpoint in {checkpoint_dir(run_dir)}; train it to the end, or resume it with "
            "`plugnet train --resume`"
        )
    checkpoint = latest_whole_checkpoint(run_dir)
    model = model_from_config(config)
    model.load_state_dict(checkpoint["params"], source=checkpoint["path"])
    return model
