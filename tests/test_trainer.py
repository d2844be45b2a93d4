import numpy as np
import pytest

from framework import Callback, ConfigError, DataError, Sequential, Trainer, hookimpl


def blobs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 2)) + np.where(y[:, None] == 1, 2.0, -2.0)
    return x, y


def classifier(seed=0, dtype="float32"):
    return Sequential(
        [
            {"type": "dense", "units": 4, "activation": "tanh"},
            {"type": "dense", "units": 2, "activation": "softmax"},
        ],
        input_shape=(2,),
        dtype=dtype,
        seed=seed,
    )


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    @hookimpl
    def on_train_begin(self, trainer):
        self.calls.append(("train_begin",))

    @hookimpl
    def on_epoch_begin(self, epoch):
        self.calls.append(("epoch_begin", epoch))

    @hookimpl
    def on_batch_begin(self, step, batch):
        self.calls.append(("batch_begin", step, len(batch[0])))

    @hookimpl
    def on_after_backward(self, trainer, step):
        grads = [g.copy() for g in trainer.model.grads_list()]
        self.calls.append(("after_backward", step, any(np.any(g) for g in grads)))

    @hookimpl
    def on_batch_end(self, step, logs):
        self.calls.append(("batch_end", step, sorted(logs)))

    @hookimpl
    def on_evaluate_end(self, step, logs):
        self.calls.append(("evaluate_end", step, sorted(logs)))

    @hookimpl
    def on_epoch_end(self, epoch, logs):
        self.calls.append(("epoch_end", epoch, sorted(logs)))

    @hookimpl
    def on_train_end(self, logs):
        self.calls.append(("train_end",))


def test_hooks_are_called_in_order_with_their_arguments():
    x, y = blobs(10)
    recorder = Recorder()
    trainer = Trainer(
        classifier(), "cross_entropy", "sgd", metrics=["accuracy"], callbacks=[recorder]
    )
    trainer.fit(x, y, epochs=2, batch_size=4, validation_data=blobs(6, seed=1))
    calls = recorder.calls
    assert calls[0] == ("train_begin",)
    assert calls[1] == ("epoch_begin", 0)
    assert calls[2] == ("batch_begin", 0, 4)
    assert calls[3] == ("after_backward", 0, True)
    assert calls[4] == ("batch_end", 0, ["accuracy", "loss"])
    assert [c for c in calls if c[0] == "batch_begin"][-1] == (
        "batch_begin",
        5,
        2,
    )  # 3 batches per epoch
    epoch_ends = [c for c in calls if c[0] == "epoch_end"]
    assert epoch_ends[0] == ("epoch_end", 0, ["accuracy", "loss", "val_accuracy", "val_loss"])
    assert ("evaluate_end", 3, ["accuracy", "loss"]) in calls
    assert calls[-2][0] == "evaluate_end" and calls[-1] == ("train_end",)
    assert trainer.step == 6 and trainer.epoch == 2


def test_a_hook_one_callback_implements_is_called_without_pluggys_dispatch(monkeypatch):
    """One implementation: called directly, with the arguments it takes.  Two: through
    pluggy, in its order (the later registered first).  An exception comes through as
    raised."""
    import pluggy

    dispatched = []
    hookexec = pluggy.PluginManager._hookexec

    def counting(self, name, *args):
        dispatched.append(name)
        return hookexec(self, name, *args)

    monkeypatch.setattr(pluggy.PluginManager, "_hookexec", counting)
    x, y = blobs(8)
    recorder = Recorder()
    Trainer(classifier(), "cross_entropy", "sgd", callbacks=[recorder]).fit(
        x, y, epochs=1, batch_size=4
    )
    assert dispatched == [] and ("batch_end", 1, ["loss"]) in recorder.calls

    order = []

    class Named(Callback):
        def __init__(self, name):
            self.name = name

        @hookimpl
        def on_batch_end(self, step):
            order.append((self.name, step))

    Trainer(classifier(), "cross_entropy", callbacks=[Named("a"), Named("b")]).fit(
        x, y, epochs=1, batch_size=4
    )
    assert order == [("b", 0), ("a", 0), ("b", 1), ("a", 1)]
    assert dispatched.count("on_batch_end") == 2

    class Fails(Callback):
        @hookimpl
        def on_batch_begin(self, step):
            raise KeyError(f"at step {step}")

    with pytest.raises(KeyError, match="at step 0"):
        Trainer(classifier(), "cross_entropy", callbacks=[Fails()]).fit(x, y, epochs=1)


