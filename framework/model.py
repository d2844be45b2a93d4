"""Models: `Model`, a directed acyclic graph of layers, and `Sequential`, its chain case.

A model is built from symbolic tensors, as in Keras' functional API: `Input` stands for a
batch of one model input, and calling a layer on symbolic tensors places it in the graph and
returns its symbolic output.  ``Model(inputs, outputs)`` then orders the layers so that each
comes after everything it reads (a topological order), names them ``<kind>_<index>`` (unless
they were named), and builds their parameters.

Forward runs the layers in that order, each on the outputs of the layers (or inputs) it
reads.  Backward runs them in reverse: a layer receives dL/d(its output), which is the *sum*
of what every layer reading that output sends back (the multivariate chain rule; a residual
connection is exactly such a fork), and passes dL/d(its inputs) on.
"""

import os
from collections.abc import Mapping

import numpy as np

from framework.base import SymbolicTensor, connect, kind_of, shallow_copy
from framework.errors import ConfigError, DataError, ShapeError, did_you_mean
from framework.registry import resolve
from framework.storage import load_arrays, save_arrays
from framework.text import is_array_like

FLOAT_DTYPES = {"float32": np.float32, "float64": np.float64}
DEFAULT_INPUT = "input"  # the name of a Sequential's (or a one-input config's) input


def _no_model_file_writer(model, path):
    raise ConfigError("no model file format is loaded: import framework first")


# What `Model.save` writes with.  The model file format (`framework.saving`) builds models,
# so it stands above this module and hands its writer down when it is imported, as
# ``import framework`` does: the model never imports the format.
_model_file_writer = _no_model_file_writer


def set_model_file_writer(write):
    """Make ``write(model, path)`` what `Model.save` calls (`framework.saving` does, once)."""
    global _model_file_writer
    _model_file_writer = write


def float_dtype(dtype):
    """``np.float32`` or ``np.float64`` from a name or dtype; anything else is an error."""
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in FLOAT_DTYPES:
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return FLOAT_DTYPES[name]


def shape_text(shape):
    return "(None, " + ", ".join(map(str, shape)) + ")" if shape else "(None,)"


# --- symbolic tensors ------------------------------------------------------------------------


class Input(SymbolicTensor):
    """A model input: a batch of samples of ``shape`` (without the batch axis).

    ``name`` keys the input's data when a model has several (``{"image": x, ...}``);
    ``dtype`` may say ``"int64"`` for token ids (a layer with ``integer_input`` says so too).
    """

    def __init__(self, shape, name=None, dtype=None):
        super().__init__(None, [])
        try:
            self.shape = tuple(int(n) for n in shape)
        except (TypeError, ValueError):
            raise ConfigError(f"Input shape must be a sequence of sizes, got {shape!r}") from None
        if any(n < 1 for n in self.shape):
            raise ConfigError(f"Input shape must hold positive sizes, got {shape!r}")
        self._name = name or DEFAULT_INPUT
        self.dtype = None if dtype is None else np.dtype(dtype)

    @property
    def name(self):
        return self._name

    def __repr__(self):
        return f"Input({self.shape}, name={self.name!r})"


def _place(layer, parents):
    """`connect` for models assembled from lists (Sequential, configs): a layer object
    handed to a new model is re-placed there."""
    layer._placed = False
    return connect(layer, parents if getattr(layer, "multi_input", False) else parents[0])


def _topological_order(output, inputs):
    """The layers ``output`` depends on, each after everything it reads (depth-first,
    parents in order), and the inputs it reaches; raises when the graph is not a model of
    ``inputs``."""
    order, reached, state = [], set(), {}
    stack = [(output, False)]
    while stack:
        tensor, expanded = stack.pop()
        if isinstance(tensor, Input):
            reached.add(id(tensor))
            if not any(tensor is given for given in inputs):
                raise ConfigError(
                    f"the output depends on input '{tensor.name}', which is not among the model's "
                    f"inputs ({', '.join(repr(i.name) for i in inputs)})"
                )
            continue
        key = id(tensor.producer)
        if expanded:
            state[key] = "done"
            order.append(tensor)
            continue
        if state.get(key) == "done":
            continue
        state[key] = "open"
        stack.append((tensor, True))
        for parent in reversed(tensor.parents):
            stack.append((parent, False))
    unused = [i.name for i in inputs if id(i) not in reached]
    if unused:
        raise ConfigError(
            f"input {', '.join(repr(n) for n in unused)} does not reach the model's output"
        )
    return order


# --- models ----------------------------------------------------------------------------------


