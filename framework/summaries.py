"""TensorBoard summaries built from numpy: tensor statistics, histograms, hyper-parameters,
text and the model graph, as the protocol buffers tensorboardX writes.

Nothing here needs TensorFlow or PyTorch: the protocol buffers ship with tensorboardX.  The
``tensorboard`` callback (and any plugin) builds `Summary` values with these functions and
queues them on a `framework.event_files.EventFileWriter`, all values of a step as one event.
"""

import functools
import math
import numbers
import time

import attrs
import numpy as np
from tensorboardX.proto import (
    api_pb2,
    graph_pb2,
    plugin_hparams_pb2,
    tensor_shape_pb2,
    types_pb2,
    versions_pb2,
)
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import HistogramProto, Summary, SummaryMetadata

from framework.base import kind_of
from framework.config import flatten_config

STATS = ("mean", "stddev", "max", "min")
HISTOGRAM_BINS = 64

# --- statistics and histograms -------------------------------------------------------------


def tensor_stats(array):
    """``(mean, stddev, max, min)`` of ``array`` as Python floats (NaN for an empty array).

    Four reads of the data and no copy: the sum, the sum of squares (a BLAS dot product),
    the max and the min, the variance being E[x²] − mean².  That difference loses digits
    when the mean dominates the spread (sigmoid outputs), so where the variance is under a
    quarter of E[x²] it is computed again from the deviations, as ``np.std`` does.
    """
    flat = np.ravel(array)  # a view for the contiguous arrays layers keep
    n = flat.size
    if n == 0:
        return (math.nan,) * 4
    if flat.dtype.kind != "f":
        flat = flat.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # a diverged run logs inf/NaN quietly
        mean = float(np.einsum("i->", flat)) / n  # SIMD-summed: twice as fast as np.sum here
        square_mean = float(np.dot(flat, flat)) / n
        variance = square_mean - mean * mean
        if not variance >= 0.25 * square_mean:  # also when NaN: then this gives NaN too
            deviations = flat - flat.dtype.type(mean)
            variance = float(np.dot(deviations, deviations)) / n
        top, bottom = float(np.maximum.reduce(flat)), float(np.minimum.reduce(flat))
    return mean, math.sqrt(variance) if variance >= 0 else math.nan, top, bottom


# Tensors of at most this many values get their statistics together (`tensors_stats`); up
# to here the shared buffers (float64, three of them) stay small enough to be reused from
# the heap: B1's tensors of 16,384 values made the step slower, of 32,768 five times slower.
SMALL_TENSOR = 4096


