"""Exporting a model to ONNX, the format ONNX Runtime and every serving stack read.

Each layer writes its own part of the graph through one optional method,

    def to_onnx(self, builder, x):      # x: the name of the input value (a list of names
        ...                             #    for a multi_input layer)
        return output_name              # the name of the value it computes

using the `OnnxBuilder` it is given (``builder.add`` a node, ``builder.param`` a parameter,
``builder.activation`` its activation); an activation exports through a method of the same
signature.  The built-in layers and activations implement it; a plugin's layer does the
same.  A layer or activation without one makes export fail with a message naming it.

Values keep plugnet's layouts (batch first, images NHWC); a layer whose ONNX operator
wants NCHW (Conv, MaxPool, AveragePool) transposes around it with `OnnxBuilder.to_nchw` /
`to_nhwc`, and ONNX Runtime removes the back-to-back transposes when it loads the model.
The batch axis is dynamic.  Nodes are named ``<layer name>/<op>`` so Netron shows the same
structure as TensorBoard's graph.  Needs the ``onnx`` extra (``pip install "plugnet[onnx]"``).
"""

import contextlib
import importlib.metadata
import os

import numpy as np

from framework.base import is_identity, kind_of
from framework.errors import ConfigError, DataError, PluginError
from framework.saving import inbound_names, model_inputs
from framework.storage import atomic_write

OPSET = 17  # LayerNormalization is an operator from 17 on
CHECK_TOLERANCE = 1e-5  # the contract's bound on |ONNX Runtime - predict| in float32
METHOD = "to_onnx(self, builder, x)"


def require_onnx():
    try:
        import onnx
    except ImportError:
        raise ConfigError(
            'ONNX export needs the onnx package: pip install "plugnet[onnx]"'
        ) from None
    return onnx