class Model:
    """A directed acyclic graph of layers with one output.

    ``inputs`` is an `Input` or a list of them; ``outputs`` the symbolic tensor a layer call
    returned.  Parameters are created in ``dtype`` from a generator seeded by ``seed``.
    Data for a model of several inputs is a dict keyed by the inputs' names or a tuple in
    their order.
    """

    _tied = ()  # layers sharing an earlier layer's parameter (dense's tied_to), set by `build`

    tokenizer = None  # a language model's vocabulary (framework.Tokenizer), saved with it

    def __init__(self, inputs, outputs, dtype="float32", seed=None):
        self.dtype = float_dtype(dtype)
        self.rng = np.random.default_rng(seed)
        self._init_graph(inputs, outputs)

    # --- the graph ---------------------------------------------------------------------------

    def _init_graph(self, inputs, outputs):
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if not inputs or not all(isinstance(i, Input) for i in inputs):
            raise ConfigError("a model's inputs must be framework.Input objects")
        if isinstance(outputs, (list, tuple)):
            if len(outputs) != 1:
                raise ConfigError(f"a model has one output, got {len(outputs)}")
            outputs = outputs[0]
        if not isinstance(outputs, SymbolicTensor) or isinstance(outputs, Input):
            raise ConfigError("a model's output must be the output of a layer call")
        names = [i.name for i in inputs]
        if len(set(names)) != len(names):
            raise ConfigError(f"the model's inputs need distinct names, got {names}")
        tensors = _topological_order(outputs, inputs)
        self.inputs = inputs
        self.layers = [t.producer for t in tensors]
        for index, layer in enumerate(self.layers):
            if not getattr(layer, "named", False):
                layer.name = f"{kind_of(layer)}_{index}"
        taken = {}
        for name in [*names, *(layer.name for layer in self.layers)]:
            taken[name] = taken.get(name, 0) + 1
        clashes = sorted(name for name, count in taken.items() if count > 1)
        if clashes:
            raise ConfigError(
                f"names must be unique in a model: {', '.join(clashes)} used more than once"
            )
        self.inbound = {t.producer.name: [p.name for p in t.parents] for t in tensors}
        self.output_layer = self.layers[-1]
        self._plan = [
            (layer, self.inbound[layer.name], bool(getattr(layer, "multi_input", False)))
            for layer in self.layers
        ]
        self.chain = (
            all(
                not multi and sources == [names[0] if i == 0 else self.layers[i - 1].name]
                for i, (_, sources, multi) in enumerate(self._plan)
            )
            and len(inputs) == 1
        )
        self.build([i.shape for i in inputs])

    @property
    def input_names(self):
        return [i.name for i in self.inputs]

    @property
    def built(self):
        return getattr(self, "input_shape", None) is not None

    def build(self, input_shapes):
        """Build every layer in order from the inputs' shapes (a list, one per input)."""
        shapes = dict(
            zip(self.input_names, (tuple(int(n) for n in s) for s in input_shapes), strict=True)
        )
        built = {}
        self._tied = []
        for layer, sources, multi in self._plan:
            layer.dtype = self.dtype
            layer.rng = self.rng
            if getattr(layer, "tied_to", None) is not None:
                layer.tie(built.get(layer.tied_to))
                self._tied.append(layer)
            built[layer.name] = layer
            given = [shapes[s] for s in sources]
            try:
                out = layer.build(given if multi else given[0])
            except ShapeError:
                raise
            except (ValueError, TypeError) as exc:
                got = " and ".join(
                    f"{shape_text(s)} from {name}" for s, name in zip(given, sources, strict=True)
                )
                raise ShapeError(f"layer {layer.name} cannot take input {got}: {exc}") from exc
            layer.input_shape = given if multi else given[0]
            layer.output_shape = shapes[layer.name] = tuple(int(n) for n in out)
        self.input_shapes = [shapes[name] for name in self.input_names]
        self.input_shape = self.input_shapes[0] if len(self.inputs) == 1 else self.input_shapes
        self.output_shape = self.output_layer.output_shape
        self._plan_backward()
        return self.output_shape

    def _plan_backward(self):
        """What training's backward can skip: a layer that has no parameters and reads
        nothing that depends on one (a flatten or dropout in front) needs no backward, and
        a layer whose inputs depend on no parameter need not compute dL/dx."""
        trainable_before = {name: False for name in self.input_names}
        self._train_steps = []
        for layer, sources, multi in self._plan:
            upstream = any(trainable_before[s] for s in sources)
            has_params = bool(getattr(layer, "params", None))
            trainable_before[layer.name] = upstream or has_params
            if upstream or has_params:
                self._train_steps.append((layer, sources, multi, upstream))
        # Kept for the chain case and callers that read it: the first layer training visits.
        first = self._train_steps[0][0] if self._train_steps else None
        self.first_trainable = self.layers.index(first) if first is not None else len(self.layers)

    # --- computing ---------------------------------------------------------------------------

    def forward(self, x, training=False):
        """The output for ``x`` (what `prepare` gives: an array, or a list of arrays in the
        inputs' order); each layer keeps what its backward needs."""
        if self.chain:
            for layer in self.layers:
                x = layer.forward(x, training)
            return x
        values = dict(zip(self.input_names, x if len(self.inputs) > 1 else [x], strict=True))
        for layer, sources, multi in self._plan:
            values[layer.name] = layer.forward(
                [values[s] for s in sources] if multi else values[sources[0]], training
            )
        return values[self.output_layer.name]

    def backward(self, grad_output, input_grad=True, preactivation=False):
        """Backpropagate dL/d(output): fills every ``layer.grads`` and returns dL/d(input)
        (a list for several inputs; None when ``input_grad`` is false: training needs only
        the parameters' gradients).  With ``preactivation``, ``grad_output`` is dL/dz of the
        output layer's net input (a loss fused with the output activation gives it)."""
        if self.chain:
            return self._backward_chain(grad_output, input_grad, preactivation)
        if input_grad:
            steps = [(layer, sources, multi, True) for layer, sources, multi in self._plan]
        else:
            steps = self._train_steps
        grads = {self.output_layer.name: grad_output}
        for layer, sources, multi, wanted in reversed(steps):
            if layer.needs_input_grad is not wanted:
                layer.needs_input_grad = wanted
            grad = grads.pop(layer.name)
            if preactivation and layer is self.output_layer:
                grad_in = layer.backward_preactivation(grad)
            else:
                grad_in = layer.backward(grad)
            if not wanted:
                continue
            for source, g in zip(sources, grad_in if multi else [grad_in], strict=True):
                # A tensor read by several layers gets the sum of their gradients.
                grads[source] = g if source not in grads else grads[source] + g
        if self._tied:
            self._add_tied_grads()
        if not input_grad:
            return None
        result = [grads[name] for name in self.input_names]
        return result if len(result) > 1 else result[0]

    def _backward_chain(self, grad, input_grad, preactivation):
        """`backward` for a chain, without the bookkeeping of forks: per-sample training
        of a small net spends a measurable share of its step there."""
        layers = self.layers
        if self.first_trainable < len(layers):
            layers[self.first_trainable].needs_input_grad = input_grad
        first = 0 if input_grad else self.first_trainable
        last = len(layers) - 1
        if preactivation:
            grad = layers[last].backward_preactivation(grad)
            last -= 1
        for index in range(last, first - 1, -1):
            grad = layers[index].backward(grad)
        if self._tied:  # a test, not a call: per-sample steps of a small net feel a call
            self._add_tied_grads()
        return grad if input_grad else None

    def _add_tied_grads(self):
        """A parameter shared by two layers (an embedding and the dense tied to it) gets the
        sum of both layers' gradients: the tied layer's part is added to the owner's."""
        for layer in self._tied:
            layer.tied.grads["weights"] += layer.tied_grad

    def backward_preactivation(self, grad_preactivation, input_grad=True):
        """As `backward`, from dL/dz of the output layer's net input."""
        return self.backward(grad_preactivation, input_grad, preactivation=True)

    # --- data --------------------------------------------------------------------------------

    def _input_arrays(self, x):
        """``x`` as a list of arrays in the inputs' order."""
        if len(self.inputs) == 1:
            if isinstance(x, dict):
                if set(x) != {self.inputs[0].name}:
                    raise DataError(
                        f"the model's input is named '{self.inputs[0].name}', got data for {sorted(x)}"
                    )
                x = x[self.inputs[0].name]
            return [x]
        names = self.input_names
        if isinstance(x, dict):
            missing = [n for n in names if n not in x]
            extra = sorted(set(x) - set(names))
            if missing or extra:
                raise DataError(
                    f"the model's inputs are {names}: missing {missing or 'nothing'}, unexpected {extra or 'nothing'}"
                )
            return [x[n] for n in names]
        if isinstance(x, (tuple, list)) and len(x) == len(names):
            return list(x)
        raise DataError(
            f"the model has {len(names)} inputs ({', '.join(names)}): give a dict by name or a tuple"
        )

    def integer_inputs(self):
        """Names of the inputs that carry integer token ids: an `Input` of an integer dtype,
        or one read by a layer with ``integer_input``."""
        found = {
            i.name
            for i in self.inputs
            if i.dtype is not None and np.issubdtype(i.dtype, np.integer)
        }
        for layer, sources, _ in self._plan if self.built else []:
            if getattr(layer, "integer_input", False):
                found.update(s for s in sources if s in self.input_names)
        return found

    def prepare(self, x, what="x"):
        """``x`` as the model takes it: arrays of the model's dtype (integer ids kept as
        integers), one per input, building the model on first sight; `DataError` or
        `ShapeError` for data that cannot be its input.  An array-like (lazy windows, a
        memory map's view) is checked by its ``shape`` and ``dtype`` and kept as it is."""
        arrays = [a if is_array_like(a) else np.asarray(a) for a in self._input_arrays(x)]
        names = self.input_names if self.built else [DEFAULT_INPUT]
        for name, a in zip(names, arrays, strict=True):
            label = what if len(arrays) == 1 else f"{what}['{name}']"
            if len(a.shape) < 1 or a.shape[0] == 0:
                raise DataError(f"{label} is empty")
            if not np.issubdtype(a.dtype, np.number) and a.dtype != bool:
                raise DataError(f"{label} must be numeric, got dtype {a.dtype}")
        if len({len(a) for a in arrays}) > 1:
            raise DataError(
                f"{what}: the inputs have different numbers of samples: {[len(a) for a in arrays]}"
            )
        if not self.built:
            self.build([a.shape[1:] for a in arrays])
        integer = self.integer_inputs()
        prepared = []
        for i, (name, a) in enumerate(zip(self.input_names, arrays, strict=True)):
            label = what if len(arrays) == 1 else f"{what}['{name}']"
            shape = tuple(a.shape[1:])
            if shape != self.input_shapes[i]:
                reader = next(layer.name for layer, sources, _ in self._plan if name in sources)
                raise ShapeError(
                    f"input of layer {reader} is incompatible: expected shape "
                    f"{shape_text(self.input_shapes[i])}, got {shape_text(shape)}"
                )
            if name in integer:
                if not np.issubdtype(a.dtype, np.integer):
                    raise DataError(
                        f"{label} must hold integer token ids (it feeds "
                        f"{', '.join(layer.name for layer, s, _ in self._plan if name in s)}), got dtype {a.dtype}"
                    )
                prepared.append(a)
            elif is_array_like(a):
                prepared.append(a)  # converted batch by batch, as the trainer takes them
            else:
                prepared.append(np.asarray(a, dtype=self.dtype))
        return prepared[0] if len(prepared) == 1 else prepared

    def check_input(self, x):
        """Raise `ShapeError` unless ``x`` is a batch of the model's inputs."""
        self.prepare(x)

    def predict(self, x, batch_size=None):
        """Outputs for ``x`` in evaluation mode, in batches of ``batch_size`` (all at once by
        default)."""
        x = self.prepare(x)
        n = num_samples(x)
        if batch_size is None and any(map(is_array_like, x if isinstance(x, list) else [x])):
            batch_size = 1024  # an array-like is read a batch at a time, never whole
        if batch_size is None or batch_size >= n:
            return self.forward(x, training=False)
        return np.concatenate(
            [
                self.forward(take_rows(x, slice(i, i + batch_size)), training=False)
                for i in range(0, n, batch_size)
            ]
        )

    # --- a copy for another thread ----------------------------------------------------------

    @property
    def splits_batch(self):
        """Whether training may share a batch out over threads (`framework.batch_split`):
        every layer allows it (`framework.Layer.splits_batch`) and the model has one input."""
        return len(self.inputs) == 1 and all(
            getattr(layer, "splits_batch", False) and hasattr(layer, "twin")
            for layer in self.layers
        )

    def twin(self):
        """A copy of the model for another thread's share of a batch: each layer's `twin`
        (the same parameter arrays, its own gradients and working memory) in the same graph;
        a layer's reference to another layer (dense's tied embedding) points to that
        layer's copy."""
        twins = {id(layer): layer.twin() for layer in self.layers}
        for copy in twins.values():
            for key, value in list(vars(copy).items()):
                if id(value) in twins:
                    setattr(copy, key, twins[id(value)])

        def twin_of(layer):
            return twins[id(layer)]

        other = shallow_copy(self)
        other.layers = [twin_of(layer) for layer in self.layers]
        other.output_layer = twin_of(self.output_layer)
        other._plan = [(twin_of(layer), *rest) for layer, *rest in self._plan]
        other._train_steps = [(twin_of(layer), *rest) for layer, *rest in self._train_steps]
        other._tied = [twin_of(layer) for layer in self._tied]
        return other

    # --- parameters --------------------------------------------------------------------------

    def parameters(self):
        """``[(layer name, parameter name, array)]`` in a fixed order."""
        return [
            (layer.name, key, value) for layer in self.layers for key, value in layer.params.items()
        ]

    def params_list(self):
        return [value for layer in self.layers for value in layer.params.values()]

    def grads_list(self):
        return [layer.grads[key] for layer in self.layers for key in layer.params]

    def states(self):
        """``[(layer name, state name, array)]``: what layers keep but no optimizer trains
        (batch norm's running statistics)."""
        return [
            (layer.name, key, value)
            for layer in self.layers
            for key, value in (getattr(layer, "state", None) or {}).items()
        ]

    @property
    def num_params(self):
        return sum(value.size for value in self.params_list())

    def get_params(self):
        """All parameters as one flat vector (a copy), in `parameters` order; layer state
        is not a parameter and is not in it."""
        params = self.params_list()
        if not params:
            return np.zeros(0, dtype=self.dtype)
        return np.concatenate([p.ravel() for p in params])

    def get_grads(self):
        """All gradients as one flat vector, in the order of `get_params`."""
        grads = self.grads_list()
        if not grads:
            return np.zeros(0, dtype=self.dtype)
        return np.concatenate([g.ravel() for g in grads])

    def set_params(self, vector):
        """Write a flat vector back into the parameters, in place."""
        vector = np.asarray(vector).ravel()
        if vector.size != self.num_params:
            raise ShapeError(
                f"set_params got {vector.size} values; the model has {self.num_params} parameters"
            )
        offset = 0
        for param in self.params_list():
            param[...] = vector[offset : offset + param.size].reshape(param.shape)
            offset += param.size

    def state_dict(self):
        """``{"dense_0/weights": array, ..., "batch_norm_1/running_mean": array}``: every
        parameter and every layer state array."""
        arrays = {f"{layer}/{key}": value for layer, key, value in self.parameters()}
        arrays.update((f"{layer}/{key}", value) for layer, key, value in self.states())
        return arrays

    def load_state_dict(self, state, source="state"):
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state))
        extra = sorted(set(state) - set(expected))
        if missing or extra:
            raise DataError(
                f"{source} does not fit this model: missing {missing or 'nothing'}, "
                f"unexpected {extra or 'nothing'}"
            )
        for key, param in expected.items():
            value = np.asarray(state[key])
            if value.shape != param.shape:
                raise ShapeError(
                    f"{source}: {key} has shape {value.shape}, the model's is {param.shape}"
                )
        for key, param in expected.items():  # only once everything fits: nothing half-loaded
            param[...] = state[key]

    def save(self, path):
        """Save architecture and weights to one ``.npz`` file (no pickle); `framework.load_model` reads it."""
        return _model_file_writer(self, path)

    def save_weights(self, path):
        """Save the parameters and layer state to an ``.npz`` file (no pickle), atomically."""
        if not self.built:
            raise ConfigError("the model is not built yet: it has no weights to save")
        save_arrays(path, self.state_dict())

    def load_weights(self, path):
        """Load parameters saved by `save_weights`; refuses files that hold pickled objects."""
        if not self.built:
            raise ConfigError("build the model (give input_shape) before loading weights")
        self.load_state_dict(load_arrays(path), source=os.fspath(path))

    # --- display -----------------------------------------------------------------------------

    def summary(self):
        """A table of layers, output shapes, parameter counts and, for a graph, what each
        layer reads."""
        if not self.built:
            return f"{type(self).__name__} (not built: input shape unknown)"
        header = ("layer", "output shape", "params", *(() if self.chain else ("inputs",)))
        rows = [header]
        for i, name in enumerate(self.input_names):
            if not self.chain:
                rows.append((f"{name} (input)", shape_text(self.input_shapes[i]), "0", ""))
        for layer in self.layers:
            count = sum(v.size for v in layer.params.values())
            row = (layer.name, shape_text(layer.output_shape), f"{count:,}")
            rows.append(row if self.chain else (*row, ", ".join(self.inbound[layer.name])))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        rule = "-" * (sum(widths) + 2 * (len(header) - 1))

        def line(row):
            cells = [f"{row[0]:<{widths[0]}}", f"{row[1]:<{widths[1]}}", f"{row[2]:>{widths[2]}}"]
            cells += [f"{cell:<{w}}" for cell, w in zip(row[3:], widths[3:], strict=True)]
            return "  ".join(cells).rstrip()

        body = [line(rows[0]), rule, *map(line, rows[1:]), rule]
        inputs = ", ".join(shape_text(s) for s in self.input_shapes)
        body.append(
            f"total parameters: {self.num_params:,}  (input {inputs}, {np.dtype(self.dtype).name})"
        )
        return "\n".join(body)

    def __repr__(self):
        return f"{type(self).__name__}({self.layers!r})"


