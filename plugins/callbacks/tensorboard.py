"""The ``tensorboard`` callback: scalars, histograms, graph, hyper-parameters, images and
text for TensorBoard, as tensorboardX's protocol buffers in event files written by
tensorboardX's record writer from a background thread (`framework.event_files`).

Layout of a run's directory (``trainer.logdir``)::

    LOGDIR/train/   loss, metrics, lr; per layer L and tensor T: L/T/{mean,stddev,max,min}
                    and the histogram L/T; the graph; input samples; decision boundary; text
                    and, with ``projector``, layers' activations for the Projector tab
    LOGDIR/test/    loss and metrics of each evaluation on held-out data
    LOGDIR/         the run's hyper-parameters and final metrics (HParams tab, one row)
"""

import json
import logging
import numbers
import os
import time

import attrs
import numpy as np
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary

from framework import Callback, ConfigError, atomic_write, hookimpl
from framework.event_files import EventFileWriter
from framework.images import class_labels, decision_boundary, image_grid, image_value
from framework.rundir import record
from framework.stopping import interrupted_by
from framework.summaries import (
    STATS,
    code_block,
    component_hparams,
    final_metrics,
    histogram,
    layer_tensors,
    model_graph,
    run_hparams,
    scalar_value,
    tensors_stats,
    text_value,
    write_hparams_session,
)
from framework.validators import whole_number

logger = logging.getLogger("plugnet.tensorboard")

BOUNDARY_POINTS = 1000  # points drawn on the decision boundary
ATTENTION_PIXELS = 160  # an attention map is drawn at least this many pixels wide


def attention_layers(model):
    """The layers that keep attention weights (``multi_head_attention``)."""
    return [layer for layer in model.layers if hasattr(layer, "attention_weights")]


