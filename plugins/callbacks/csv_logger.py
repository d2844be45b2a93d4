"""`csv_logger`: the history, one row per epoch, in a CSV file."""

import csv
import io
import os
from typing import ClassVar

import attrs
from attrs.validators import instance_of

from framework import Callback, ConfigError, atomic_write, hookimpl
from framework.rundir import record, recorded


def existing_header(path, separator):
    """The first row of ``path``, or None when there is no such file or it is empty."""
    try:
        with open(path, newline="", encoding="utf-8") as file:
            return next(csv.reader(file, delimiter=separator), None)
    except FileNotFoundError:
        return None


def keep_before_epoch(path, separator, epoch):
    """Rewrite ``path`` with its header and the rows of epochs before ``epoch`` only."""
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file, delimiter=separator))
    kept = rows[:1] + [row for row in rows[1:] if row and int(row[0]) < epoch]
    text = io.StringIO()
    csv.writer(text, delimiter=separator).writerows(kept)
    atomic_write(path, lambda f: f.write(text.getvalue().encode("utf-8")))


@attrs.define(eq=False)
class CSVLogger(Callback):
    """Writes ``epoch`` (counted from 0) and every epoch log value -- ``loss``, the metrics,
    the held-out ``val_`` values -- as one row per epoch, under a header row.

    A relative ``filename`` lands in the trainer's ``logdir`` (the current directory when it
    has none).  Each row is flushed as its epoch ends, so the file can be watched while
    training runs, and the file is closed when training ends or fails.  ``append = true``
    adds rows to an existing file instead of replacing it; its header must then match this
    run's values.  A run resumed from a checkpoint always appends, after dropping the rows of
    epochs it is about to train again.  After training, ``path`` is where the file went.
    """

    kind: ClassVar[str] = "csv_logger"

    filename: str = attrs.field(default="history.csv", converter=os.fspath)
    append: bool = attrs.field(default=False, validator=instance_of(bool))
    separator: str = attrs.field(default=",", validator=instance_of(str))

    path: str | None = attrs.field(init=False, default=None, repr=False)
    _file: object = attrs.field(init=False, default=None, repr=False)
    _writer: object = attrs.field(init=False, default=None, repr=False)
    _columns: list | None = attrs.field(init=False, default=None, repr=False)

    @separator.validator
    def _one_character(self, attribute, value):
        if len(value) != 1:
            raise ValueError(f"separator must be one character, got {value!r}")

    @hookimpl
    def on_train_begin(self, trainer):
        self.path = self.filename
        if not os.path.isabs(self.path) and trainer.logdir:
            self.path = os.path.join(trainer.logdir, self.path)
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        resumed = getattr(trainer, "resumed_from_step", None) is not None
        if resumed and os.path.exists(self.path):
            # Rows of epochs finished after the checkpoint will be logged again: drop them.
            keep_before_epoch(self.path, self.separator, trainer.epoch)
        append = self.append or resumed
        if not append and os.path.exists(self.path) and recorded(self.path) is False:
            raise ConfigError(
                f"csv_logger: {self.path} is there already and this run did not write it; "
                "give another filename, move the file away, or set append = true to add to it"
            )
        self._columns = existing_header(self.path, self.separator) if append else None
        record(self.path)  # in a run's directory, the run's own file
        self._file = open(self.path, "a" if append else "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file, delimiter=self.separator)

    @hookimpl
    def on_epoch_end(self, epoch, logs):
        columns = ["epoch", *logs]
        if self._columns is None:
            self._writer.writerow(columns)
            self._columns = columns
        elif self._columns != columns:
            raise ConfigError(
                f"csv_logger: {self.path} has the columns {', '.join(self._columns)}, but this run "
                f"logs {', '.join(columns)}; write to another filename or set append = false"
            )
        self._writer.writerow([epoch, *logs.values()])
        self._file.flush()

    @hookimpl
    def on_train_end(self):
        self._close()

    @hookimpl
    def on_exception(self):
        self._close()

    def _close(self):
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None
