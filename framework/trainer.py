"""`Trainer`: the training loop, and the hooks it calls on its callbacks."""

import math
import time

import numpy as np
import pluggy

from framework.allocator import keep_freed_memory
from framework.base import kind_of
from framework.batch_split import MIN_SPLIT_BATCH, BatchSplit, worth_splitting
from framework.errors import ConfigError, DataError
from framework.hookspecs import TrainingHooks
from framework.model import num_samples, take_rows
from framework.registry import PROJECT, resolve
from framework.text import is_array_like

TRAINING_HOOKS = [name for name in vars(TrainingHooks) if name.startswith("on_")]
# An evaluation predicts at most this many numbers at a time (32 MB of float32): MNIST's
# 10,000 test images in one batch, as before, and 10% of Tiny Shakespeare as windows of 64
# with 65 outputs in batches of 2,016 windows rather than 1.8 GB of predictions at once.
EVAL_VALUES = 1 << 23


def component_name(spec, component):
    """The name a metric or callback is known by: its config name, or its class's."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, dict) and "type" in spec:
        return spec["type"]
    return kind_of(component)


def samples_offsets(x):
    """Whether training data is sampled by random offsets each step (every input an
    array-like whose every offset starts a sample) rather than shuffled whole."""
    arrays = x if isinstance(x, list) else [x]
    return all(getattr(a, "every_offset", False) for a in arrays)


def check_finite(array, what):
    if np.issubdtype(array.dtype, np.floating) and array.size:
        # min and max propagate NaN and show ±inf, and read the data without allocating a
        # mask as large as it; only a failing check pays for finding the first bad index.
        if np.isfinite(array.min()) and np.isfinite(array.max()):
            return
        bad = np.argwhere(~np.isfinite(array))[0]
        raise DataError(f"{what} contains NaN or inf (first at index {tuple(int(i) for i in bad)})")


def clip_gradients(grads, max_norm):
    """Scale ``grads`` in place so that their global L2 norm ‖g‖ = √(Σ‖gᵢ‖²) is at most
    ``max_norm`` (each multiplied by max_norm / (‖g‖ + 1e-6) when that is below 1, as
    PyTorch's ``clip_grad_norm_``); return ‖g‖ before clipping."""
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    scale = max_norm / (norm + 1e-6)
    if scale < 1:
        for g in grads:
            g *= g.dtype.type(scale)
    return norm


def direct_call(implementation):
    """Call a pluggy hook implementation with the keyword arguments it takes, as pluggy's
    own dispatch does for a single implementation (without its bookkeeping)."""
    function, names = implementation.function, tuple(implementation.argnames)

    def call(**kwargs):
        return function(*[kwargs[name] for name in names])

    return call


class Trainer:
    """Fits a model with a loss and an optimizer, calling the training-loop hooks.

    ``loss``, ``optimizer``, each metric and each callback may be a registered name, a
    ``{"type": name, ...}`` mapping or an object.  ``l2`` adds ``l2/2 · Σ‖W‖²`` over every
    ``weights`` parameter to the loss (and ``l2 · W`` to its gradient).  ``seed`` seeds the
    order in which samples are shuffled.  ``clip_norm`` scales the gradients, before each
    update, so that their global L2 norm is at most ``clip_norm`` (PyTorch's
    ``clip_grad_norm_``); the norm before clipping is logged as ``grad_norm``.
    """

    def __init__(
        self,
        model,
        loss,
        optimizer="sgd",
        metrics=(),
        callbacks=(),
        logdir=None,
        config=None,
        l2=0.0,
        seed=None,
        clip_norm=None,
    ):
        self.model = model
        self.loss = resolve("losses", loss)
        self.optimizer = resolve("optimizers", optimizer)
        self.metrics = {}
        for spec in metrics:
            metric = resolve("metrics", spec)
            self.metrics[component_name(spec, metric)] = metric
        if not isinstance(l2, (int, float)) or l2 < 0:
            raise ConfigError(f"l2 must be a number >= 0, got {l2!r}")
        self.l2 = float(l2)
        if clip_norm is not None and (
            isinstance(clip_norm, bool) or not isinstance(clip_norm, (int, float)) or clip_norm <= 0
        ):
            raise ConfigError(f"clip_norm must be a number > 0, got {clip_norm!r}")
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        self.logdir = logdir
        self.config = config if config is not None else {}
        self.rng = np.random.default_rng(seed)
        # The seed's entropy, to draw evaluation batches from generators of their own.
        self.seed_entropy = self.rng.bit_generator.seed_seq.entropy
        self.eval_batches = None  # held-out batches an evaluation estimates from (fit's)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0  # batches of `epoch` already done (non-zero when resuming)
        self.epoch_rng_state = None  # the data-order generator's state at the epoch's start
        # The current epoch's running sums of batch loss and metrics (times batch size) and
        # its sample count, kept on the trainer so a checkpoint taken mid-epoch carries them.
        self.epoch_totals = None
        self.epoch_seen = 0
        self.resumed_from_step = None  # set when a checkpoint was restored (framework.checkpoints)
        self.history = {}
        self.stop_training = False
        self.stop_reason = None  # why a callback stopped training early, for the user
        self.validation_data = None
        self.train_logs = {}
        self.test_logs = {}
        self.seconds_before = 0.0  # trained in earlier `fit` calls (or before a resume)
        self._fit_started = None
        self._evaluated_at = None
        self.epochs = 0  # requested by the current `fit`
        self.steps_per_epoch = 0
        self.max_steps = None  # the step the current `fit` ends at, when it counts steps
        self._evaluate_every = None
        self.sampled = False  # the training data is sampled by random offsets each step
        self._hooks = pluggy.PluginManager(PROJECT)
        self._hooks.add_hookspecs(TrainingHooks)
        self.callbacks = []
        for spec in callbacks:
            self.add_callback(spec)

    # --- callbacks -----------------------------------------------------------------------------

    def add_callback(self, spec):
        callback = resolve("callbacks", spec)
        self._hooks.register(callback)
        self.callbacks.append(callback)
        return callback

    def _active_hooks(self):
        """Each training-loop hook that has implementations, as a callable taking the hook's
        arguments by keyword; others are None and skipped for free.  A hook that one plain
        implementation answers (most runs: one callback implements it) is called directly
        with the arguments it takes, as pluggy would call it: pluggy's dispatch costs about
        2 µs a call, and B1 with the tensorboard callback makes 400 calls in 0.4 s."""
        hooks = {}
        for name in TRAINING_HOOKS:
            caller = getattr(self._hooks.hook, name)
            implementations = caller.get_hookimpls()
            if not implementations:
                hooks[name] = None
            elif len(implementations) == 1 and not (
                implementations[0].hookwrapper or implementations[0].wrapper
            ):
                hooks[name] = direct_call(implementations[0])
            else:
                hooks[name] = caller
        return hooks

    def _call(self, name, **kwargs):
        caller = getattr(self._hooks.hook, name)
        if caller.get_hookimpls():
            caller(trainer=self, **kwargs)

    # --- data ----------------------------------------------------------------------------------

    def check_data(self, x, y, what="training"):
        """``(x, y)`` as arrays the model takes (``x`` a list of arrays for a model of several
        inputs); raises `DataError` / `ShapeError` for data that cannot train it (wrong
        shapes, NaN or inf, mismatched lengths, bad targets)."""
        x = self.model.prepare(x, f"{what} x")
        lazy = is_array_like(y)
        y = y if lazy else np.asarray(y)
        n = num_samples(x)
        if tuple(y.shape[:1]) != (n,):
            raise DataError(f"{what} x has {n} samples but y has {len(y) if len(y.shape) else 0}")
        if not lazy and np.issubdtype(y.dtype, np.floating):
            y = y.astype(self.model.dtype, copy=False)
        for array in x if isinstance(x, list) else [x]:
            if not is_array_like(array):  # an array-like is never read whole
                check_finite(array, f"{what} x")
        check_targets = getattr(self.loss, "check_targets", None)  # optional in the protocol
        # An array-like's targets are checked on its first rows: its dataset vouches for the
        # rest (the token datasets check their ids as they open their files).
        sample = np.asarray(y[: min(n, 4096)]) if lazy else y
        check_finite(sample, f"{what} y")
        if check_targets is not None:
            check_targets(sample, self.model.output_shape)
        return x, y

    # --- evaluation ----------------------------------------------------------------------------

    def _penalty(self, add_gradients=False):
        """The L2 term ½·l2·Σ‖W‖² over every ``weights`` parameter; with ``add_gradients``
        also adds its gradient l2·W to each layer's weights gradient."""
        if not self.l2:
            return 0.0
        total = 0.0
        for layer in self.model.layers:
            weights = layer.params.get("weights")
            if weights is not None:
                total += float(np.vdot(weights, weights))
                if add_gradients:
                    layer.grads["weights"] += self.l2 * weights
        return 0.5 * self.l2 * total

    def _logs(self, y_pred, y):
        logs = {"loss": float(self.loss.forward(y_pred, y)) + self._penalty()}
        for name, metric in self.metrics.items():
            logs[name] = float(metric(y_pred, y))
        return logs

    def evaluate(self, x, y, batch_size=None, batches=None):
        """``{"loss": ..., metric: ...}`` on ``(x, y)`` in evaluation mode (no dropout);
        ``loss`` includes the L2 penalty, as in training.  ``batches``: an estimate from that
        many random batches of ``batch_size`` instead of all of ``x`` (nanoGPT's
        ``eval_iters``)."""
        x, y = self.check_data(x, y, "evaluation")
        return self._evaluate(x, y, batch_size, batches)

    def _evaluation_rows(self, n, batch_size, batches):
        """The row sets an evaluation reads: all ``n`` rows in order, in batches whose
        predictions stay within `EVAL_VALUES` numbers; or ``batches`` random batches of
        ``batch_size``, drawn from a generator of the seed and the step (so an estimate is the
        same on a resumed run and never disturbs the training order)."""
        if batches is not None:
            size = min(int(batch_size or self._batch_size or 32), n)
            rng = np.random.default_rng([self.seed_entropy, self.step])
            return [rng.integers(0, n, size=size) for _ in range(batches)]
        per_row = max(1, math.prod(self.model.output_shape))
        size = max(int(batch_size or 0), 256, EVAL_VALUES // per_row)
        return [slice(start, start + size) for start in range(0, n, size)]

    def _evaluate(self, x, y, batch_size=None, batches=None):
        """Loss and metrics accumulated batch by batch: all predictions are never held at once.
        A batch's loss weighs by the targets its mean ran over (the loss's ``count``, where it
        has one: masked tokens do not count), a metric's by its samples, and a stateful
        metric (``update`` / ``result`` / ``reset``) keeps its own counts."""
        model, loss = self.model, self.loss
        count = getattr(loss, "count", None)
        stateful = {
            name: metric
            for name, metric in self.metrics.items()
            if callable(getattr(metric, "update", None))
            and callable(getattr(metric, "result", None))
        }
        for metric in stateful.values():
            metric.reset()
        loss_total = loss_weight = 0.0
        totals = dict.fromkeys((name for name in self.metrics if name not in stateful), 0.0)
        seen = 0
        # The forward pass runs in batches of the training's size (at least 256), as before;
        # the loss and metrics in chunks of at most EVAL_VALUES predicted numbers.
        forward_batch = max(int(batch_size or getattr(self, "_batch_size", None) or 1024), 256)
        for rows in self._evaluation_rows(num_samples(x), batch_size, batches):
            xb, yb = take_rows(x, rows), np.asarray(y[rows])
            y_pred = model.predict(xb, batch_size=forward_batch)
            weight = count(y_pred, yb) if count is not None else len(yb)
            if weight:
                loss_total += float(loss.forward(y_pred, yb)) * weight
                loss_weight += weight
            for name in totals:
                totals[name] += float(self.metrics[name](y_pred, yb)) * len(yb)
            for metric in stateful.values():
                metric.update(y_pred, yb)
            seen += len(yb)
        logs = {"loss": (loss_total / loss_weight if loss_weight else 0.0) + self._penalty()}
        for name in self.metrics:
            metric = stateful.get(name)
            logs[name] = (
                float(metric.result()) if metric is not None else totals[name] / max(seen, 1)
            )
        return logs

    def _run_evaluation(self, hooks):
        if self.validation_data is None:
            return None
        logs = self._evaluate(*self.validation_data, batches=self.eval_batches)
        self.test_logs = logs
        self._evaluated_at = self.step
        if hooks["on_evaluate_end"]:
            hooks["on_evaluate_end"](trainer=self, step=self.step, logs=logs)
        return logs

    # --- training ------------------------------------------------------------------------------

    def fit(
        self,
        x,
        y,
        epochs=1,
        batch_size=None,
        shuffle=True,
        validation_data=None,
        evaluate_every=None,
        initial_epoch=None,
        steps=None,
        eval_batches=None,
    ):
        """Train ``epochs`` more epochs (a second call continues where the first ended, as
        Keras' ``fit`` does), or ``steps`` more optimizer steps, whichever ends first
        (``epochs=None`` with ``steps``: no limit on epochs), or until a callback sets
        ``stop_training``.

        ``initial_epoch`` (Keras' meaning) makes ``epochs`` the epoch to end at instead:
        a trainer resumed from a checkpoint at epoch 2 of a 5-epoch run finishes it with
        ``fit(..., epochs=5, initial_epoch=trainer.epoch)`` (the epoch it was in the middle
        of is finished first).  It must be the trainer's ``epoch``.

        ``batch_size`` of 1 trains per sample; ``None`` trains on the full batch.  Held-out
        ``validation_data`` are evaluated after each epoch, every ``evaluate_every`` steps
        if given, and at the end; ``eval_batches`` estimates them from that many random
        batches instead of all of them (nanoGPT's ``eval_iters``).  Returns ``history``:
        per-epoch lists of each log value.

        ``x`` and ``y`` may be array-likes (`framework.Windows`, an ``np.memmap``): batches are
        gathered by index, never from a copy.  A source whose every offset starts a sample
        (``every_offset``, as `framework.Windows` has) is sampled: each step draws
        ``batch_size`` random rows with the trainer's generator, and an epoch is
        ``len(x) / block_size`` samples.
        """
        x, y = self.check_data(x, y, "training")
        keep_freed_memory()  # a step's arrays reused, not faulted in again (see the module)
        if validation_data is not None:
            xv, yv = validation_data
            if len(xv):
                self.validation_data = self.check_data(xv, yv, "held-out")
        if steps is not None and (not isinstance(steps, (int, np.integer)) or steps < 0):
            raise ConfigError(f"steps must be a non-negative integer, got {steps!r}")
        if eval_batches is not None:
            if not isinstance(eval_batches, (int, np.integer)) or eval_batches < 1:
                raise ConfigError(f"eval_batches must be a positive integer, got {eval_batches!r}")
            if self.validation_data is None:
                raise ConfigError(
                    "eval_batches estimates the held-out loss, but there is no held-out data "
                    "(give validation_data, or a dataset with a held-out part)"
                )
        self.eval_batches = eval_batches
        self._evaluate_every = evaluate_every
        steps_only = epochs is None
        if steps_only:
            if steps is None:
                raise ConfigError("give epochs, steps or both")
            epochs, initial_epoch = 0, None  # set below, once an epoch's steps are known
        n = num_samples(x)
        if batch_size is not None and (
            not isinstance(batch_size, (int, np.integer)) or batch_size < 1
        ):
            raise ConfigError(
                f"batch_size must be a positive integer or omitted, got {batch_size!r}"
            )
        if not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ConfigError(f"epochs must be a non-negative integer, got {epochs!r}")
        if evaluate_every is not None and (
            not isinstance(evaluate_every, int) or evaluate_every < 1
        ):
            raise ConfigError(f"evaluate_every must be a positive integer, got {evaluate_every!r}")
        self._batch_size = batch_size = min(batch_size or n, n)
        self.max_steps = None if steps is None else self.step + int(steps)  # the step to end at
        if initial_epoch is not None and initial_epoch != self.epoch:
            raise ConfigError(
                f"initial_epoch={initial_epoch!r}, but this trainer is at epoch {self.epoch}: "
                "give initial_epoch=trainer.epoch (after a resume) or leave it out"
            )
        self.epochs = epochs = (
            epochs if initial_epoch is not None else self.epoch + epochs
        )  # where this fit ends
        full_batch = getattr(self.optimizer, "full_batch", False)
        self.sampled = samples_offsets(x)
        # A sampled source's epoch: len / block_size samples (each id seen about once).
        per_epoch = math.ceil(n / getattr(x, "block_size", 1)) if self.sampled else n
        self.steps_per_epoch = 1 if full_batch else math.ceil(per_epoch / batch_size)
        if steps_only:  # the epoch the steps end in
            left = self.max_steps - self.step + (0 if full_batch else self.batch_in_epoch)
            self.epochs = epochs = self.epoch + math.ceil(left / self.steps_per_epoch)
        self.stop_training = False
        self.stop_reason = None
        hooks = self._active_hooks()
        self._evaluated_at = None  # the step of this fit's latest evaluation
        self._fit_started = time.perf_counter()
        try:
            if hooks["on_train_begin"]:
                hooks["on_train_begin"](trainer=self)
            if full_batch:
                self._fit_full_batch(x, y, epochs, hooks, evaluate_every)
            else:
                self._fit_batches(x, y, epochs, batch_size, shuffle, hooks, evaluate_every)
            if self.validation_data is not None:
                self._run_evaluation(hooks)
        except BaseException as exc:
            self._stop_clock()
            self._call("on_exception", exception=exc)
            raise
        self._stop_clock()
        if hooks["on_train_end"]:
            hooks["on_train_end"](trainer=self, logs=dict(self.train_logs))
        return self.history

    @property
    def seconds(self):
        """Seconds spent training in all, the running `fit` included (a checkpoint written
        mid-run records them, so a resumed run's total counts the time before the kill)."""
        running = 0.0 if self._fit_started is None else time.perf_counter() - self._fit_started
        return self.seconds_before + running

    @seconds.setter
    def seconds(self, value):
        self.seconds_before = float(value)
        if self._fit_started is not None:
            self._fit_started = time.perf_counter()

    def _stop_clock(self):
        self.seconds_before, self._fit_started = self.seconds, None

    def _record_epoch(self, logs, hooks, epoch):
        # A run by steps that evaluates every so many steps does not evaluate at epoch ends
        # too (an epoch of a sampled corpus is a count, not a pass over the data).
        by_steps = self.max_steps is not None and self._evaluate_every
        if self.validation_data is not None and not by_steps:
            # An evaluate_every evaluation after the epoch's last step already has the logs.
            evaluated = (
                self.test_logs if self._evaluated_at == self.step else self._run_evaluation(hooks)
            )
            for key, value in evaluated.items():
                logs[f"val_{key}"] = value
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)
        if hooks["on_epoch_end"]:
            hooks["on_epoch_end"](trainer=self, epoch=epoch, logs=logs)

    def _fit_batches(self, x, y, epochs, batch_size, shuffle, hooks, evaluate_every):
        model, loss, optimizer = self.model, self.loss, self.optimizer
        n = num_samples(x)
        last = model.output_layer
        link = getattr(getattr(last, "activation", None), "link", None)
        fuses_with = getattr(loss, "fuses_with", None)  # optional: a loss may not fuse at all
        fused = (
            link is not None
            and hasattr(last, "backward_preactivation")
            and bool(fuses_with and fuses_with(link))
        )
        # On two threads, a model whose samples never meet in forward may train each half of
        # a batch on its own thread, through its own copy of the model (framework.batch_split).
        splitter = BatchSplit(model) if worth_splitting(model, batch_size) else None
        batch_begin = hooks["on_batch_begin"]
        after_backward = hooks["on_after_backward"]
        batch_end = hooks["on_batch_end"]
        metrics = self.metrics
        l2 = self.l2
        lazy_y, max_steps = is_array_like(y), self.max_steps
        sampled, clip_norm = self.sampled, self.clip_norm
        while self.epoch < epochs and not self.stop_training and not self.steps_done():
            epoch = self.epoch
            if sampled:
                # Each step draws its own rows, from where the generator stands (a resumed
                # run's was restored from the checkpoint): no order to replay.
                order = None
            else:
                if self.batch_in_epoch == 0 or self.epoch_rng_state is None:
                    self.epoch_rng_state = self.rng.bit_generator.state
                else:  # resuming mid-epoch: replay this epoch's order from its saved state
                    self.rng.bit_generator.state = self.epoch_rng_state
                # Batches are taken from the data by index, not from a shuffled copy of it:
                # the copy would hold the whole training set twice.
                order = self.rng.permutation(n) if shuffle else None
            if self.batch_in_epoch == 0 and hooks["on_epoch_begin"]:
                hooks["on_epoch_begin"](trainer=self, epoch=epoch)
            if self.batch_in_epoch == 0 or self.epoch_totals is None:
                logged = ["loss", *(["grad_norm"] if clip_norm else []), *metrics]
                self.epoch_totals = dict.fromkeys(logged, 0.0)
                self.epoch_seen = 0
            totals = self.epoch_totals
            seen = 0  # samples of this epoch trained in this call
            epoch_end = self.steps_per_epoch * batch_size if sampled else n
            for start in range(self.batch_in_epoch * batch_size, epoch_end, batch_size):
                if sampled:
                    rows = self.rng.integers(0, n, size=batch_size)
                elif order is None:
                    rows = slice(start, start + batch_size)
                else:
                    rows = order[start : start + batch_size]
                xb, yb = take_rows(x, rows), y[rows]
                if lazy_y:  # an array-like may give another sequence type
                    yb = np.asarray(yb)
                step = self.step
                if batch_begin:
                    batch_begin(trainer=self, step=step, batch=(xb, yb))
                net = splitter if splitter is not None and len(yb) >= MIN_SPLIT_BATCH else model
                y_pred = net.forward(xb, True)
                value = loss.forward(y_pred, yb)
                if fused:
                    net.backward_preactivation(loss.backward_fused(y_pred, yb), input_grad=False)
                else:
                    net.backward(loss.backward(y_pred, yb), input_grad=False)
                if l2:
                    value += self._penalty(add_gradients=True)
                if after_backward:
                    after_backward(trainer=self, step=step)
                grads = model.grads_list()
                norm = clip_gradients(grads, clip_norm) if clip_norm else None
                optimizer.step(model.params_list(), grads)
                logs = {"loss": float(value)}
                if norm is not None:
                    logs["grad_norm"] = norm
                for name, metric in metrics.items():
                    logs[name] = float(metric(y_pred, yb))
                count = len(yb)
                for key, item in logs.items():
                    totals[key] += item * count
                seen += count
                self.epoch_seen += count
                self.step = step + 1
                self.batch_in_epoch += 1
                if batch_end:
                    batch_end(trainer=self, step=step, logs=logs)
                if evaluate_every and self.step % evaluate_every == 0:
                    self._run_evaluation(hooks)
                if self.stop_training or (max_steps is not None and self.step >= max_steps):
                    break
            epoch_done = start + batch_size >= epoch_end if seen else True
            if not epoch_done:  # stopped mid-epoch: the epoch is not finished
                self.train_logs = {key: total / self.epoch_seen for key, total in totals.items()}
                break
            self.epoch += 1
            self.batch_in_epoch = 0
            self.train_logs = {
                key: total / max(self.epoch_seen, 1) for key, total in totals.items()
            }
            self._record_epoch(dict(self.train_logs), hooks, epoch)

    def steps_done(self):
        """Whether the current `fit` has made the optimizer steps it was asked for."""
        return self.max_steps is not None and self.step >= self.max_steps

    def _fit_full_batch(self, x, y, epochs, hooks, evaluate_every):
        """Full-batch optimizers (BFGS) minimise the loss over the flat parameter vector; each
        of their iterations is one step and one epoch, and the hooks of a step and an epoch
        are called after it, in their usual order."""
        model, loss = self.model, self.loss
        evaluated = {"theta": None}

        def objective(theta):
            model.set_params(theta)
            y_pred = model.forward(x, True)
            value = float(loss.forward(y_pred, y))
            # The chained gradient, not the fused one the mini-batch loop takes: it is the
            # gradient of the value above, clipping included, and a line search needs the
            # two to agree.
            model.backward(loss.backward(y_pred, y), input_grad=False)
            value += self._penalty(add_gradients=True)
            evaluated.update(theta=np.array(theta, copy=True), y_pred=y_pred, value=value)
            return value, model.get_grads().astype(np.float64, copy=False)

        def after_iteration(theta):
            if evaluated["theta"] is None or not np.array_equal(theta, evaluated["theta"]):
                objective(theta)
            epoch = step = self.step
            for name in ("on_epoch_begin",):
                if hooks[name]:
                    hooks[name](trainer=self, epoch=epoch)
            if hooks["on_batch_begin"]:
                hooks["on_batch_begin"](trainer=self, step=step, batch=(x, y))
            if hooks["on_after_backward"]:
                hooks["on_after_backward"](trainer=self, step=step)
            logs = {"loss": evaluated["value"]}
            for name, metric in self.metrics.items():
                logs[name] = float(metric(evaluated["y_pred"], y))
            self.step += 1
            self.epoch += 1
            self.train_logs = logs
            if hooks["on_batch_end"]:
                hooks["on_batch_end"](trainer=self, step=step, logs=logs)
            if evaluate_every and self.step % evaluate_every == 0:
                self._run_evaluation(hooks)
            self._record_epoch(dict(logs), hooks, epoch)
            return self.stop_training or self.epoch >= epochs or self.steps_done()

        iterations = epochs - self.epoch
        if self.max_steps is not None:
            iterations = min(iterations, self.max_steps - self.step)
        if iterations <= 0:
            return
        theta = self.optimizer.minimize(
            objective, model.get_params().astype(np.float64), iterations, after_iteration
        )
        model.set_params(theta)
        if not self.train_logs:  # converged before a first iteration completed
            objective(theta)
            self.train_logs = {"loss": evaluated["value"]}