class Sequential(Model):
    """A stack of layers: the `Model` whose layers each read the one before.

    ``layers`` are layer objects, names or ``{"type": ...}`` mappings.  The model builds when
    it knows its input shape (given here, or the first time it sees data); building names the
    layers ``<kind>_<index>`` and creates their parameters in ``dtype`` from a generator
    seeded by ``seed``.
    """

    def __init__(self, layers, input_shape=None, dtype="float32", seed=None):
        self.layers = [resolve("layers", spec) for spec in layers]
        if not self.layers:
            raise ConfigError("a model needs at least one layer")
        for layer in self.layers:
            if getattr(layer, "multi_input", False):
                raise ConfigError(
                    f"layer {layer.name or kind_of(layer)} merges several inputs; a Sequential model "
                    "is a chain: build a Model from Input and layer calls, or give 'inputs' in the config"
                )
        self.dtype = float_dtype(dtype)
        self.rng = np.random.default_rng(seed)
        self.inputs = [Input((1,))]
        self.input_shape = None
        self.output_shape = None
        self.first_trainable = 0  # set by `build`
        self.chain = True
        for index, layer in enumerate(self.layers):
            if not getattr(layer, "named", False):
                layer.name = f"{kind_of(layer)}_{index}"
        names = [layer.name for layer in self.layers]
        clashes = sorted({name for name in names if names.count(name) > 1})
        if clashes:
            raise ConfigError(
                f"names must be unique in a model: {', '.join(clashes)} used more than once"
            )
        if input_shape is not None:
            self.build(input_shape)

    def build(self, input_shape):
        """Build for samples of ``input_shape`` (also accepts a one-item list of shapes)."""
        shape = (
            input_shape[0]
            if input_shape and isinstance(input_shape[0], (list, tuple))
            else input_shape
        )
        tensor = Input(tuple(int(n) for n in shape), name=DEFAULT_INPUT)
        for layer in self.layers:
            tensor = _place(layer, [tensor])
        self._init_graph_layers(tensor)
        return Model.build(self, [shape])

    def _init_graph_layers(self, output):
        self.inputs = [_root_input(output)]
        tensors = _topological_order(output, self.inputs)
        self.inbound = {t.producer.name: [p.name for p in t.parents] for t in tensors}
        self.output_layer = self.layers[-1]
        self._plan = [(layer, self.inbound[layer.name], False) for layer in self.layers]