def tensors_stats(arrays):
    """`tensor_stats` of each of ``arrays``, the small ones (up to ``SMALL_TENSOR`` values)
    all at once.

    For a bias or a small layer's activations nearly all of `tensor_stats`' time is the
    calls themselves, not the arithmetic (15–25 µs each within a training step, where the
    same call on its own takes 9).  The small tensors are copied into one float64 buffer
    and each statistic is one ``reduceat`` over it: a dozen calls for all of them, where
    one by one they take five each.  In float64, the variance is the mean of the squared
    deviations (two passes, as ``np.std``): no loss of digits to correct.
    """
    stats = [None] * len(arrays)
    small, flats = [], []
    for index, array in enumerate(arrays):
        flat = np.ravel(array)
        if 0 < flat.size <= SMALL_TENSOR and flat.dtype.kind in "biuf":
            small.append(index)
            flats.append(flat)
        else:
            stats[index] = tensor_stats(flat)
    if len(small) < 2:  # nothing to share
        for index in small:
            stats[index] = tensor_stats(arrays[index])
        return stats
    sizes = np.array([flat.size for flat in flats])
    starts = np.zeros(len(flats), np.intp)
    np.cumsum(sizes[:-1], out=starts[1:])
    values = np.concatenate(flats, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # a diverged run logs inf/NaN quietly
        means = np.add.reduceat(values, starts) / sizes
        deviations = values - np.repeat(means, sizes)
        deviations *= deviations
        variances = np.add.reduceat(deviations, starts) / sizes
        tops = np.maximum.reduceat(values, starts)
        bottoms = np.minimum.reduceat(values, starts)
    for index, mean, variance, top, bottom in zip(
        small, means.tolist(), variances.tolist(), tops.tolist(), bottoms.tolist(), strict=True
    ):
        stats[index] = (mean, math.sqrt(variance) if variance >= 0 else math.nan, top, bottom)
    return stats


BUCKET_BLOCK = 32_768  # values bucketed at a time: their temporaries stay in the CPU's cache


def bucket_counts(flat, low, high, bins):
    """Counts of ``flat`` in ``bins`` equal buckets spanning ``[low, high]`` exactly (the
    array's own min and max, ``low < high``), the last bucket closed as in ``np.histogram``.

    Every value lies in range, so numpy's general path (masking out-of-range values, float64
    copies, edge corrections) is not needed: scaled values, their integer bucket indices,
    one ``bincount`` — about five times faster for a layer's weights.  The indices are bytes
    where the buckets fit (a quarter of the memory of int32, an eighth of intp), and the
    maximum, whose index is ``bins``, is moved into the last bucket afterwards rather than
    clipped element by element.  The values go through in blocks of ``BUCKET_BLOCK``, into
    the same two small buffers: whole-array temporaries (0.8 MB of scaled values for a
    (784, 256) float32 tensor, 1.6 MB of indices inside ``bincount``) are fresh memory
    that each histogram faults in page by page, and within a training run, whose arrays
    have pushed them out of the cache, B1's histograms took 2.6 ms against 1.4 in blocks.
    """
    scale = bins / (high - low)
    if flat.dtype != np.float64 and not 1e-30 < scale < 1e30:  # would overflow float32
        flat = flat.astype(np.float64)
    kind = flat.dtype.type
    low, scale = kind(low), kind(scale)
    block = min(flat.size, BUCKET_BLOCK)
    scaled = np.empty(block, flat.dtype)
    index = np.empty(block, np.uint8 if bins < 255 else np.intp)  # 0 … bins
    counts = np.zeros(bins + 1, np.intp)
    for start in range(0, flat.size, BUCKET_BLOCK):
        part = flat[start : start + BUCKET_BLOCK]
        values, indices = scaled[: part.size], index[: part.size]
        np.subtract(part, low, out=values)
        values *= scale
        indices[...] = values  # truncated: the values are >= 0
        part_counts = np.bincount(indices, minlength=bins + 1)
        if part_counts.size > bins + 1:  # should rounding ever land past the maximum
            part_counts = np.append(part_counts[:bins], part_counts[bins:].sum())
        counts += part_counts
    counts[bins - 1] += counts[bins]  # the maximum itself falls in the last bucket
    return counts[:bins]


def histogram(array, stats=None, bins=HISTOGRAM_BINS):
    """A `HistogramProto` of ``array`` in ``bins`` equal buckets between its min and max,
    or None when it is empty or holds NaN or inf (no range to bucket).

    ``stats`` are `tensor_stats` already computed for ``array``, reused for the range, sum
    and sum of squares.  TensorBoard re-buckets histograms for display, so tensorboardX's
    ~1,500 exponential buckets (found by sorting) buy nothing over equal ones.
    """
    flat = np.ravel(array)
    if flat.size == 0:
        return None
    if flat.dtype.kind != "f":
        flat = flat.astype(np.float64)
    mean, stddev, top, bottom = stats if stats is not None else tensor_stats(flat)
    if not all(map(math.isfinite, (mean, stddev, top, bottom))):
        return None
    n = flat.size
    if top > bottom:
        counts = bucket_counts(flat, bottom, top, bins).astype(np.float64)
        limits = bottom + (top - bottom) * bucket_fractions(bins)
        limits[-1] = top  # exactly, whatever the rounding
    else:  # every value equal: one bucket
        counts, limits = np.array([float(n)]), np.array([top])
    # The protocol buffer's fields are doubles: converting Python floats into them takes
    # a third of the time Python ints take (4 µs against 13 for 64 buckets).
    return HistogramProto(
        min=bottom,
        max=top,
        num=n,
        sum=mean * n,
        sum_squares=n * (stddev * stddev + mean * mean),
        bucket_limit=limits.tolist(),
        bucket=counts.tolist(),
    )


@functools.cache
def bucket_fractions(bins):
    """``[1/bins, 2/bins, …, 1]``: where the buckets' right edges lie between the min and
    the max (computed once: `np.linspace` costs more than the smaller histograms)."""
    fractions = np.arange(1, bins + 1) / bins
    fractions.flags.writeable = False
    return fractions


def scalar_value(tag, value):
    return Summary.Value(tag=tag, simple_value=float(value))


def histogram_value(tag, histo):
    return Summary.Value(tag=tag, histo=histo)


def tensor_values(tag, array, scalars=True, histograms=False):
    """The summary values of one tensor: ``tag/mean``, ``tag/stddev``, ``tag/max``,
    ``tag/min`` when ``scalars``, and the histogram ``tag`` when ``histograms``."""
    stats = tensor_stats(array)
    values = []
    if scalars:
        values.extend(
            scalar_value(f"{tag}/{name}", value) for name, value in zip(STATS, stats, strict=True)
        )
    if histograms:
        histo = histogram(array, stats)
        if histo is not None:
            values.append(histogram_value(tag, histo))
    return values


def layer_tensors(layer):
    """``{name: array}`` of what a layer shows in TensorBoard, in the contract's order:
    ``weights``, ``bias`` (and any other parameter), ``preactivations``, ``activations``,
    ``weights_grad``, ``bias_grad`` (and the other gradients).  Missing tensors (no bias,
    ``preactivations`` of None, nothing computed yet) are left out."""
    tensors = dict(getattr(layer, "params", {}) or {})
    for name in ("preactivations", "activations"):
        value = getattr(layer, name, None)
        if value is not None:
            tensors[name] = value
    for name, grad in (getattr(layer, "grads", {}) or {}).items():
        tensors[f"{name}_grad"] = grad
    return tensors


# --- text ----------------------------------------------------------------------------------


def text_value(tag, text):
    """A value TensorBoard's Text tab shows (markdown)."""
    from tensorboardX.proto.plugin_text_pb2 import TextPluginData
    from tensorboardX.proto.tensor_pb2 import TensorProto

    metadata = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(
            plugin_name="text", content=TextPluginData(version=0).SerializeToString()
        )
    )
    tensor = TensorProto(
        dtype=types_pb2.DT_STRING,
        string_val=[text.encode("utf-8")],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]
        ),
    )
    return Summary.Value(tag=tag, metadata=metadata, tensor=tensor)


