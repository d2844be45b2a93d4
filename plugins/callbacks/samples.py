"""`samples`: text the model writes as it trains, in TensorBoard's Text tab; its token
embedding in the Projector, each row labelled by its character."""

import os
from typing import ClassVar

import attrs
import numpy as np
from attrs.validators import ge, instance_of, optional

from framework import Callback, ConfigError, atomic_write, hookimpl
from framework.event_files import EventFileWriter
from framework.rundir import record
from framework.summaries import code_block, text_value
from framework.text import sample_text
from framework.validators import positive_int


@attrs.define(eq=False)
class Samples(Callback):
    """Every ``every`` steps, and when training ends, draws a sample of ``tokens`` ids from
    the model (continuing ``prompt``; a ``lines`` model: ``num_samples`` items) at
    ``temperature`` and writes it under the tag ``samples`` to ``LOGDIR/train`` (its own
    event file beside the tensorboard callback's), where the Text tab shows it by step.

    The draws come from a generator of the run's seed and the step, so they are the same
    in a resumed run and never disturb the training's own random order.  With
    ``embedding`` (default), training's end also writes the first ``embedding`` layer's
    matrix for TensorBoard's Projector (the run ``LOGDIR/embedding``), each row labelled by
    the character it embeds.  The model needs a tokenizer: train it on ``text``, ``lines``
    or ``tokens`` with a ``meta.json``.
    """

    kind: ClassVar[str] = "samples"

    every: int = attrs.field(default=500, validator=positive_int)
    tokens: int | None = attrs.field(default=None, validator=optional([instance_of(int), ge(1)]))
    prompt: str | None = attrs.field(default=None, validator=optional(instance_of(str)))
    temperature: float = attrs.field(default=1.0, validator=[instance_of((int, float)), ge(0)])
    num_samples: int = attrs.field(default=1, validator=positive_int)
    embedding: bool = attrs.field(default=True, validator=instance_of(bool))

    _writer: object = attrs.field(init=False, default=None, repr=False)
    _seed: int = attrs.field(init=False, default=0, repr=False)
    _last_step: int | None = attrs.field(init=False, default=None, repr=False)

    @hookimpl
    def on_train_begin(self, trainer):
        tokenizer = getattr(trainer.model, "tokenizer", None)
        if tokenizer is None:
            raise ConfigError(
                "the samples callback needs a model with a tokenizer (trained on text, lines, "
                "or tokens with a meta.json); this model has none"
            )
        if self.prompt:
            tokenizer.encode(self.prompt)  # a character outside the vocabulary: say so now
        self._seed = int(trainer.config.get("seed", 0)) if trainer.config else 0
        if trainer.logdir is not None:
            self._writer = EventFileWriter(
                os.path.join(trainer.logdir, "train"),
                filename_suffix=".samples",
                purge_step=trainer.step or None,
            )
            record(self._writer.path)  # the run's own file: --overwrite removes it
        self._last_step = None

    # trylast: after the tensorboard callback has logged the step's activations, which
    # sampling replaces.
    @hookimpl(trylast=True)
    def on_batch_end(self, trainer):
        if trainer.step % self.every == 0:
            self.write_sample(trainer)

    @hookimpl
    def on_train_end(self, trainer):
        try:
            self.write_sample(trainer)
            if self.embedding and trainer.logdir is not None:
                self.write_embedding(trainer)
        finally:
            self.close()

    @hookimpl
    def on_exception(self):
        self.close()

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def sample(self, trainer):
        """The texts of a sample at the trainer's current step."""
        rng = np.random.default_rng([self._seed, trainer.step])
        return sample_text(
            trainer.model,
            prompt=self.prompt,
            tokens=self.tokens,
            temperature=self.temperature,
            num_samples=self.num_samples,
            rng=rng,
        )

    def write_sample(self, trainer):
        if self._writer is None or trainer.step == self._last_step:
            return
        from tensorboardX.proto.summary_pb2 import Summary

        texts = self.sample(trainer)
        text = "\n\n".join(code_block(t) for t in texts)
        self._writer.add_summary(Summary(value=[text_value("samples", text)]), trainer.step)
        self._last_step = trainer.step

    def write_embedding(self, trainer):
        """The first embedding's matrix and one label per row (the tokenizer's characters)
        as a Projector run, ``LOGDIR/embedding``."""
        layer = next(
            (
                layer
                for layer in trainer.model.layers
                if layer.params.get("weights") is not None
                and getattr(layer, "integer_input", False)
            ),
            None,
        )
        if layer is None:
            return
        weights = np.asarray(layer.params["weights"], dtype=np.float64)
        labels = trainer.model.tokenizer.labels()
        if len(labels) != len(weights):
            return  # an embedding not of the tokenizer's ids
        root = os.path.join(trainer.logdir, "embedding")
        names = ("tensors.tsv", "metadata.tsv", "projector_config.pbtxt")
        record(*(os.path.join(root, name) for name in names))  # named before written

        def tsv(rows):
            return lambda f: f.write("".join(row + "\n" for row in rows).encode("utf-8"))

        atomic_write(
            os.path.join(root, "tensors.tsv"),
            tsv("\t".join(f"{v:.7g}" for v in row) for row in weights),
        )
        # One label a row: with a single column the Projector takes no header line.
        atomic_write(os.path.join(root, "metadata.tsv"), tsv(labels))
        config = (
            "embeddings {\n"
            f'  tensor_name: "{layer.name}/weights (step {trainer.step})"\n'
            '  tensor_path: "tensors.tsv"\n'
            '  metadata_path: "metadata.tsv"\n'
            "}\n"
        )
        atomic_write(
            os.path.join(root, "projector_config.pbtxt"), lambda f: f.write(config.encode())
        )
