"""`Sequential`: layers applied in order, with their parameters as one flat vector."""

import os

import numpy as np

from framework.base import kind_of
from framework.errors import ConfigError, DataError, ShapeError
from framework.registry import resolve
from framework.storage import load_arrays, save_arrays

FLOAT_DTYPES = {"float32": np.float32, "float64": np.float64}


def float_dtype(dtype):
    """``np.float32`` or ``np.float64`` from a name or dtype; anything else is an error."""
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in FLOAT_DTYPES:
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return FLOAT_DTYPES[name]


def shape_text(shape):
    return "(None, " + ", ".join(map(str, shape)) + ")" if shape else "(None,)"


class Sequential:
    """A stack of layers.

    ``layers`` are layer objects, names or ``{"type": ...}`` mappings.  The model builds when
    it knows its input shape (given here, or the first time it sees data); building names the
    layers ``<kind>_<index>`` and creates their parameters in ``dtype`` from a generator
    seeded by ``seed``.
    """

    def __init__(self, layers, input_shape=None, dtype="float32", seed=None):
        self.layers = [resolve("layers", spec) for spec in layers]
        if not self.layers:
            raise ConfigError("a model needs at least one layer")
        self.dtype = float_dtype(dtype)
        self.rng = np.random.default_rng(seed)
        self.input_shape = None
        self.output_shape = None
        self.first_trainable = 0  # set by `build`
        for index, layer in enumerate(self.layers):
            layer.name = f"{kind_of(layer)}_{index}"
        if input_shape is not None:
            self.build(input_shape)

    @property
    def built(self):
        return self.input_shape is not None

    def build(self, input_shape):
        shape = tuple(int(n) for n in input_shape)
        self.input_shape = shape
        for layer in self.layers:
            layer.dtype = self.dtype
            layer.rng = self.rng
            try:
                out = layer.build(shape)
            except ShapeError:
                raise
            except (ValueError, TypeError) as exc:
                raise ShapeError(
                    f"layer {layer.name} cannot take input of shape {shape_text(shape)}: {exc}"
                ) from exc
            layer.input_shape, shape = shape, tuple(out)
            layer.output_shape = shape
        self.output_shape = shape
        # Training needs gradients down to the first layer with parameters and no further:
        # layers before it (flatten, dropout...) and its own input gradient are skipped.
        self.first_trainable = next(
            (i for i, layer in enumerate(self.layers) if getattr(layer, "params", None)), len(self.layers)
        )
        return shape

    # --- computing ---------------------------------------------------------------------------

    def check_input(self, x):
        """Raise `ShapeError` unless ``x`` is a batch of the model's inputs."""
        shape = tuple(np.shape(x)[1:])
        if shape != self.input_shape:
            raise ShapeError(
                f"input of layer {self.layers[0].name} is incompatible: expected shape "
                f"{shape_text(self.input_shape)}, got {shape_text(shape)}"
            )

    def forward(self, x, training=False):
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, grad_output, input_grad=True):
        """Backpropagate the loss gradient with respect to the output; fills every
        ``layer.grads`` and returns the gradient with respect to the input (None when
        ``input_grad`` is false: training needs only the parameters' gradients)."""
        for layer in reversed(self.layers[self._backward_start(input_grad) :]):
            grad_output = layer.backward(grad_output)
        return grad_output if input_grad else None

    def backward_preactivation(self, grad_preactivation, input_grad=True):
        """As `backward`, starting from the gradient with respect to the output layer's net
        input (a loss fused with the output activation gives it directly)."""
        start = self._backward_start(input_grad)
        grad = self.layers[-1].backward_preactivation(grad_preactivation)
        for layer in reversed(self.layers[start:-1]):
            grad = layer.backward(grad)
        return grad if input_grad else None

    def _backward_start(self, input_grad):
        """The index of the first layer backward visits; tells that layer whether its input
        gradient is wanted."""
        first = self.first_trainable
        if first < len(self.layers):
            self.layers[first].needs_input_grad = input_grad
        return 0 if input_grad else first

    def prepare(self, x, what="x"):
        """``x`` as an array of the model's dtype, building the model on first sight."""
        x = np.asarray(x)
        if x.ndim < 1 or x.shape[0] == 0:
            raise DataError(f"{what} is empty")
        if not np.issubdtype(x.dtype, np.number) and x.dtype != bool:
            raise DataError(f"{what} must be numeric, got dtype {x.dtype}")
        if not self.built:
            self.build(x.shape[1:])
        self.check_input(x)
        return np.asarray(x, dtype=self.dtype)

    def predict(self, x, batch_size=None):
        """Outputs for ``x`` in evaluation mode, in batches of ``batch_size`` (all at once by
        default)."""
        x = self.prepare(x)
        if batch_size is None or batch_size >= len(x):
            return self.forward(x, training=False)
        return np.concatenate(
            [self.forward(x[i : i + batch_size], training=False) for i in range(0, len(x), batch_size)]
        )

    # --- parameters --------------------------------------------------------------------------

    def parameters(self):
        """``[(layer name, parameter name, array)]`` in a fixed order."""
        return [(layer.name, key, value) for layer in self.layers for key, value in layer.params.items()]

    def params_list(self):
        return [value for layer in self.layers for value in layer.params.values()]

    def grads_list(self):
        return [layer.grads[key] for layer in self.layers for key in layer.params]

    @property
    def num_params(self):
        return sum(value.size for value in self.params_list())

    def get_params(self):
        """All parameters as one flat vector (a copy), in `parameters` order."""
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
        """``{"dense_0/weights": array, ...}``."""
        return {f"{layer}/{key}": value for layer, key, value in self.parameters()}

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
            param[...] = value

    def save(self, path):
        """Save architecture and weights to one ``.npz`` file (no pickle); `framework.load_model` reads it."""
        from framework.saving import save_model  # saving builds models: imported late, no cycle

        return save_model(self, path)

    def save_weights(self, path):
        """Save the parameters to an ``.npz`` file (no pickle), atomically."""
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
        """A table of layers, output shapes and parameter counts."""
        if not self.built:
            return "Sequential (not built: input shape unknown)"
        rows = [("layer", "output shape", "params")]
        for layer in self.layers:
            count = sum(v.size for v in layer.params.values())
            rows.append((layer.name, shape_text(layer.output_shape), f"{count:,}"))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        rule = "-" * (sum(widths) + 4)

        def line(row):
            return f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}"

        body = [line(rows[0]), rule, *map(line, rows[1:]), rule]
        body.append(f"total parameters: {self.num_params:,}  (input {shape_text(self.input_shape)}, {np.dtype(self.dtype).name})")
        return "\n".join(body)

    def __repr__(self):
        return f"Sequential({self.layers!r})"