def _root_input(tensor):
    while not isinstance(tensor, Input):
        tensor = tensor.parents[0]
    return tensor


# --- batches of model inputs -----------------------------------------------------------------


def num_samples(x):
    """The number of samples in model data (an array, or a list of arrays, one per input)."""
    return len(x[0]) if isinstance(x, list) else len(x)


def take_rows(x, index):
    """Rows ``index`` (a slice or an index array) of model data, input by input."""
    return [a[index] for a in x] if isinstance(x, list) else x[index]


# --- models from configs ---------------------------------------------------------------------


def declared_inputs(model_config):
    """``[(name, shape or None)]`` of ``[model] inputs`` (each a name, or a table with
    ``name`` and optionally ``shape``), or None when the config declares none."""
    declared = model_config.get("inputs")
    if declared is None:
        return None
    result = []
    for index, item in enumerate(declared):
        where = f"model.inputs.{index}"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ConfigError(
                f"{where} must be an input name or a table with a 'name' (and 'shape'), got {item!r}"
            )
        unknown = sorted(set(item) - {"name", "shape"})
        if unknown:
            raise ConfigError(
                f"{where} ({item['name']}) has no key {', '.join(map(repr, unknown))}; its keys: name, shape"
            )
        shape = item.get("shape")
        if shape is not None and (
            not isinstance(shape, list)
            or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
        ):
            raise ConfigError(
                f"{where} ({item['name']}): shape must be a list of positive sizes, got {shape!r}"
            )
        result.append((item["name"], None if shape is None else tuple(shape)))
    names = [name for name, _ in result]
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"model.inputs must name one or more distinct inputs, got {names}")
    return result


