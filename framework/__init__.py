"""plugnet's core: everything a plugin or a user script needs, importable from here.

The public API is the names exported here and the public modules: `framework.testing`
(gradient and protocol checks), `framework.validators` (attrs validators for parameters),
`framework.checkpoints` (reading and writing checkpoints), `framework.summaries`
(TensorBoard summaries from numpy arrays), `framework.images` (PNG pictures: decision
boundaries, image grids), `framework.event_files` (event files written in the
background), `framework.windows` (sliding-window geometry for conv and pooling layers),
`framework.winograd` (Winograd's F(2×2, 3×3) transforms for 3×3 convolutions),
`framework.rundir` (one run per directory, its lock), `framework.stopping` (stopping a run
at a step boundary on SIGINT / SIGTERM), `framework.threads` (splitting numpy work over the
cores BLAS may use), `framework.batch_split` (a training batch shared out over threads:
`current_part` for a layer whose samples meet), `framework.kernels` (loops compiled by numba
on first use), `framework.text` (tokenizers, lazy windows over token ids, sampling) and
`framework.onnx_export` (ONNX export: the `OnnxBuilder` a layer's ``to_onnx`` method
uses).  Plugins, the built-ins in ``plugins`` included, use nothing else.
"""

import importlib

# Before anything loads numpy: it sets OPENBLAS_THREAD_TIMEOUT, as OpenBLAS's idle threads
# otherwise spin for a tenth of a second after each matrix product, holding the core that
# plugnet's own threads would use.
from framework import threads  # noqa: I001  isort: skip

# First of all: later imports from tensorboardX must not import torch (see the module).
from framework import (
    tensorboardx_protos,  # noqa: F401
    testing,
)
from framework.base import (
    Activation,
    Callback,
    Dataset,
    Initializer,
    Layer,
    Loss,
    Metric,
    Optimizer,
    activate,
    activation_spec,
    fans,
    is_identity,
    kind_of,
    preactivation_grad,
    targets_like,
)
from framework.checkpoints import load_checkpoint, resume, save_checkpoint
from framework.data import read_idx, resolve_data_dir, split_train_test
from framework.errors import (
    ConfigError,
    DataError,
    PluginError,
    PlugnetError,
    ShapeError,
    did_you_mean,
)
from framework.formatting import format_logs, format_value, report
from framework.hookspecs import hookimpl, hookspec
from framework.inference import load_model
from framework.model import Input, Model, Sequential
from framework.registry import KINDS, component, create, load_plugins, registry, resolve
from framework.run import run
from framework.saving import save_model
from framework.storage import atomic_write, load_arrays, save_arrays, save_json
from framework.text import Tokenizer, Windows, generate, read_text
from framework.trainer import Trainer

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "Callback",
    "ConfigError",
    "DataError",
    "Dataset",
    "Initializer",
    "Input",
    "KINDS",
    "Layer",
    "Loss",
    "Metric",
    "Model",
    "Optimizer",
    "PluginError",
    "PlugnetError",
    "Sequential",
    "ShapeError",
    "Tokenizer",
    "Trainer",
    "Windows",
    "activate",
    "activation_spec",
    "is_identity",
    "preactivation_grad",
    "targets_like",
    "atomic_write",
    "component",
    "create",
    "did_you_mean",
    "fans",
    "generate",
    "format_logs",
    "format_value",
    "hookimpl",
    "hookspec",
    "kind_of",
    "load_arrays",
    "load_checkpoint",
    "load_model",
    "load_plugins",
    "read_idx",
    "read_text",
    "registry",
    "report",
    "resolve",
    "resolve_data_dir",
    "resume",
    "run",
    "save_arrays",
    "save_checkpoint",
    "save_json",
    "save_model",
    "split_train_test",
    "sweep",
    "testing",
    # public modules
    "checkpoints",
    "event_files",
    "images",
    "summaries",
    "validators",
    "windows",
    "winograd",
    "onnx_export",
    "rundir",
    "stopping",
    "text",
    "threads",
    "export_onnx",
]

# Public modules loaded on first use: TensorBoard's protocol buffers and Optuna cost time
# that a script which never writes summaries or sweeps should not pay.
LAZY_MODULES = (
    "checkpoints",
    "event_files",
    "images",
    "onnx_export",
    "rundir",
    "stopping",
    "summaries",
    "threads",
    "validators",
    "windows",
    "winograd",
)


def __getattr__(name):
    if name == "sweep":
        from framework.sweeps import sweep

        return sweep
    if name == "export_onnx":
        from framework.onnx_export import export_onnx

        return export_onnx
    if name in LAZY_MODULES:
        return importlib.import_module(f"framework.{name}")
    raise AttributeError(f"module 'framework' has no attribute {name!r}")
