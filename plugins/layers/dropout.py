"""Dropout: a regulariser that is the identity outside training."""

import attrs
import numpy as np

from framework import Layer


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Dropout(Layer):
    """While training, zero each input with probability ``rate`` and scale the survivors by
    1 / (1 − rate) ("inverted" dropout), so evaluation needs no rescaling; backward passes the
    gradient through the same mask.  The mask comes from the model's generator, so a seeded
    model drops the same units run after run."""

    position_wise = True  # each position on its own (framework.generate steps it)

    @property
    def splits_batch(self):
        """Only without dropping: shared out over threads, the draws would come in another
        order (see `framework.Layer.splits_batch`)."""
        return self.rate == 0

    rate: float = attrs.field(
        default=0.5, converter=float, validator=[attrs.validators.ge(0), attrs.validators.lt(1)]
    )

    def forward(self, x, training=False):
        if not training or self.rate == 0:
            self.mask = None
            self.activations = x
            return x
        rng = self.rng if self.rng is not None else np.random.default_rng()
        keep = rng.random(x.shape, dtype=np.float32) >= self.rate
        self.mask = keep.astype(x.dtype) / x.dtype.type(1 - self.rate)
        self.activations = x * self.mask
        return self.activations

    def backward(self, grad_y):
        return grad_y if self.mask is None else grad_y * self.mask

    def to_onnx(self, builder, x):
        """ONNX: Identity (dropout drops nothing at inference)."""
        return builder.add("Identity", [x])