def config_inputs(model_config, x, dataset="the dataset"):
    """``(input names or None, input_shape)`` for `model_from_config` from a config's
    ``[model]`` and the dataset's training ``x`` (an array, or a dict of arrays keyed by
    input name; None when the shapes are all declared).  The dataset's keys and the declared
    inputs must be the same names."""
    declared = declared_inputs(model_config)
    if isinstance(x, dict):
        keys = list(x)
        if declared is not None:
            names = [name for name, _ in declared]
            extra = [k for k in keys if k not in names]
            missing = [n for n in names if n not in keys]
            if extra or missing:
                problems = []
                if extra:
                    problems.append(f"no model input is named {', '.join(map(repr, extra))}")
                if missing:
                    problems.append(f"it gives no data for input {', '.join(map(repr, missing))}")
                raise DataError(
                    f"{dataset} gives inputs {', '.join(map(repr, keys))} but the model declares "
                    f"{', '.join(map(repr, names))}: {'; '.join(problems)} (model.inputs must name the dataset's keys)"
                )
        else:
            declared = [(key, None) for key in keys]  # the data's keys, in the dataset's order
        shapes = {
            name: shape if shape is not None else tuple(np.shape(x[name])[1:])
            for name, shape in declared
        }
        return [name for name, _ in declared], shapes
    data_shape = model_config.get("input_shape", None if x is None else tuple(np.shape(x)[1:]))
    if declared is None:
        return None, data_shape
    if len(declared) > 1:
        raise DataError(
            f"the model declares inputs {', '.join(repr(n) for n, _ in declared)}, but {dataset} gives one "
            "array: a dataset for several inputs returns x as a dict keyed by their names"
        )
    ((name, shape),) = declared
    return [name], {name: data_shape if shape is None else shape}


