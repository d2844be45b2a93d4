"""`progress`: a progress bar on a terminal, one line per epoch anywhere else."""

import sys
import warnings
from time import perf_counter
from typing import ClassVar

import attrs
from attrs.validators import ge, instance_of, optional
from tqdm import std

with warnings.catch_warnings():  # its "notebook mode" notice: that mode is what is wanted
    warnings.simplefilter("ignore", std.TqdmExperimentalWarning)
    from tqdm.autonotebook import (
        tqdm,
    )  # in Jupyter, the notebook's widget bar (tqdm.auto less asyncio)

from framework import Callback, format_logs, hookimpl

# Inside a Jupyter kernel tqdm.autonotebook is the widget bar, and standard error is no terminal.
IN_NOTEBOOK = tqdm is not std.tqdm

MAX_LINES = 100  # with `every` left out, a run prints about this many epoch lines at most
REDRAW_SECONDS = 0.1  # the bar is redrawn at most this often


def is_terminal(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def epochs_between_lines(epochs):
    """The smallest of 1, 2, 5, 10, 20, 50, ... that prints at most `MAX_LINES` of ``epochs``
    epoch lines: every epoch of a 60-epoch run, every 500th of a 50,000-epoch one."""
    scale = 1
    while True:
        for factor in (1, 2, 5):
            if epochs <= MAX_LINES * factor * scale:
                return factor * scale
        scale *= 10


def compact_logs(logs):
    """``loss=0.0926, accuracy=0.9688``: tqdm's own postfix style, short enough to leave the
    bar some room on an ordinary terminal."""
    return ", ".join(f"{key}={value:.4g}" for key, value in logs.items())


@attrs.define(eq=False)
class Progress(Callback):
    """Shows how training goes, on ``file`` (standard error when not given).

    On a terminal, and in a Jupyter notebook (tqdm's widget there): one tqdm bar over every
    step of the run, titled with the epoch, with the last finished epoch's loss and metrics
    (and held-out ``val_`` values) beside it.  It is
    redrawn at most ten times a second; between redraws a step costs one clock reading.

    Elsewhere (a log file, a pipe, CI): one line per epoch,
    ``epoch  3/60  loss 0.1234  accuracy 0.9500  val_loss 0.1300  val_accuracy 0.9400``;
    a run by ``steps`` prints one line per evaluation (``evaluate_every``) instead, counting
    steps, with the training loss and metrics averaged over the steps since the last line:
    ``step  500/2000  loss 1.4321  val_loss 1.5012``.
    ``every`` prints every n-th epoch instead; left out, it is 1 for runs of up to 100
    epochs and grows in steps of 1, 2, 5, 10, 20, 50... so a long run prints about 100
    lines.  The first and the last epoch are always printed, and so is any epoch ending
    ``every_seconds`` or more after the previous line, so a slow run still reports (``None``
    turns that off).  ``bar`` forces the bar (``True``) or the lines (``False``).
    """

    kind: ClassVar[str] = "progress"

    every: int | None = attrs.field(default=None, validator=optional([instance_of(int), ge(1)]))
    every_seconds: float | None = attrs.field(
        default=30.0, validator=optional([instance_of((int, float)), ge(0)])
    )
    bar: bool | None = attrs.field(default=None, validator=optional(instance_of(bool)))
    file: object = attrs.field(default=None)

    _stream: object = attrs.field(init=False, default=None, repr=False)
    _bar: object = attrs.field(init=False, default=None, repr=False)
    _redraw_at: float = attrs.field(init=False, default=0.0, repr=False)
    _line_every: int = attrs.field(init=False, default=1, repr=False)
    _line_time: float = attrs.field(init=False, default=0.0, repr=False)
    _logs: dict = attrs.field(init=False, factory=dict, repr=False)
    _logs_shown: object = attrs.field(init=False, default=None, repr=False)
    _epochs_done: int = attrs.field(init=False, default=0, repr=False)
    _epoch_printed: int = attrs.field(init=False, default=0, repr=False)
    _step_sums: dict | None = attrs.field(init=False, default=None, repr=False)
    _step_count: int = attrs.field(init=False, default=0, repr=False)
    _step_printed: int = attrs.field(init=False, default=-1, repr=False)

    @hookimpl
    def on_train_begin(self, trainer):
        # The stream is looked up now, not at construction, so redirections made in between
        # (pytest's capture, a notebook) are honoured.
        self._stream = sys.stderr if self.file is None else self.file
        self._logs, self._logs_shown = {}, None
        self._epochs_done = self._epoch_printed = trainer.epoch
        if self.bar is None:
            use_bar = is_terminal(self._stream) or (IN_NOTEBOOK and self.file is None)
        else:
            use_bar = self.bar
        by_steps = getattr(trainer, "max_steps", None) is not None
        self._step_sums, self._step_count, self._step_printed = None, 0, trainer.step
        if by_steps and not use_bar:
            self._step_sums = {}
            self._line_time = perf_counter()
            return
        if use_bar:
            total = trainer.epochs * trainer.steps_per_epoch
            if by_steps:
                total = min(total, trainer.max_steps)
            # miniters=1 and mininterval=0 hand the pacing to on_batch_end: tqdm draws each
            # time it is updated, and it is updated only when a redraw is due.
            self._bar = tqdm(
                total=total,
                initial=min(trainer.step, total),
                file=self._stream,
                unit="step",
                desc=self._title(trainer),
                dynamic_ncols=True,
                miniters=1,
                mininterval=0,
                leave=True,
            )
            self._redraw_at = perf_counter() + REDRAW_SECONDS
        else:
            self._line_every = self.every or epochs_between_lines(trainer.epochs)
            self._line_time = perf_counter()

    @hookimpl
    def on_batch_end(self, trainer, logs):
        # The only per-step work: an attribute test and, with a bar, a clock reading.
        if self._bar is not None and perf_counter() >= self._redraw_at:
            self._redraw(trainer)
        elif self._step_sums is not None:
            for key, value in logs.items():
                self._step_sums[key] = self._step_sums.get(key, 0.0) + value
            self._step_count += 1
            silence = self.every_seconds
            if silence is not None and perf_counter() - self._line_time >= silence:
                self._print_steps(trainer, {})

    @hookimpl
    def on_evaluate_end(self, trainer, logs):
        # (the end of training evaluates again at the step just printed: nothing new)
        if self._step_sums is not None and self._step_printed != trainer.step:
            self._print_steps(trainer, logs)

    @hookimpl
    def on_epoch_end(self, trainer, epoch, logs):
        self._logs = logs
        self._epochs_done = epoch + 1
        if self._bar is not None or self._step_sums is not None:
            return
        number = epoch + 1
        silence = self.every_seconds
        if (
            number == 1
            or number % self._line_every == 0
            or (silence is not None and perf_counter() - self._line_time >= silence)
        ):
            self._print_epoch(trainer)

    # tryfirst: the bar is closed, or the last line printed, before other callbacks' end
    # messages (an early stop's, say), so those print below it.
    @hookimpl(tryfirst=True)
    def on_train_end(self, trainer):
        if self._bar is not None:
            self._redraw(trainer, final=True)
            self._close_bar()  # draws the final state once more, then ends the line
        elif self._step_sums is not None:
            if self._step_printed != trainer.step:
                self._print_steps(trainer, {})
        elif self._logs and self._epoch_printed < self._epochs_done:
            self._print_epoch(trainer)  # the last epoch, or the one an early stop ended on

    @hookimpl(tryfirst=True)
    def on_exception(self, trainer):
        if self._bar is not None:  # show where it stopped, then end the line for the error
            self._bar.update(trainer.step - self._bar.n)
            self._close_bar()

    # --- helpers -------------------------------------------------------------------------------

    def _title(self, trainer, final=False):
        if final:  # the last epoch worked on: finished, or cut short by a stop mid-epoch
            current = trainer.epoch + (1 if getattr(trainer, "batch_in_epoch", 0) else 0)
        else:
            current = min(trainer.epoch + 1, trainer.epochs)
        return f"epoch {current}/{trainer.epochs}"

    def _redraw(self, trainer, final=False):
        bar = self._bar
        bar.set_description_str(self._title(trainer, final), refresh=False)
        if self._logs is not self._logs_shown:  # format only what a finished epoch changed
            bar.set_postfix_str(compact_logs(self._logs), refresh=False)
            self._logs_shown = self._logs
        bar.update(trainer.step - bar.n)
        self._redraw_at = perf_counter() + REDRAW_SECONDS

    def _print_epoch(self, trainer):
        width = len(str(trainer.epochs))
        line = f"epoch {self._epochs_done:>{width}}/{trainer.epochs}  {format_logs(self._logs)}\n"
        self._stream.write(line)
        self._stream.flush()
        self._epoch_printed = self._epochs_done
        self._line_time = perf_counter()

    def _print_steps(self, trainer, held_out):
        """A line of a run by steps: the training values averaged over the steps since the
        last line, and the held-out ones of an evaluation just made."""
        count = max(self._step_count, 1)
        logs = {key: total / count for key, total in self._step_sums.items()}
        logs.update({f"val_{key}": value for key, value in held_out.items()})
        width = len(str(trainer.max_steps))
        line = f"step {trainer.step:>{width}}/{trainer.max_steps}  {format_logs(logs)}\n"
        self._stream.write(line)
        self._stream.flush()
        self._step_sums, self._step_count = {}, 0
        self._step_printed = trainer.step
        self._line_time = perf_counter()

    def _close_bar(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
