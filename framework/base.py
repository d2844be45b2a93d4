"""Base classes for components.

The protocols, not these classes, are what the framework relies on (duck typing): a
third-party component may be any object with the right methods.  The bases give defaults
and a few helpers, and they are what the built-ins derive from.
"""

import math

import numpy as np

from framework.errors import ConfigError


def kind_of(component):
    """The name a component is known by: the one it was registered under (the registry
    sets ``kind``), else its class's name in lower case."""
    return getattr(component, "kind", None) or type(component).__name__.lower()


def fans(shape):
    """``(fan_in, fan_out)`` of a weight shape.

    The last axis is the number of output units; every other axis feeds each of them, so a
    dense ``(in, out)`` kernel has fan-in ``in`` and a conv ``(kh, kw, in, out)`` kernel has
    fan-in ``kh*kw*in`` and fan-out ``kh*kw*out`` (the receptive field counts on both sides).
    """
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def activation_spec(spec):
    """The activation object for a layer's ``activation`` parameter (None: the identity): the
    attrs converter for an ``activation`` field, so a layer of any kind takes
    ``activation="relu"`` as the built-ins do."""
    from framework.registry import resolve

    return resolve("activations", "identity" if spec is None else spec)


def is_identity(activation):
    return getattr(activation, "kind", None) == "identity"


def activate(layer, z):
    """``a = f(z)`` with the layer's activation, keeping ``z`` (unless f is the identity) and
    ``a`` as its ``preactivations`` and ``activations`` for backward and TensorBoard."""
    if is_identity(layer.activation):
        layer.preactivations, layer.activations = None, z
    else:
        layer.preactivations, layer.activations = z, layer.activation.forward(z)
    return layer.activations


def preactivation_grad(layer, grad_a):
    """dL/dz from dL/da through the layer's activation."""
    if layer.preactivations is None:
        return grad_a
    return layer.activation.backward(layer.preactivations, layer.activations, grad_a)


def targets_like(y_true, y_pred):
    """Targets shaped and typed as the predictions: a single-output model's may come as one
    value per sample, and integer labels (0 / 1) would otherwise make every gradient of a
    float32 model float64, and its backward pass three times slower."""
    y_true = np.asarray(y_true)
    if y_true.shape != y_pred.shape:
        y_true = y_true.reshape(y_pred.shape)
    return y_true.astype(y_pred.dtype, copy=False)


def shallow_copy(component):
    """A new object of ``component``'s class holding the same attribute values (slots, as
    attrs gives its fields, and the instance dictionary alike): `copy.copy` of an attrs
    class with slots keeps only the fields, losing what `build` set."""
    other = object.__new__(type(component))
    for cls in type(component).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name not in ("__dict__", "__weakref__") and hasattr(component, name):
                object.__setattr__(other, name, getattr(component, name))
    if hasattr(component, "__dict__"):
        other.__dict__.update(component.__dict__)
    return other


class Layer:
    """Base of layers.

    A model sets ``name``, ``dtype`` and ``rng`` on each layer before calling
    ``build(input_shape)`` (shapes exclude the batch axis).  ``add_param`` creates a parameter
    with its zeroed gradient; ``forward`` keeps what ``backward`` needs; ``backward`` fills
    ``grads`` (in place where it can, so nothing is reallocated each step) and returns the
    gradient with respect to the input.
    """

    name = None
    kind = None  # the registered name; set by `create` for registered layers
    dtype = np.float32
    rng = None
    preactivations = None
    activations = None
    # Whether backward must return dL/dx.  The model clears it on its first layer during
    # training, where nothing consumes that gradient, so layers may skip computing it.
    needs_input_grad = True
    # A merge layer (add, concatenate) takes a list of inputs: build gets a list of shapes,
    # forward a list of arrays, and backward returns a list of gradients.
    multi_input = False
    # A layer reading integer token ids (embedding): the model keeps that input integer.
    integer_input = False
    # A layer that treats each position of a sequence on its own (embedding, dense, layer
    # norm, dropout): `framework.generate` may feed it one position at a time.
    position_wise = False
    named = False  # the name was given (config `name`, or create(..., name=...)), not derived
    # Whether a training batch may be shared out over threads, each part through its own
    # `twin` of the layer (`framework.batch_split`): true for a layer whose samples do not
    # meet in forward (no random draws; batch statistics only where the parts exchange them,
    # as batch norm does through `batch_split.current_part`) and whose `twin` gives the copy
    # its own copies of everything forward and backward write into in place.
    splits_batch = False
    _placed = False  # called on a symbolic tensor: the layer has its place in a graph

    def __call__(self, inputs):
        """Place the layer in a model being described (Keras' functional API): ``inputs`` is
        a `framework.Input`, another layer's output, or a list of them for a merge layer;
        returns this layer's symbolic output."""
        return connect(self, inputs)

    def __getattr__(self, name):
        # Parameters and gradients live in the instance dictionary, created on first use, so
        # subclasses (attrs classes among them) need not call ``Layer.__init__``; after that
        # first use they are plain attribute look-ups, which the training step makes often.
        if name in ("params", "grads"):
            return self.__dict__.setdefault(name, {})
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def add_param(self, name, shape, initializer):
        """Create parameter ``name`` of ``shape`` with ``initializer`` (a name, a
        ``{"type": ...}`` mapping or an initializer object) and its zero gradient."""
        from framework.registry import resolve

        init = resolve("initializers", initializer)
        rng = self.rng if self.rng is not None else np.random.default_rng()
        value = np.asarray(init(tuple(shape), rng), dtype=self.dtype)
        if value.shape != tuple(shape):
            raise ValueError(
                f"initializer {init!r} returned shape {value.shape}, expected {tuple(shape)}"
            )
        self.params[name] = value
        self.grads[name] = np.zeros_like(value)
        return value

    def twin(self):
        """A copy of this layer for another thread's share of a batch: the same parameters
        (the very arrays, so an optimizer step updates both), its own gradients, its own
        activation object and working memory (``scratch``); whatever forward assigns to the
        copy's attributes is the copy's own.  A layer that writes into other arrays of its
        own in place extends this (attention's joined gradients, dense's tied gradient)."""
        other = shallow_copy(self)
        other.__dict__["grads"] = {name: np.zeros_like(g) for name, g in self.grads.items()}
        if isinstance(self.__dict__.get("scratch"), dict):
            other.__dict__["scratch"] = {}
        activation = getattr(self, "activation", None)
        if activation is not None:
            twin = getattr(activation, "twin", None)
            other.activation = twin() if twin is not None else shallow_copy(activation)
        return other

    def build(self, input_shape):
        """Create parameters for ``input_shape``; return the output shape."""
        return tuple(input_shape)

    def forward(self, x, training=False):
        raise NotImplementedError

    def backward(self, grad_y):
        raise NotImplementedError