def test_stop_training_from_a_callback():
    class StopAtThree(Callback):
        @hookimpl
        def on_batch_end(self, trainer, step):
            if step == 2:
                trainer.stop_training = True

    x, y = blobs(20)
    trainer = Trainer(classifier(), "cross_entropy", callbacks=[StopAtThree()])
    trainer.fit(x, y, epochs=10, batch_size=2)
    assert trainer.step == 3


def test_exception_reaches_callbacks_then_propagates():
    seen = []

    class Boom(Callback):
        @hookimpl
        def on_batch_end(self, step):
            raise RuntimeError("boom")

        @hookimpl
        def on_exception(self, exception):
            seen.append(str(exception))

    x, y = blobs(8)
    with pytest.raises(RuntimeError, match="boom"):
        Trainer(classifier(), "cross_entropy", callbacks=[Boom()]).fit(x, y, epochs=1)
    assert seen == ["boom"]


@pytest.mark.parametrize("batch_size, steps", [(1, 30), (8, 4), (None, 2)])
def test_per_sample_mini_and_full_batch(batch_size, steps):
    x, y = blobs(15)
    trainer = Trainer(classifier(), "cross_entropy", {"type": "sgd", "lr": 0.1})
    history = trainer.fit(x, y, epochs=2, batch_size=batch_size)
    assert trainer.step == steps
    assert len(history["loss"]) == 2


class SquaredError:
    """A loss by protocol alone: forward and backward, no base class, no optional methods."""

    def forward(self, y_pred, y_true):
        return float(np.mean((y_pred - y_true) ** 2))

    def backward(self, y_pred, y_true):
        return 2 * (y_pred - y_true) / y_pred.size


def test_a_loss_with_only_forward_and_backward_trains_after_softmax():
    from framework.testing import check_loss

    x, y = blobs()
    trainer = Trainer(classifier(), SquaredError(), {"type": "sgd", "lr": 0.5})
    before = trainer.evaluate(x, np.eye(2)[y])["loss"]
    trainer.fit(x, np.eye(2)[y], epochs=20, batch_size=10)
    assert trainer.evaluate(x, np.eye(2)[y])["loss"] < before / 2
    assert check_loss(SquaredError()) < 1e-6


def test_learns_separable_blobs_and_evaluates():
    x, y = blobs(200)
    trainer = Trainer(
        classifier(),
        "cross_entropy",
        {"type": "sgd", "lr": 0.5, "momentum": 0.5},
        metrics=["accuracy"],
    )
    trainer.fit(x, y, epochs=20, batch_size=16)
    result = trainer.evaluate(*blobs(100, seed=3))
    assert result["accuracy"] >= 0.95
    assert set(result) == {"loss", "accuracy"}


def test_seeded_shuffling_is_reproducible():
    x, y = blobs(40)
    params = []
    for _ in range(2):
        trainer = Trainer(classifier(seed=1), "cross_entropy", "sgd", seed=5)
        trainer.fit(x, y, epochs=3, batch_size=4)
        params.append(trainer.model.get_params())
    assert np.array_equal(*params)


def test_l2_adds_its_penalty_and_gradient():
    x, y = blobs(10)
    model = classifier(dtype="float64")
    grads = {}

    class Grab(Callback):
        @hookimpl
        def on_after_backward(self, trainer):
            grads["w"] = trainer.model.layers[0].grads["weights"].copy()

    plain = Trainer(model, "cross_entropy", {"type": "sgd", "lr": 0.0}, callbacks=[Grab()])
    plain.fit(x, y, epochs=1)
    without = grads["w"]
    regularised = Trainer(
        model, "cross_entropy", {"type": "sgd", "lr": 0.0}, callbacks=[Grab()], l2=0.3
    )
    regularised.fit(x, y, epochs=1)
    np.testing.assert_allclose(
        grads["w"] - without, 0.3 * model.layers[0].params["weights"], atol=1e-12
    )
    weights_sq = sum(float(np.sum(layer.params["weights"] ** 2)) for layer in model.layers)
    assert regularised.history["loss"][0] == pytest.approx(
        plain.history["loss"][0] + 0.15 * weights_sq
    )