def code_block(text):
    """``text`` as a markdown code block (indented four spaces: no fence to escape)."""
    return "\n".join("    " + line for line in str(text).splitlines())


# --- hyper-parameters ----------------------------------------------------------------------

HPARAMS_PLUGIN = "hparams"
EXPERIMENT_TAG = "_hparams_/experiment"
SESSION_START_TAG = "_hparams_/session_start_info"
SESSION_END_TAG = "_hparams_/session_end_info"
# Config keys that differ between runs without being hyper-parameters.
NOT_HPARAMS = ("logging.", "train.callbacks.", "sweep.")


def run_hparams(config):
    """The hyper-parameters of a run: its flattened config (``train.optimizer.lr``,
    ``model.layers.0.units``, ...) without where it logs, its callbacks or its sweep, and
    with every value a number, string or bool (anything else as its text)."""
    hparams = {}
    for key, value in flatten_config(config or {}).items():
        if key.startswith(NOT_HPARAMS) or value is None:
            continue
        if not isinstance(value, (bool, numbers.Real, str)):
            value = str(value)
        hparams[key] = value
    return hparams


def component_hparams(trainer):
    """Hyper-parameters read off a trainer's components, for runs without a config (the
    Python API): each component's type and its attrs fields that are numbers, strings or
    bools (components among them by their type), under the keys a config would give."""
    hparams = {}

    def add(prefix, component):
        hparams[f"{prefix}type"] = kind_of(component)
        if not attrs.has(type(component)):
            return
        for field in attrs.fields(type(component)):
            value = getattr(component, field.name, None)
            if not field.init or value is None:
                continue
            if not isinstance(value, (bool, numbers.Real, str)):
                value = getattr(value, "kind", None) or str(value)
            hparams[f"{prefix}{field.alias or field.name}"] = value

    add("train.loss.", trainer.loss)
    add("train.optimizer.", trainer.optimizer)
    for index, layer in enumerate(trainer.model.layers):
        add(f"model.layers.{index}.", layer)
    if getattr(trainer, "l2", 0):
        hparams["train.l2"] = trainer.l2
    return hparams


def _hparams_metadata(**content):
    data = plugin_hparams_pb2.HParamsPluginData(version=0, **content)
    return SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(
            plugin_name=HPARAMS_PLUGIN, content=data.SerializeToString()
        )
    )


def _hparam_info(name, value):
    if isinstance(value, bool):
        kind = api_pb2.DATA_TYPE_BOOL
    elif isinstance(value, numbers.Real):
        kind = api_pb2.DATA_TYPE_FLOAT64
    else:
        kind = api_pb2.DATA_TYPE_STRING
    return api_pb2.HParamInfo(name=name, type=kind)


HPARAMS_SUFFIX = ".hparams"  # ends the name of the event file of a run's HParams session


def metric_tag(key):
    """``train.loss`` -> ``hparams/train/loss``: the tag of a run's final value of it."""
    section, _, name = key.partition(".")
    return f"hparams/{section}/{name}"