class Activation:
    """Base of activations.

    ``link`` names the canonical link this activation is (``"softmax"``, ``"sigmoid"``), so a
    loss can fuse its gradient with it: for softmax with cross-entropy the gradient with
    respect to the net input is ``(y_pred - y_true) / batch``, exact even where the
    probabilities underflow.
    """

    link = None

    def twin(self):
        """A copy for a layer's `Layer.twin`: an activation that keeps arrays between calls
        to write into again gives the copy its own."""
        return shallow_copy(self)

    def forward(self, z):
        raise NotImplementedError

    def backward(self, z, a, grad_a):
        raise NotImplementedError


class Loss:
    """Base of losses: ``forward`` gives the batch mean, ``backward`` its gradient."""

    def forward(self, y_pred, y_true):
        raise NotImplementedError

    def backward(self, y_pred, y_true):
        raise NotImplementedError

    def fuses_with(self, link):
        """Whether ``backward_fused`` applies to an output activation with this link."""
        return False

    def backward_fused(self, y_pred, y_true):
        """Gradient with respect to the output layer's net input, for a fused link."""
        raise NotImplementedError

    def check_targets(self, y_true, output_shape):
        """Raise `framework.DataError` when ``y_true`` cannot be targets for outputs of
        ``output_shape`` (batch axis excluded).  The default accepts targets of the output's
        shape, or one value per sample for a single output."""
        from framework.errors import DataError

        y_shape = tuple(np.shape(y_true)[1:])
        if y_shape != tuple(output_shape) and not (y_shape == () and tuple(output_shape) == (1,)):
            raise DataError(
                f"targets of shape {y_shape} do not match the model's output shape "
                f"{tuple(output_shape)}"
            )


class Optimizer:
    """Base of optimizers.

    Per-parameter state is kept in lists parallel to the ``params`` list given to ``step``,
    created on the first step.  ``state_dict`` returns arrays and numbers only, so it stores in
    a checkpoint without pickling.
    """

    full_batch = False
    lr = 0.01

    def step(self, params, grads):
        raise NotImplementedError

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, got {sorted(state)}")


class Initializer:
    """Base of initializers: ``__call__(shape, rng) -> ndarray``."""

    def __call__(self, shape, rng):
        raise NotImplementedError


class Metric:
    """Base of metrics: ``__call__(y_pred, y_true) -> float``.

    ``higher_is_better`` tells early stopping and sweeps which way is good."""

    higher_is_better = True

    def __call__(self, y_pred, y_true):
        raise NotImplementedError


class Dataset:
    """Base of datasets: ``load(rng) -> (x_train, y_train, x_test, y_test)``."""

    def load(self, rng):
        raise NotImplementedError


class Callback:
    """Base of callbacks: decorate the training-loop hooks you implement with
    ``framework.hookimpl``.  Nothing else is required."""


# --- symbolic tensors: a model being described ------------------------------------------
# Here, below the models, because a layer call places the layer (`Layer.__call__`); the
# models (`framework.model`) then order what was placed.


class SymbolicTensor:
    """What a layer call returns while a model is being described: which layer makes it
    (``producer``) from which other symbolic tensors (``parents``).  It holds no values."""

    def __init__(self, producer, parents):
        self.producer = producer
        self.parents = list(parents)

    @property
    def name(self):
        return self.producer.name

    def __repr__(self):
        return f"<symbolic output of {self.producer.name or kind_of(self.producer)}>"


def connect(layer, inputs):
    """Place ``layer`` in a graph being described, reading ``inputs`` (a symbolic tensor, or
    a list of them for a ``multi_input`` layer); return its symbolic output.  A layer has
    one place in one model, so placing it twice is an error naming it."""
    if getattr(layer, "_placed", False):
        raise ConfigError(
            f"layer {layer.name or kind_of(layer)} is already used in a model: a layer object has "
            "one place in one graph; create another layer for the second use"
        )
    many = isinstance(inputs, (list, tuple))
    parents = list(inputs) if many else [inputs]
    for parent in parents:
        if not isinstance(parent, SymbolicTensor):
            raise ConfigError(
                f"layer {layer.name or kind_of(layer)} was called on {type(parent).__name__}; "
                "call layers on framework.Input(...) or on another layer's output"
            )
    if getattr(layer, "multi_input", False) != many:
        what = "a list of tensors" if getattr(layer, "multi_input", False) else "one tensor"
        raise ConfigError(f"layer {layer.name or kind_of(layer)} takes {what}")
    layer._placed = True
    return SymbolicTensor(layer, parents)