class OnnxBuilder:
    """The ONNX graph being built; layers' ``to_onnx`` methods add their nodes through it.

    Value and node names are made unique and prefixed with the current layer's name, so a
    layer need only say what a node is (``builder.add("MatMul", [x, w])``).
    """

    def __init__(self, dtype, opset=OPSET):
        onnx = require_onnx()
        self.onnx = onnx
        self.helper = onnx.helper
        self.dtype = np.dtype(dtype)
        self.elem_type = self.helper.np_dtype_to_tensor_dtype(self.dtype)
        self.opset = opset
        self.nodes = []
        self.initializers = []
        self.used = set()
        self.scope = None
        self.exported = {}  # (id(layer), key) -> initializer name, for shared parameters

    # --- names ---------------------------------------------------------------------------------

    def unique(self, name):
        """``name``, or ``name_1``, ``name_2``... if taken."""
        candidate, count = name, 0
        while candidate in self.used:
            count += 1
            candidate = f"{name}_{count}"
        self.used.add(candidate)
        return candidate

    def scoped(self, name):
        return f"{self.scope}/{name}" if self.scope else name

    @contextlib.contextmanager
    def layer_scope(self, name):
        """Names made inside are prefixed with ``name`` (the layer being exported)."""
        outer, self.scope = self.scope, name
        try:
            yield
        finally:
            self.scope = outer

    # --- building ------------------------------------------------------------------------------

    def add(self, op_type, inputs, outputs=1, name=None, **attributes):
        """Add a node ``op_type`` on the value names ``inputs`` (``""`` for an omitted
        optional input) with ONNX ``attributes``; returns its output's name (a list of names
        when ``outputs`` > 1)."""
        node_name = self.unique(self.scoped(name or op_type))
        output_names = [self.unique(f"{node_name}:{index}") for index in range(outputs)]
        node = self.helper.make_node(
            op_type, list(inputs), output_names, name=node_name, **attributes
        )
        self.nodes.append(node)
        return output_names[0] if outputs == 1 else output_names

    def constant(self, value, name="const", dtype=None):
        """A constant tensor (an initializer); floating values are cast to the model's dtype,
        integers kept as int64 (the type ONNX takes shapes and indices in)."""
        array = np.asarray(value)
        if dtype is not None:
            array = array.astype(dtype)
        elif np.issubdtype(array.dtype, np.floating):
            array = array.astype(self.dtype)
        elif np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
            array = array.astype(np.int64)
        tensor_name = self.unique(self.scoped(name))
        # np.require keeps a scalar 0-d (a Gather index must be one to drop its axis).
        self.initializers.append(
            self.onnx.numpy_helper.from_array(np.require(array, requirements="C"), tensor_name)
        )
        return tensor_name

    def param(self, layer, key, transform=None):
        """Layer ``layer``'s parameter (or state array) ``key`` as a constant named
        ``<layer>/<key>``, through ``transform`` (e.g. a transpose) if given."""
        if transform is None and (id(layer), key) in self.exported:  # shared: once
            return self.exported[id(layer), key]
        arrays = {**getattr(layer, "state", {}), **layer.params}
        value = arrays[key]
        name = self.constant(value if transform is None else transform(value), key)
        if transform is None:
            self.exported[id(layer), key] = name
        return name

    def activation(self, activation, x):
        """``activation`` applied to ``x`` through its ``to_onnx``; the identity adds nothing."""
        if is_identity(activation):
            return x
        exporter = getattr(activation, "to_onnx", None)
        if exporter is None:
            raise PluginError(
                f"activation '{kind_of(activation)}' ({type(activation).__module__}."
                f"{type(activation).__qualname__}){self.where()} cannot be exported to ONNX: give "
                f"its class a method {METHOD} that adds its nodes and returns the output's name "
                "(see the README, 'Exporting your own layers')"
            )
        return exporter(self, x)

    def where(self):
        return f" in layer {self.scope}" if self.scope else ""

    def to_nchw(self, x):
        """An NHWC image batch as NCHW, the layout ONNX's Conv and pooling operators use."""
        return self.add("Transpose", [x], perm=[0, 3, 1, 2], name="to_nchw")

    def to_nhwc(self, x):
        return self.add("Transpose", [x], perm=[0, 2, 3, 1], name="to_nhwc")

    def window_attributes(self, layer, kernel_shape):
        """``kernel_shape``, ``strides`` and ``pads`` of a sliding-window layer built with
        `framework.windows.window_geometry` (its ``pads``: ((top, bottom), (left, right));
        TensorFlow's "same" padding puts the odd one after, which ONNX's explicit
        [top, left, bottom, right] pads express exactly)."""
        (top, bottom), (left, right) = layer.pads
        return {
            "kernel_shape": list(kernel_shape),
            "strides": list(layer.strides),
            "pads": [top, left, bottom, right],
        }


def layer_exporter(layer):
    exporter = getattr(layer, "to_onnx", None)
    if exporter is None:
        cls = type(layer)
        raise PluginError(
            f"layer {layer.name} ('{kind_of(layer)}', {cls.__module__}.{cls.__qualname__}) "
            f"cannot be exported to ONNX: give its class a method {METHOD} that adds its nodes "
            "through the builder and returns the output's name (see the README, 'Exporting "
            "your own layers')"
        )
    return exporter