def final_metrics(trainer):
    """The run's final metrics by HParams tag: ``hparams/train/loss``,
    ``hparams/test/accuracy`` (test values where there are held-out data)."""
    metrics = {metric_tag(f"train.{key}"): value for key, value in trainer.train_logs.items()}
    if trainer.validation_data is not None:
        metrics.update(
            {metric_tag(f"test.{key}"): value for key, value in trainer.test_logs.items()}
        )
    return metrics


def experiment_value(experiment):
    """A summary holding an HParams ``api_pb2.Experiment``: the table's columns."""
    return Summary(
        value=[Summary.Value(tag=EXPERIMENT_TAG, metadata=_hparams_metadata(experiment=experiment))]
    )


def write_hparams_session(
    logdir, hparams, metrics, status, *, step, start_time=None, experiment=True
):
    """Make ``logdir`` one HParams session (one row): ``hparams`` against the final
    ``metrics`` (tag -> value), in an event file of its own that replaces an earlier one.
    With ``experiment``, also the experiment summary that makes the directory a table of its
    own; a sweep's trials leave that to the sweep, whose experiment names every trial's keys.
    Written at once: a writer thread would only add start-up and shut-down time.  Returns
    the event file's path."""
    from framework.event_files import replace_event_file

    table, start, end = hparams_summaries(hparams, list(metrics), status, start_time)
    final = Summary(value=[scalar_value(tag, value) for tag, value in metrics.items()])
    summaries = ([table] if experiment else []) + [start, final, end]
    now = time.time()
    events = [Event(summary=summary, step=step, wall_time=now) for summary in summaries]
    return replace_event_file(logdir, events, HPARAMS_SUFFIX)


def hparams_summaries(hparams, metric_tags, status="success", start_time=None):
    """``(experiment, session start, session end)`` summaries for TensorBoard's HParams tab.

    Written into a run's own directory, these make that run one session (one row) whose
    metric columns are the scalar tags ``metric_tags`` of the same directory: write those
    final values beside them.  ``status`` is ``success``, ``failure``, ``running`` or ``unknown``
    (TensorBoard's session statuses).
    """
    start = plugin_hparams_pb2.SessionStartInfo(start_time_secs=start_time or time.time())
    for name, value in hparams.items():
        if isinstance(value, bool):
            start.hparams[name].bool_value = value
        elif isinstance(value, numbers.Real):
            start.hparams[name].number_value = float(value)
        else:
            start.hparams[name].string_value = str(value)
    experiment = api_pb2.Experiment(
        hparam_infos=[_hparam_info(name, value) for name, value in hparams.items()],
        metric_infos=[
            api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag), display_name=tag.split("/", 1)[-1])
            for tag in metric_tags
        ],
    )
    end = plugin_hparams_pb2.SessionEndInfo(
        status=getattr(api_pb2, f"STATUS_{status.upper()}"), end_time_secs=time.time()
    )
    return (
        experiment_value(experiment),
        Summary(
            value=[
                Summary.Value(
                    tag=SESSION_START_TAG, metadata=_hparams_metadata(session_start_info=start)
                )
            ]
        ),
        Summary(
            value=[
                Summary.Value(tag=SESSION_END_TAG, metadata=_hparams_metadata(session_end_info=end))
            ]
        ),
    )


# --- the model graph -----------------------------------------------------------------------

# TensorFlow op types for the ops built-in layers describe; TensorBoard shows them per node.
OP_TYPES = {
    "matmul": "MatMul",
    "bias_add": "BiasAdd",
    "conv2d": "Conv2D",
    "maxpool2d": "MaxPool",
    "avgpool2d": "AvgPool",
    "flatten": "Reshape",
    "reshape": "Reshape",
    "dropout": "Dropout",
    "identity": "Identity",
    "relu": "Relu",
    "leaky_relu": "LeakyRelu",
    "tanh": "Tanh",
    "sigmoid": "Sigmoid",
    "softmax": "Softmax",
    "add": "AddN",
    "multiply": "Mul",
    "concatenate": "ConcatV2",
    "batch_norm": "FusedBatchNormV3",
    "layer_norm": "LayerNorm",
    "global_avgpool2d": "Mean",
    "global_maxpool2d": "Max",
}
MAIN_OPS = {"dense": "matmul", "conv2d": "conv2d"}