BLOCK_KEYS = ("block", "repeat", "inputs")


def expand_blocks(layers, blocks, input_name=DEFAULT_INPUT):
    """``layers`` with each ``{ block = "NAME", repeat = k }`` replaced by k copies of the
    layers of ``blocks[NAME]`` (the config's ``[model.blocks.NAME] layers = [...]``), one
    after the other: copy k's layers are named ``NAME_k/<name>`` (``<name>`` the layer's
    ``name`` in the block, else ``<type>_<index in the block>``) and read, where the block
    says ``inputs = ["input"]``, the block's input (what the entry reads: the layer listed
    before it, or its own ``inputs``), and otherwise the block's own layers.  Blocks may use
    other blocks (names nest: ``outer_0/inner_1/...``), never themselves."""
    if blocks is None:
        blocks = {}
    if not isinstance(blocks, Mapping):
        raise ConfigError(f"model.blocks must be a table of blocks, got {blocks!r}")
    for name, block in blocks.items():
        if not isinstance(block, Mapping) or set(block) != {"layers"}:
            raise ConfigError(
                f"model.blocks.{name} must be a table with 'layers' (a list of layer tables) "
                f"and nothing else, got {block!r}"
            )
        if not isinstance(block["layers"], list) or not block["layers"]:
            raise ConfigError(f"model.blocks.{name}.layers must be a non-empty list of layers")
    flat = []

    def previous_name():
        """The name of the layer listed last so far (named now if it has none yet)."""
        if not flat:
            return input_name
        if isinstance(flat[-1], str):
            flat[-1] = {"type": flat[-1]}
        if isinstance(flat[-1], dict) and "name" not in flat[-1]:
            flat[-1] = {**flat[-1], "name": f"{flat[-1].get('type')}_{len(flat) - 1}"}
        return flat[-1]["name"] if isinstance(flat[-1], dict) else flat[-1].name

    def use(entry, where, scope, source, stack):
        unknown = sorted(set(entry) - set(BLOCK_KEYS))
        if unknown:
            raise ConfigError(
                f"{where}: a block entry has no key {', '.join(map(repr, unknown))}; its keys: "
                + ", ".join(BLOCK_KEYS)
            )
        name, repeat = entry["block"], entry.get("repeat", 1)
        if name not in blocks:
            known = ", ".join(blocks) or "none"
            raise ConfigError(
                f"{where}: no block named {name!r} (model.blocks defines: {known})"
                + did_you_mean(name, list(blocks))
            )
        if name in stack:
            raise ConfigError(
                f"model.blocks.{stack[0]} uses itself ({' → '.join([*stack, name])}): a block "
                "cannot contain itself"
            )
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
            raise ConfigError(
                f"{where} (block {name!r}): repeat must be an integer >= 1, got {repeat!r}"
            )
        counters[scope, name] = first = counters.get((scope, name), 0)
        counters[scope, name] += repeat
        for k in range(first, first + repeat):
            prefix = f"{scope}/{name}_{k}" if scope else f"{name}_{k}"
            source = add(
                blocks[name]["layers"],
                prefix,
                source,
                [*stack, name],
                f"model.blocks.{name}.layers",
            )
        return source

    def add(specs, scope, block_input, stack, where):
        """Append ``specs`` (a block's, in ``scope``; the top level's, scope None) to
        ``flat``; return the name of the last layer added."""
        local, last = {}, block_input
        for index, spec in enumerate(specs):
            here = f"{where}.{index}"
            if isinstance(spec, Mapping) and "block" in spec:
                reads = spec.get("inputs")
                if reads is None:
                    source = last if scope else previous_name()
                else:
                    reads = [reads] if isinstance(reads, str) else reads
                    if not isinstance(reads, list) or len(reads) != 1:
                        raise ConfigError(
                            f"{here}: a block reads one input, got inputs = {reads!r}"
                        )
                    source = block_name(reads[0], local, block_input, here) if scope else reads[0]
                last = use(spec, here, scope, source, stack)
                continue
            if scope is None:
                flat.append(spec)
                continue
            spec = {"type": spec} if isinstance(spec, str) else dict(spec)
            own = spec.get("name") or f"{spec.get('type')}_{index}"
            reads = spec.get("inputs")
            if reads is None:
                reads = [last]
            else:
                reads = [reads] if isinstance(reads, str) else reads
                if not isinstance(reads, list):
                    raise ConfigError(f"{here}: 'inputs' must be a list of names, got {reads!r}")
                reads = [block_name(r, local, block_input, here) for r in reads]
            spec.update(name=f"{scope}/{own}", inputs=reads)
            flat.append(spec)
            local[own] = last = spec["name"]
        return last

    def block_name(read, local, block_input, where):
        if read == "input":
            return block_input
        if read not in local:
            raise ConfigError(
                f"{where}: no layer named {read!r} before it in its block; inside a block, "
                f"inputs name the block's own earlier layers or \"input\" (the block's input)"
            )
        return local[read]

    counters = {}
    add(list(layers), None, input_name, [], "model.layers")
    return flat


