"""plugnet's whole extension surface, one hook per function.

Two families of hooks live here:

* **Registration hooks** are implemented by plugins (built-in modules, installed
  distributions with a ``plugnet`` entry point, or modules named by ``--plugin``).  Each
  returns a mapping of registered name -> factory, where a factory is a class or a callable
  returning a component.  All implementations are called and their mappings merged; a name
  registered twice is an error naming both plugins.

* **Training-loop hooks** are implemented by callbacks.  Callbacks are registered on one
  trainer alone, so a callback sees only the training it was given to.  An implementation may
  accept any subset of the arguments listed (pluggy matches them by name).  Return values are
  ignored; to stop training set ``trainer.stop_training = True``.
"""

import pluggy

hookspec = pluggy.HookspecMarker("plugnet")
hookimpl = pluggy.HookimplMarker("plugnet")


# --- registration hooks ------------------------------------------------------------------


@hookspec
def register_layers():
    """Return ``{name: factory}`` of layers (``dense``, ``conv2d``, ...).

    A layer follows the layer protocol: ``build(input_shape) -> output_shape``,
    ``forward(x, training) -> y``, ``backward(grad_y) -> grad_x``, and ``params`` / ``grads``
    dictionaries with the same keys.
    """


@hookspec
def register_activations():
    """Return ``{name: factory}`` of activations: ``forward(z) -> a``,
    ``backward(z, a, grad_a) -> grad_z``."""


@hookspec
def register_losses():
    """Return ``{name: factory}`` of losses: ``forward(y_pred, y_true) -> float`` (mean over
    the batch) and ``backward(y_pred, y_true) -> grad_y_pred``."""


@hookspec
def register_optimizers():
    """Return ``{name: factory}`` of optimizers: ``step(params, grads)`` updating the arrays
    in place, an ``lr`` attribute, ``state_dict()`` / ``load_state_dict(d)``.  Full-batch
    optimizers set ``full_batch = True`` and implement ``minimize(objective, x0, iterations,
    callback)`` instead of ``step``."""


@hookspec
def register_initializers():
    """Return ``{name: factory}`` of initializers: ``__call__(shape, rng) -> ndarray``."""


@hookspec
def register_metrics():
    """Return ``{name: factory}`` of metrics: ``__call__(y_pred, y_true) -> float``."""


@hookspec
def register_datasets():
    """Return ``{name: factory}`` of datasets:
    ``load(rng) -> (x_train, y_train, x_test, y_test)``; the test arrays may be empty."""


@hookspec
def register_callbacks():
    """Return ``{name: factory}`` of callbacks: objects whose methods are ``hookimpl``s of
    the training-loop hooks below."""


REGISTRATION_HOOKS = {
    "layers": "register_layers",
    "activations": "register_activations",
    "losses": "register_losses",
    "optimizers": "register_optimizers",
    "initializers": "register_initializers",
    "metrics": "register_metrics",
    "datasets": "register_datasets",
    "callbacks": "register_callbacks",
}


# --- training-loop hooks -------------------------------------------------------------------


class TrainingHooks:
    """Called by `framework.Trainer` on the callbacks of one training run."""

    @hookspec
    def on_train_begin(self, trainer):
        """Before the first step of ``fit``; ``trainer.step`` is the step about to run
        (0 for a new run, later when resuming)."""

    @hookspec
    def on_epoch_begin(self, trainer, epoch):
        """At the start of each epoch (counted from 0)."""

    @hookspec
    def on_batch_begin(self, trainer, step, batch):
        """Before the forward pass of global step ``step``; ``batch`` is ``(x, y)``."""

    @hookspec
    def on_after_backward(self, trainer, step):
        """Gradients are in every ``layer.grads`` (L2 included), parameters not yet updated."""

    @hookspec
    def on_batch_end(self, trainer, step, logs):
        """After the update of step ``step``; ``logs`` holds the batch ``loss`` and metrics."""

    @hookspec
    def on_evaluate_end(self, trainer, step, logs):
        """After an evaluation on held-out data at global step ``step`` (the number of steps
        done); ``logs`` holds its ``loss`` and metrics."""

    @hookspec
    def on_epoch_end(self, trainer, epoch, logs):
        """After each epoch; ``logs`` holds the epoch's mean ``loss`` and metrics, and
        ``val_``-prefixed held-out values when there are held-out data."""

    @hookspec
    def on_train_end(self, trainer, logs):
        """After the last step, also after an early stop; ``logs`` as the last epoch's."""

    @hookspec
    def on_exception(self, trainer, exception):
        """Training raised ``exception``; flush and close what you hold.  The exception is
        re-raised after every callback has been told."""