def test_softmax_cross_entropy_stays_finite_at_extreme_logits():
    model = classifier(dtype="float64")
    model.layers[-1].params["weights"][...] = [[1e4, -1e4]] * 4
    x = np.ones((4, 2))
    y = np.array([1, 1, 1, 1])  # the class the network is sure is wrong
    trainer = Trainer(model, "cross_entropy", {"type": "sgd", "lr": 1e-6})
    trainer.fit(x, y, epochs=1)
    assert np.isfinite(trainer.model.get_params()).all()


def test_bfgs_drives_the_flat_parameter_vector():
    x = np.array([[3, 5], [5, 1], [10, 2]], dtype=float)
    x = x / x.max(axis=0)
    y = np.array([[0.75], [0.82], [0.93]])
    model = Sequential(
        [
            {
                "type": "dense",
                "units": 3,
                "activation": "sigmoid",
                "use_bias": False,
                "weight_init": "uniform",
            },
            {
                "type": "dense",
                "units": 1,
                "activation": "sigmoid",
                "use_bias": False,
                "weight_init": "uniform",
            },
        ],
        input_shape=(2,),
        dtype="float64",
        seed=0,
    )
    epochs = []

    class Count(Callback):
        @hookimpl
        def on_epoch_end(self, epoch):
            epochs.append(epoch)

    trainer = Trainer(model, {"type": "mse", "reduction": "half_sum"}, "bfgs", callbacks=[Count()])
    history = trainer.fit(x, y, epochs=200)
    assert history["loss"][-1] < 1e-5
    assert epochs == list(range(len(epochs))) and trainer.step == len(epochs) <= 200


@pytest.mark.parametrize(
    "x, y, error, message",
    [
        (
            np.ones((4, 2)),
            np.zeros(3, dtype=int),
            DataError,
            "training x has 4 samples but y has 3",
        ),
        (
            np.array([[0.0, np.nan]] * 3),
            np.zeros(3, dtype=int),
            DataError,
            r"training x contains NaN or inf \(first at index \(0, 1\)\)",
        ),
        (np.ones((3, 2)), np.array([0, 1, 2]), DataError, "label"),
        (np.ones((3, 5)), np.zeros(3, dtype=int), Exception, r"dense_0.*\(None, 2\).*\(None, 5\)"),
    ],
)
def test_bad_data_is_named(x, y, error, message):
    trainer = Trainer(classifier(), "cross_entropy")
    with pytest.raises(error, match=message):
        trainer.fit(x, y)


def test_bad_fit_arguments():
    x, y = blobs(4)
    trainer = Trainer(classifier(), "cross_entropy")
    with pytest.raises(ConfigError, match="batch_size"):
        trainer.fit(x, y, batch_size=0)
    with pytest.raises(ConfigError, match="l2"):
        Trainer(classifier(), "cross_entropy", l2=-1)


@pytest.mark.parametrize("name", ["binary_cross_entropy", "mse"])
def test_integer_targets_keep_a_float32_gradient_float32(name):
    """0/1 labels as integers must not promote the backward pass to float64 (three times
    slower): the gradient a loss hands the output layer has the predictions' dtype."""
    from framework import create

    loss = create("losses", name)
    y_pred = np.full((8, 1), 0.25, dtype=np.float32)
    y_true = np.array([0, 1] * 4, dtype=np.int64)
    assert loss.backward(y_pred, y_true).dtype == np.float32
    if loss.fuses_with("sigmoid"):
        assert loss.backward_fused(y_pred, y_true).dtype == np.float32


def test_an_epoch_ending_on_an_evaluate_every_step_is_evaluated_once():
    class Evaluations(Callback):
        steps = []

        @hookimpl
        def on_evaluate_end(self, step):
            self.steps.append(step)

    x, y = blobs()
    trainer = Trainer(classifier(), "cross_entropy", callbacks=[Evaluations()])
    history = trainer.fit(
        x[:40], y[:40], epochs=2, batch_size=10, validation_data=(x[40:], y[40:]), evaluate_every=2
    )
    # every 2 steps; the epochs end on steps 4 and 8 and reuse those; the end of fit evaluates
    # again (a callback may have changed the weights since)
    assert Evaluations.steps == [2, 4, 6, 8, 8]
    assert len(history["val_loss"]) == 2