def attention_image(weights):
    """A grey uint8 picture of one head's ``(T, T)`` attention weights: row t is what
    position t attends to, scaled by the map's largest weight (rows sum to 1, so long
    sequences would otherwise be black), each weight a square of pixels."""
    weights = np.asarray(weights, dtype=np.float64)
    top = weights.max()
    scaled = weights / top if top > 0 else weights
    cell = max(1, ATTENTION_PIXELS // max(weights.shape))
    return np.round(np.kron(scaled, np.ones((cell, cell))) * 255).astype(np.uint8)


def layer_names(instance, attribute, value):
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValueError(
            f'{attribute.name} must be a list of layer names, e.g. ["dense_0"], got {value!r}'
        )


def is_image_shape(shape):
    """Per-sample NHWC images (1, 3 or 4 channels), as opposed to feature vectors and
    ``(T, F)`` sequences: a two-axis sample is a sequence (the layout every sequence layer
    reads), never guessed to be a grey picture."""
    return len(shape) == 3 and shape[2] in (1, 3, 4)


@attrs.define(eq=False)
class TensorBoard(Callback):
    """Write what `TensorBoard <https://www.tensorflow.org/tensorboard>`_ shows of a run.

    ``scalar_every`` steps: the batch ``loss``, each metric and ``lr``, and per layer the
    mean / stddev / max / min of each of its tensors (weights, bias, preactivations,
    activations and the gradients) as they are at the end of the step: the gradients and
    activations of the step's batch, the parameters after its update.
    ``histogram_every`` steps (0: never): a histogram of each tensor.  Each evaluation on
    held-out data goes to ``LOGDIR/test``: the trainer's (every epoch, every
    ``train.evaluate_every`` steps, at the end) and, every ``evaluate_every`` steps (0: none),
    the callback's own, for a test curve finer than the trainer's needs.  For
    two-dimensional inputs, the decision boundary every ``image_every`` epochs (0: only at
    the end) and at the end; for image inputs, ``images`` samples of the first batch.  The
    graph, the config and the model summary are written when training starts; the
    hyper-parameters against the final metrics at the end.

    ``projector`` names layers (``["dense_0"]``) whose activations on up to
    ``projector_samples`` held-out samples (or, without held-out data, the first training
    samples), labelled with their classes, go to the Projector tab at the end of training
    and every ``projector_every`` epochs (0: only at the end): ``LOGDIR/train/projector/``
    holds the vectors and labels as TSV files, ``LOGDIR/train/projector_config.pbtxt`` lists
    them.

    The defaults keep the time in its hooks to about 1.6% of a dense MNIST network's
    training (B1): a large tensor's statistics take four reads of it and no copy, the small
    tensors' are computed together, a step's values are built inside one event, and one
    background thread for every writer of the process does the file I/O (when a writer's
    ``flush_secs`` are up, or sooner when its events pile up).
    """

    scalar_every: int = attrs.field(default=50, validator=whole_number(1))
    histogram_every: int = attrs.field(default=500, validator=whole_number(0))
    evaluate_every: int = attrs.field(default=0, validator=whole_number(0))
    image_every: int = attrs.field(default=10, validator=whole_number(0))
    images: int = attrs.field(default=8, validator=whole_number(0))
    graph: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    hparams: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    flush_secs: float = attrs.field(default=10.0, converter=float, validator=attrs.validators.gt(0))
    logdir: str | None = attrs.field(default=None, converter=attrs.converters.optional(os.fspath))
    projector: list = attrs.field(factory=list, validator=layer_names)
    projector_every: int = attrs.field(default=0, validator=whole_number(0))
    projector_samples: int = attrs.field(default=1000, validator=whole_number(1))

    train_writer: object = attrs.field(default=None, init=False, repr=False)
    test_writer: object = attrs.field(default=None, init=False, repr=False)
    _root: str | None = attrs.field(default=None, init=False, repr=False)
    _last_test_step: int | None = attrs.field(default=None, init=False, repr=False)
    _last_test_logs: dict | None = attrs.field(default=None, init=False, repr=False)
    _last_image_step: int | None = attrs.field(default=None, init=False, repr=False)
    _points: list | None = attrs.field(default=None, init=False, repr=False)
    _points_epoch: int = attrs.field(default=0, init=False, repr=False)
    _want_samples: bool = attrs.field(default=False, init=False, repr=False)
    _attention_sample: object = attrs.field(default=None, init=False, repr=False)
    _want_attention: bool = attrs.field(default=False, init=False, repr=False)
    _last_attention_step: int | None = attrs.field(default=None, init=False, repr=False)
    _started: float = attrs.field(default=0.0, init=False, repr=False)
    _first_step: int = attrs.field(default=0, init=False, repr=False)
    _embeddings: list = attrs.field(factory=list, init=False, repr=False)
    _projector_points: list | None = attrs.field(default=None, init=False, repr=False)

    # --- writers -------------------------------------------------------------------------------

    def _writer(self, name):
        # A resumed run hides what the interrupted one logged after its checkpoint's step.
        purge = self._first_step or None
        writer = EventFileWriter(os.path.join(self._root, name), self.flush_secs, purge_step=purge)
        record(writer.path)  # the run's own file: --overwrite removes it, and no other
        return writer

    def write(self, writer, values, step):
        """Queue summary ``values`` as one event at ``step``."""
        if values:
            writer.add_summary(Summary(value=values), step)

    def close(self):
        for name in ("train_writer", "test_writer"):
            writer = getattr(self, name)
            if writer is not None:
                writer.close()
                setattr(self, name, None)

    # --- hooks ---------------------------------------------------------------------------------

    @hookimpl
    def on_train_begin(self, trainer):
        self._root = self.logdir or trainer.logdir
        if self._root is None:
            raise ConfigError(
                "the tensorboard callback needs a logdir: give the Trainer one (logdir=...)"
            )
        self._started = time.time()
        self._last_test_step = self._last_image_step = self._last_test_logs = None
        self._first_step = trainer.step
        self.train_writer = self._writer("train")
        model, step = trainer.model, trainer.step
        if self.graph:
            event = Event(graph_def=model_graph(model, trainer.loss).SerializeToString(), step=step)
            self.train_writer.add_event(event)
        texts = [text_value("model", code_block(model.summary()))]
        if trainer.config:
            texts.append(
                text_value("config", code_block(json.dumps(trainer.config, indent=2, default=str)))
            )
        self.write(self.train_writer, texts, step)
        # Input images, boundaries and attention maps draw one input: a model of several
        # inputs has none of them.
        one_input = len(getattr(model, "inputs", ())) <= 1
        two_d = one_input and tuple(model.input_shape) == (2,)
        self._points = [] if two_d and trainer.validation_data is None else None
        self._points_epoch = trainer.epoch
        self._want_samples = (
            self.images > 0 and one_input and is_image_shape(tuple(model.input_shape))
        )
        self._want_attention, self._attention_sample = (
            one_input and bool(attention_layers(model)),
            None,
        )
        self._last_attention_step = None
        self.start_projector(trainer)

    @hookimpl
    def on_batch_begin(self, trainer, step, batch):
        if self._want_attention:  # the example whose attention maps are drawn
            self._want_attention = False
            self._attention_sample = np.array(batch[0][:1])
        if self._want_samples:
            self._want_samples = False
            self.write(
                self.train_writer,
                [image_value("inputs", image_grid(batch[0][: self.images]))],
                step,
            )
        if self._points is not None and trainer.epoch == self._points_epoch:
            if sum(len(x) for x, _ in self._points) < BOUNDARY_POINTS:
                self._points.append(batch)
        if (
            self._projector_points is not None
            and sum(len(x) for x, _ in self._projector_points) < self.projector_samples
        ):
            self._projector_points.append((batch[0].copy(), np.asarray(batch[1]).copy()))

    @hookimpl
    def on_batch_end(self, trainer, step, logs):
        # One hook a step, not two (on_after_backward too): the call itself is a measurable
        # part of the cost.  After the update the gradients and activations are still the
        # step's; the parameters are the updated ones the next step will use.
        scalars = step % self.scalar_every == 0
        histograms = bool(self.histogram_every) and step % self.histogram_every == 0
        if scalars or histograms:
            self.write_step(trainer, step, logs, scalars, histograms)
        # after the step's tensors are logged: evaluating replaces the layers' activations
        if self.evaluate_every and trainer.step % self.evaluate_every == 0:
            self.write_evaluation(trainer)

    def write_step(self, trainer, step, logs, scalars, histograms):
        # The values are built inside the event (no copies) and the small tensors'
        # statistics computed together: each halves the time it replaces.
        event = Event(step=step, wall_time=time.time())
        values = event.summary.value
        if scalars:
            for key, value in logs.items():
                values.add(tag=key, simple_value=float(value))
            lr = getattr(trainer.optimizer, "lr", None)
            if "lr" not in logs and isinstance(lr, numbers.Real):  # lr_schedule puts it in the logs
                values.add(tag="lr", simple_value=float(lr))
        tensors = [
            (f"{layer.name}/{name}", array)
            for layer in trainer.model.layers
            for name, array in layer_tensors(layer).items()
        ]
        stats = tensors_stats([array for _, array in tensors])
        for (tag, array), each in zip(tensors, stats, strict=True):
            if scalars:
                for name, value in zip(STATS, each, strict=True):
                    values.add(tag=f"{tag}/{name}", simple_value=value)
            histo = histogram(array, each) if histograms else None
            if histo is not None:
                values.add(tag=tag, histo=histo)
        if values:
            self.train_writer.add_event(event)

    @hookimpl
    def on_evaluate_end(self, trainer, step, logs):
        self.write_test(logs, step)

    def write_evaluation(self, trainer):
        """The callback's own evaluation on the held-out data (``evaluate_every``), after
        ``trainer.step`` steps: the step the trainer's evaluations are logged at."""
        if trainer.validation_data is not None and trainer.step != self._last_test_step:
            self.write_test(trainer.evaluate(*trainer.validation_data), trainer.step)

    def write_test(self, logs, step):
        # The end-of-training evaluation repeats the last epoch's at the same step: log it
        # only if a callback changed the weights meanwhile (early stopping restoring them).
        if (step, logs) == (self._last_test_step, self._last_test_logs):
            return
        if self.test_writer is None:
            self.test_writer = self._writer("test")
        self.write(
            self.test_writer, [scalar_value(key, value) for key, value in logs.items()], step
        )
        self._last_test_step, self._last_test_logs = step, dict(logs)

    @hookimpl
    def on_epoch_end(self, trainer, epoch):
        if self.image_every and (epoch + 1) % self.image_every == 0:
            self.write_boundary(trainer)
            self.write_attention(trainer)
        if self.projector and self.projector_every and (epoch + 1) % self.projector_every == 0:
            self.write_projector(trainer)

    @hookimpl
    def on_train_end(self, trainer):
        try:
            self.write_boundary(trainer)
            self.write_attention(trainer)
            if self.projector:
                self.write_projector(trainer)
            if self.hparams:
                # A run stopped by a signal neither failed nor succeeded (TensorBoard has no
                # "interrupted"): "unknown", as for an exception raised by Ctrl-C.
                self.write_hparams(trainer, "unknown" if interrupted_by(trainer) else "success")
        finally:
            self.close()

    @hookimpl
    def on_exception(self, trainer, exception):
        # Never raise from here: the training's own exception is the one to see.
        try:
            if self.hparams and self._root is not None:
                # TensorBoard's statuses have no "interrupted": a stopped run neither failed
                # nor succeeded, so it is "unknown".
                interrupted = isinstance(exception, KeyboardInterrupt)
                self.write_hparams(trainer, "unknown" if interrupted else "failure")
        except Exception as exc:  # noqa: BLE001
            logger.warning("could not write the hyper-parameters: %s", exc)
        finally:
            try:
                self.close()
            except Exception as exc:  # noqa: BLE001
                logger.warning("could not close the TensorBoard writers: %s", exc)

    # --- pictures and hyper-parameters --------------------------------------------------------

    def boundary_data(self, trainer):
        """Points to draw over the boundary: the held-out data, else training samples seen in
        the first epoch."""
        if trainer.validation_data is not None:
            x, y = trainer.validation_data
            return x[:BOUNDARY_POINTS], y[:BOUNDARY_POINTS]
        if self._points:
            x = np.concatenate([x for x, _ in self._points])[:BOUNDARY_POINTS]
            y = np.concatenate([y for _, y in self._points])[:BOUNDARY_POINTS]
            return x, y
        return None

    def write_boundary(self, trainer):
        model = trainer.model
        if tuple(model.input_shape) != (2,) or trainer.step == self._last_image_step:
            return
        data = self.boundary_data(trainer)
        if data is None:
            return
        labels = class_labels(data[1])
        if labels is None:  # regression targets: no classes to draw
            return
        image = decision_boundary(
            lambda grid: model.predict(grid.astype(model.dtype), batch_size=8192), data[0], labels
        )
        self.write(self.train_writer, [image_value("decision_boundary", image)], trainer.step)
        self._last_image_step = trainer.step

    def write_attention(self, trainer):
        """For each attention layer, one image per head of the attention weights of the
        first training example (tags ``L/attention/head_K``)."""
        if self._attention_sample is None or trainer.step == self._last_attention_step:
            return
        self._last_attention_step = trainer.step
        trainer.model.predict(self._attention_sample)
        values = [
            image_value(f"{layer.name}/attention/head_{head}", attention_image(weights))
            for layer in attention_layers(trainer.model)
            for head, weights in enumerate(layer.attention_weights[0])
        ]
        self.write(self.train_writer, values, trainer.step)

    def write_hparams(self, trainer, status):
        """The run's hyper-parameters and final metrics as one HParams session, in an event
        file of the run directory itself (replacing the one an earlier fit wrote)."""
        hparams = run_hparams(trainer.config) or component_hparams(trainer)
        path = write_hparams_session(
            self._root,
            hparams,
            final_metrics(trainer),
            status,
            step=trainer.step,
            start_time=self._started,
        )
        record(path)

    # --- projector ----------------------------------------------------------------------------
    #
    # TensorBoard's Projector reads LOGDIR/train/projector_config.pbtxt: one `embeddings` entry
    # per tensor, naming a TSV of vectors (a row per sample) and a TSV of metadata (a label per
    # row), both relative to the config's directory.

    def start_projector(self, trainer):
        self._embeddings = []
        self._projector_points = None
        if not self.projector:
            return
        known = [layer.name for layer in trainer.model.layers]
        for name in self.projector:
            if name not in known:
                raise ConfigError(
                    f"tensorboard callback: projector names layer '{name}', which the model does not have; "
                    f"its layers: {', '.join(known)}"
                )
        if trainer.validation_data is None:  # no held-out data: the first training samples seen
            self._projector_points = []

    def projector_data(self, trainer):
        if trainer.validation_data is not None:
            x, y = trainer.validation_data
        elif self._projector_points:
            x = np.concatenate([x for x, _ in self._projector_points])
            y = np.concatenate([y for _, y in self._projector_points])
        else:
            return None
        return x[: self.projector_samples], y[: self.projector_samples]

    def write_projector(self, trainer):
        """Each ``projector`` layer's activations on the held-out samples (their labels as
        metadata), for the Projector tab, at the current step."""
        data = self.projector_data(trainer)
        step = trainer.step
        if data is None or any(entry["step"] == step for entry in self._embeddings):
            return
        model = trainer.model
        x, y = data
        model.predict(x)  # one pass in evaluation mode; each layer keeps its activations
        labels = class_labels(y)
        root = os.path.join(self._root, "train")
        for layer in model.layers:
            if layer.name not in self.projector:
                continue
            activations = getattr(layer, "activations", None)
            if activations is None:
                logger.warning(
                    "projector: layer %s keeps no activations; nothing written for it", layer.name
                )
                continue
            folder = f"projector/{step:08d}/{layer.name}"
            vectors = np.asarray(activations, dtype=np.float64).reshape(len(x), -1)
            record(os.path.join(root, folder, "tensors.tsv"))
            write_tsv(os.path.join(root, folder, "tensors.tsv"), vectors)
            entry = {
                "step": step,
                "name": f"{layer.name}/activations (step {step})",
                "tensors": f"{folder}/tensors.tsv",
            }
            if labels is not None:
                record(os.path.join(root, folder, "metadata.tsv"))
                write_tsv(
                    os.path.join(root, folder, "metadata.tsv"), labels.reshape(-1, 1), fmt="%d"
                )
                entry["metadata"] = f"{folder}/metadata.tsv"
            self._embeddings.append(entry)
        text = "".join(projector_entry(entry) for entry in self._embeddings)
        record(os.path.join(root, "projector_config.pbtxt"))
        atomic_write(os.path.join(root, "projector_config.pbtxt"), lambda f: f.write(text.encode()))


def write_tsv(path, rows, fmt="%.7g"):
    atomic_write(path, lambda f: np.savetxt(f, rows, fmt=fmt, delimiter="\t"))


def projector_entry(entry):
    """One ``embeddings`` entry of a projector config (protocol-buffer text format)."""
    lines = [f'  tensor_name: "{entry["name"]}"', f'  tensor_path: "{entry["tensors"]}"']
    if "metadata" in entry:
        lines.append(f'  metadata_path: "{entry["metadata"]}"')
    return "embeddings {\n" + "\n".join(lines) + "\n}\n"