def to_onnx(model, opset=OPSET):
    """``model`` (built) as an ``onnx.ModelProto``, checked by the ONNX checker."""
    if not model.built:
        raise ConfigError("the model is not built yet (give input_shape): nothing to export")
    if opset < OPSET:
        raise ConfigError(f"ONNX export writes opset {OPSET} or newer, not {opset}")
    builder = OnnxBuilder(model.dtype, opset)
    helper = builder.helper
    values, graph_inputs = {}, []
    integer = model.integer_inputs() if callable(getattr(model, "integer_inputs", None)) else set()
    for name, shape, dtype in model_inputs(model):
        elem = builder.elem_type
        if name in integer or (dtype is not None and np.issubdtype(np.dtype(dtype), np.integer)):
            elem = helper.np_dtype_to_tensor_dtype(np.dtype(np.int64))
        builder.used.add(name)
        graph_inputs.append(helper.make_tensor_value_info(name, elem, ["batch", *shape]))
        values[name] = name
    for index, layer in enumerate(model.layers):
        exporter = layer_exporter(layer)
        fed = [values[name] for name in inbound_names(model, index, layer)]
        with builder.layer_scope(layer.name):
            values[layer.name] = exporter(
                builder, fed if getattr(layer, "multi_input", False) else fed[0]
            )
    output_layer = getattr(model, "output_layer", None) or model.layers[-1]
    builder.used.add("output")
    builder.nodes.append(
        helper.make_node("Identity", [values[output_layer.name]], ["output"], name="output")
    )
    output_shape = getattr(model, "output_shape", None) or output_layer.output_shape
    graph = helper.make_graph(
        builder.nodes,
        "plugnet",
        graph_inputs,
        [helper.make_tensor_value_info("output", builder.elem_type, ["batch", *output_shape])],
        initializer=builder.initializers,
    )
    onnx_model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="plugnet",
        producer_version=plugnet_version(),
    )
    # The IR version this opset came with, so ONNX Runtimes of that era read the file.
    onnx_model.ir_version = min(onnx_model.ir_version, 8 if opset <= 17 else 9)
    try:
        # full_check runs shape inference: a layer's exporter that computes a shape other
        # than the layer's declared output shape is caught here, not by a user's runtime.
        builder.onnx.checker.check_model(onnx_model, full_check=True)
    except (
        builder.onnx.checker.ValidationError,
        builder.onnx.shape_inference.InferenceError,
    ) as exc:
        raise PluginError(f"the exported ONNX graph is invalid: {exc}") from exc
    return onnx_model


def plugnet_version():
    """The installed plugnet's version (its distribution's, which ``framework.__version__``
    repeats; read here so that this module need not import the package above it)."""
    try:
        return importlib.metadata.version("plugnet")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def export_onnx(model, path, opset=OPSET):
    """Write ``model`` as an ONNX file at ``path`` (a temporary file renamed into place, so a
    failure leaves nothing behind); returns ``path``."""
    onnx_model = to_onnx(model, opset)
    data = onnx_model.SerializeToString()
    path = os.fspath(path)
    try:
        atomic_write(path, lambda f: f.write(data))
    except OSError as exc:
        raise DataError(f"cannot write the ONNX file {path}: {exc.strerror or exc}") from exc
    return path


def onnx_session(onnx_model):
    """An ONNX Runtime session for a model proto, file bytes or a path (CPU)."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(
            'running ONNX models needs onnxruntime: pip install "plugnet[onnx]"'
        ) from None
    if hasattr(onnx_model, "SerializeToString"):
        onnx_model = onnx_model.SerializeToString()
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: no warnings about unused initializers
    return onnxruntime.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])


def run_onnx(session, x, batch_size=1024):
    """The session's outputs for ``x`` (an array, or a mapping of input name to array)."""
    names = [item.name for item in session.get_inputs()]
    feeds = x if isinstance(x, dict) else {names[0]: x}
    n = len(next(iter(feeds.values())))
    outputs = []
    for start in range(0, n, batch_size):
        batch = {
            name: np.ascontiguousarray(feeds[name][start : start + batch_size]) for name in names
        }
        outputs.append(session.run(None, batch)[0])
    return np.concatenate(outputs)


def largest_difference(model, onnx_model, x, batch_size=256):
    """``(max |ONNX Runtime - predict|, scale)`` over ``x``, where scale is the largest
    output's magnitude (at least 1): compare the difference with ``CHECK_TOLERANCE · scale``."""
    x = model.prepare(x, "x")
    expected = model.predict(x, batch_size=batch_size)
    got = run_onnx(onnx_session(onnx_model), x, batch_size=batch_size)
    difference = float(np.max(np.abs(got.astype(np.float64) - expected)))
    return difference, max(1.0, float(np.max(np.abs(expected))))