def model_from_config(
    layers, input_shape=None, dtype="float32", seed=None, inputs=None, blocks=None
):
    """The model a config's ``[model]`` describes.

    ``layers`` is the config's list of layer specs.  A spec may hold ``name`` and ``inputs``
    (names of earlier layers or of model inputs); a spec without ``inputs`` reads the layer
    listed before it (the first reads the model's input), so a list without any is a
    `Sequential`.  ``inputs`` optionally names several model inputs, with ``input_shape`` a
    mapping of their shapes.  ``blocks`` (the config's ``model.blocks``) defines the blocks
    that ``{ block = "NAME", repeat = k }`` entries of ``layers`` use (`expand_blocks`).
    """
    if blocks is not None or any(isinstance(s, Mapping) and "block" in s for s in layers):
        layers = expand_blocks(layers, blocks, (list(inputs) if inputs else [DEFAULT_INPUT])[0])
    specs = [
        spec if isinstance(spec, dict) else {"type": spec} if isinstance(spec, str) else spec
        for spec in layers
    ]
    # A layer's name keys its parameters, checkpoints and TensorBoard tags: two alike would
    # overwrite each other, so the config is refused here, naming both places.
    first_use = {}
    for index, spec in enumerate(specs):
        name = spec.get("name") if isinstance(spec, dict) else None
        if name is None:
            continue
        if name in first_use:
            raise ConfigError(
                f"model.layers.{index} ({spec.get('type')}): the name '{name}' is used twice "
                f"(model.layers.{first_use[name]} has it too); give each layer its own name"
            )
        first_use[name] = index
    graph = (inputs is not None and list(inputs) != [DEFAULT_INPUT]) or any(
        isinstance(s, dict) and "inputs" in s for s in specs
    )
    if not graph:
        if isinstance(input_shape, dict):
            input_shape = input_shape.get(DEFAULT_INPUT)
        return Sequential(layers, input_shape=input_shape, dtype=dtype, seed=seed)
    input_names = list(inputs) if inputs is not None else [DEFAULT_INPUT]
    if len(input_names) == 1 and not isinstance(input_shape, dict):
        input_shape = {input_names[0]: input_shape}
    if not isinstance(input_shape, dict) or set(input_shape) != set(input_names):
        raise ConfigError(
            f"the model's inputs {input_names} need their shapes (the data's, or model.input_shape)"
        )
    tensors = {name: Input(input_shape[name], name=name) for name in input_names}
    previous = tensors[input_names[0]]
    made = []
    for index, spec in enumerate(specs):
        if not isinstance(spec, dict):
            layer, reads = resolve("layers", spec), None
        else:
            spec = dict(spec)
            reads = spec.pop("inputs", None)
            layer = resolve("layers", spec)
        where = f"model.layers.{index} ({spec.get('type') if isinstance(spec, dict) else kind_of(layer)})"
        if not getattr(layer, "named", False):
            layer.name = f"{kind_of(layer)}_{index}"
            layer.named = True
        if layer.name in tensors:
            raise ConfigError(f"{where}: the name '{layer.name}' is used twice")
        if reads is None:
            parents = [previous]
        else:
            if isinstance(reads, str):
                reads = [reads]
            if (
                not isinstance(reads, list)
                or not reads
                or not all(isinstance(r, str) for r in reads)
            ):
                raise ConfigError(
                    f"{where}: 'inputs' must be a list of layer or input names, got {reads!r}"
                )
            parents = []
            for read in reads:
                if read not in tensors:
                    later = [s.get("name") for s in specs[index:] if isinstance(s, dict)]
                    if read in later or read == layer.name:
                        raise ConfigError(
                            f"{where}: input '{read}' comes later in the list; a layer can only read "
                            "layers listed before it"
                        )
                    raise ConfigError(
                        f"{where}: no layer or model input named '{read}'; known so far: {', '.join(tensors)}"
                    )
                parents.append(tensors[read])
        if getattr(layer, "multi_input", False):
            if reads is None:
                raise ConfigError(
                    f"{where}: a merge layer needs 'inputs', the names of the layers it merges"
                )
            tensor = _place(layer, parents)
        else:
            if len(parents) != 1:
                raise ConfigError(
                    f"{where}: layer {layer.name} takes one input, got {len(parents)}: {reads}"
                )
            tensor = _place(layer, parents)
        tensors[layer.name] = previous = tensor
        made.append(layer)
    # The last layer listed is the output; every other layer must lead to it.
    model = Model([tensors[n] for n in input_names], previous, dtype=dtype, seed=seed)
    dangling = [layer.name for layer in made if layer not in model.layers]
    if dangling:
        raise ConfigError(
            f"layers {', '.join(dangling)} do not lead to the output (the last layer listed)"
        )
    return model