def layer_ops(layer):
    """``[(op name, parameter names it reads)]`` of a layer, in the order they run.

    A layer describes itself with an optional ``graph_ops()`` returning op names or
    ``(op name, parameter names)`` pairs.  Otherwise its ops are derived from what it has:
    a main op (``matmul`` for dense, ``conv2d`` for conv2d, else the layer's kind) reading
    every parameter but ``bias``; ``bias_add`` when it has a bias; its activation when it
    holds one other than identity.  A layer without parameters is one op named by its kind
    (an ``activation`` layer by its activation).
    """
    describe = getattr(layer, "graph_ops", None)
    if callable(describe):
        ops = []
        for op in describe():
            ops.append((op, ()) if isinstance(op, str) else (op[0], tuple(op[1])))
        return ops
    kind = kind_of(layer)
    params = list(getattr(layer, "params", {}) or {})
    activation = getattr(layer, "activation", None)
    activation_name = (
        kind_of(activation) if activation is not None and not isinstance(activation, str) else None
    )
    if not params:
        if kind == "activation" and activation_name:
            return [(activation_name, ())]
        if activation_name and activation_name != "identity":  # a merge with an activation
            return [(kind, ()), (activation_name, ())]
        return [(kind, ())]
    ops = [(MAIN_OPS.get(kind, kind), tuple(p for p in params if p != "bias"))]
    if "bias" in params:
        ops.append(("bias_add", ("bias",)))
    if activation_name and activation_name != "identity":
        ops.append((activation_name, ()))
    return ops


def _add_node(graph, name, op, inputs, shape, dtype, **text_attrs):
    """Add a `NodeDef` to ``graph``, built in place: nodes and attributes made on their own
    and then handed over are each copied, which took most of the graph's time."""
    node = graph.node.add(name=name, op=op, input=inputs)
    node.attr["_output_shapes"].list.shape.add().dim.extend(
        tensor_shape_pb2.TensorShapeProto.Dim(size=int(n)) for n in shape
    )
    node.attr["T"].type = dtype
    for key, value in text_attrs.items():
        node.attr[key].s = str(value).encode("utf-8")
    return node


def op_type(name):
    return OP_TYPES.get(name) or "".join(part.capitalize() for part in str(name).split("_"))


def model_graph(model, loss=None):
    """A `GraphDef` of a built model: a placeholder per model input, then for each layer a
    node per op (``dense_0/matmul``, ``dense_0/bias_add``, ``dense_0/tanh``) wired in order,
    the first fed by the last op of each layer (or input) it reads, so a graph model shows
    its branches and merges; each parameter a variable node feeding its op
    (``dense_0/weights``); and with ``loss`` a ``loss`` node fed by the output and a
    ``labels`` placeholder.  Every node carries its ``_output_shapes`` (batch axis -1), so
    TensorBoard labels the edges with shapes."""
    dtype = types_pb2.DT_DOUBLE if np.dtype(model.dtype) == np.float64 else types_pb2.DT_FLOAT
    inputs = getattr(model, "inputs", None)
    if inputs:
        names, shapes = model.input_names, model.input_shapes
    else:  # a duck-typed model without inputs: one, named "input"
        names, shapes = ["input"], [model.input_shape]
    graph = graph_pb2.GraphDef(versions=versions_pb2.VersionDef(producer=22))
    for name, shape in zip(names, shapes, strict=True):
        _add_node(graph, name, "Placeholder", [], (-1, *shape), dtype)
    last_op = {name: name for name in names}  # what a reader of each tensor connects to
    inbound = getattr(model, "inbound", None)
    previous = names[0]
    for layer in model.layers:
        shape = (-1, *getattr(layer, "output_shape", ()))
        params = getattr(layer, "params", {}) or {}
        for name, value in params.items():
            _add_node(graph, f"{layer.name}/{name}", "VariableV2", [], value.shape, dtype)
        feeds = [last_op[source] for source in inbound[layer.name]] if inbound else [previous]
        for index, (op, reads) in enumerate(layer_ops(layer)):
            name = f"{layer.name}/{op}"
            inputs = [*feeds, *(f"{layer.name}/{p}" for p in reads if p in params)]
            if index == 0 and getattr(layer, "tied", None) is not None:
                inputs.append(f"{layer.tied.name}/weights")  # a shared matrix: an edge to it
            extra = {"layer": repr(layer)} if index == 0 else {}
            _add_node(graph, name, op_type(op), inputs, shape, dtype, **extra)
            feeds = [name]
        last_op[layer.name] = previous = feeds[0]
    if loss is not None:
        _add_node(graph, "labels", "Placeholder", [], (-1,), dtype)
        loss_op = op_type(kind_of(loss))
        _add_node(graph, "loss", loss_op, [previous, "labels"], (), dtype, loss=repr(loss))
    return graph
