"""The ``checkpoint`` callback: the trainer's whole state, every few steps and at the end."""

import logging
import os

import attrs
import numpy as np

from framework import Callback, ConfigError, hookimpl
from framework.checkpoints import checkpoint_dir, checkpoint_path, list_checkpoints, save_checkpoint
from framework.rundir import record
from framework.validators import whole_number

logger = logging.getLogger("plugnet.checkpoints")


def position(trainer):
    return trainer.step, trainer.epoch, trainer.batch_in_epoch


@attrs.define(eq=False)
class Checkpoint(Callback):
    """Write ``LOGDIR/checkpoints/step-<N>.npz`` after every ``every`` steps (never, if
    omitted) and once at the end, keeping the newest ``keep`` files (0 keeps all).  The end
    includes a stop at a step boundary (SIGINT, SIGTERM: `framework.stopping`), so a
    stopped run resumes from the very step it stopped at.

    A checkpoint holds what `framework.checkpoints` lists — parameters, optimizer state,
    counters, generator states — so ``plugnet train --resume LOGDIR`` continues the run
    exactly.  Each file is written to a temporary name and renamed, so a crash never leaves a
    torn one; temporary files left by a killed run are removed when training starts.
    """

    every: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(whole_number(1))
    )
    keep: int = attrs.field(default=5, validator=whole_number(0))
    saved: tuple | None = attrs.field(default=None, init=False, repr=False)

    @hookimpl
    def on_train_begin(self, trainer):
        if trainer.logdir is None:
            raise ConfigError("the checkpoint callback needs the trainer's logdir to write into")
        directory = checkpoint_dir(trainer.logdir)
        if os.path.isdir(directory):
            for name in os.listdir(directory):
                if name.startswith(".tmp-") and name.endswith(".npz"):  # from a killed write
                    os.unlink(os.path.join(directory, name))
        # A resumed run has its checkpoint for this point already.
        self.saved = position(trainer) if trainer.resumed_from_step == trainer.step else None

    @hookimpl
    def on_batch_end(self, trainer):
        if self.every and trainer.step % self.every == 0:
            self.save(trainer)

    # tryfirst: the checkpoint is the trainer's state at its last step, written before other
    # callbacks' ends change the model (early stopping putting the best weights back), so
    # resuming a run stopped by a signal continues the very weights it stopped with.
    @hookimpl(tryfirst=True)
    def on_train_end(self, trainer):
        # The last step's checkpoint may predate the end of its epoch; then it is rewritten
        # with the finished epoch, so resuming a finished run does not replay its end.
        if self.saved == position(trainer):
            return
        if not all(np.isfinite(p).all() for p in trainer.model.params_list()):
            logger.warning("no checkpoint at step %d: the parameters are not finite", trainer.step)
            return
        self.save(trainer)

    def save(self, trainer):
        path = checkpoint_path(trainer.logdir, trainer.step)
        record(path)  # named in the run's manifest first: the run knows what it wrote
        save_checkpoint(trainer, path)
        self.saved = position(trainer)
        if self.keep:
            # Their names leave the manifest with the next record (a name without its file is
            # harmless): one manifest write a checkpoint, not two.
            for _, path in list_checkpoints(trainer.logdir)[: -self.keep]:
                os.unlink(path)
