"""Built-in callbacks: plugins that implement the training-loop hooks."""

from framework import hookimpl
from plugins.callbacks.checkpoint import Checkpoint
from plugins.callbacks.csv_logger import CSVLogger
from plugins.callbacks.early_stopping import EarlyStopping
from plugins.callbacks.lr_schedule import LRSchedule
from plugins.callbacks.progress import Progress
from plugins.callbacks.samples import Samples
from plugins.callbacks.tensorboard import TensorBoard
from plugins.callbacks.terminate_on_nan import TerminateOnNaN


@hookimpl
def register_callbacks():
    return {
        "progress": Progress,
        "early_stopping": EarlyStopping,
        "terminate_on_nan": TerminateOnNaN,
        "csv_logger": CSVLogger,
        "checkpoint": Checkpoint,
        "tensorboard": TensorBoard,
        "lr_schedule": LRSchedule,
        "samples": Samples,
    }
