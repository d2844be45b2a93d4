"""The ``tensorboard`` callback, read back with TensorBoard's own readers."""

import glob
import io
import os
import time

import numpy as np
import pytest
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups
from tensorboard.plugins.hparams import metadata as hparams_metadata

from framework import ConfigError, Sequential, Trainer, create, hookimpl, run
from framework.images import PALETTE, class_labels, decision_boundary, encode_png
from framework.summaries import (
    SMALL_TENSOR,
    histogram,
    layer_ops,
    model_graph,
    tensor_stats,
    tensor_values,
    tensors_stats,
)

EVERYTHING = {
    kind: 0
    for kind in (
        "compressedHistograms",
        "images",
        "audio",
        "scalars",
        "histograms",
        "tensors",
        "graph",
    )
}
STATS = ("mean", "stddev", "max", "min")


def accumulator(path):
    events = EventAccumulator(str(path), size_guidance=EVERYTHING)
    events.Reload()
    return events


def scalars(events, tag):
    return {event.step: event.value for event in events.Scalars(tag)}


class Capture:
    """Registered after the tensorboard callback: copies of every layer tensor at the
    steps it logs, and the logs of each evaluation."""

    def __init__(self, every):
        self.every = every
        self.tensors = {}
        self.evaluations = {}

    @hookimpl
    def on_batch_end(self, trainer, step):
        if step % self.every == 0:
            self.tensors[step] = {
                f"{layer.name}/{name}": np.array(value)
                for layer in trainer.model.layers
                for name, value in tensors_of(layer).items()
            }

    @hookimpl
    def on_evaluate_end(self, step, logs):
        self.evaluations[step] = dict(logs)


def tensors_of(layer):
    found = dict(layer.params)
    if layer.preactivations is not None:
        found["preactivations"] = layer.preactivations
    found["activations"] = layer.activations
    found.update({f"{key}_grad": grad for key, grad in layer.grads.items()})
    return found


def classification_data(n=240, features=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    return x, np.minimum(y, classes - 1)


def deep_model():
    return Sequential(
        [
            {"type": "dense", "units": 8, "activation": "tanh"},
            {"type": "dropout", "rate": 0.25},
            {"type": "dense", "units": 6},  # no activation: no separate preactivations
            {"type": "activation", "activation": "relu"},
            {"type": "dense", "units": 3, "activation": "softmax"},
        ],
        input_shape=(4,),
        seed=1,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One run shared by the read-back tests: 200 training samples, batch 20 (10 steps an
    epoch), 3 epochs, evaluated every 4 steps."""
    logdir = tmp_path_factory.mktemp("tb") / "run"
    x, y = classification_data()
    tensorboard = create("callbacks", "tensorboard", scalar_every=2, histogram_every=5)
    capture = Capture(every=1)
    trainer = Trainer(
        deep_model(),
        "cross_entropy",
        {"type": "sgd", "lr": 0.1, "momentum": 0.9},
        metrics=["accuracy"],
        callbacks=[tensorboard, capture],
        logdir=str(logdir),
        seed=0,
    )
    trainer.fit(
        x[:200],
        y[:200],
        epochs=3,
        batch_size=20,
        validation_data=(x[200:], y[200:]),
        evaluate_every=4,
    )
    return {
        "logdir": logdir,
        "trainer": trainer,
        "capture": capture,
        "tensorboard": tensorboard,
        "held_out": (x[200:], y[200:]),
        "train": accumulator(logdir / "train"),
        "test": accumulator(logdir / "test"),
    }


def expected_tags(model):
    tags = []
    for layer in model.layers:
        tags += [f"{layer.name}/{name}" for name in tensors_of(layer)]
    return tags


def test_every_layer_has_every_tensor_tag(trained):
    train, model = trained["train"], trained["trainer"].model
    tags = expected_tags(model)
    assert "dense_0/preactivations" in tags and "dense_2/preactivations" not in tags
    assert {"dropout_1/activations", "activation_3/preactivations", "dense_4/bias_grad"} <= set(
        tags
    )
    assert set(train.Tags()["histograms"]) == set(tags)
    logged = set(train.Tags()["scalars"])
    assert {f"{tag}/{stat}" for tag in tags for stat in STATS} <= logged
    assert {"loss", "accuracy", "lr"} <= logged
    assert set(train.Tags()["scalars"]) - {f"{tag}/{stat}" for tag in tags for stat in STATS} == {
        "loss",
        "accuracy",
        "lr",
    }


def test_statistics_equal_numpy_on_the_same_arrays(trained):
    train, captured = trained["train"], trained["capture"].tensors
    for tag in expected_tags(trained["trainer"].model):
        for stat, reference in zip(STATS, (np.mean, np.std, np.max, np.min), strict=True):
            logged = scalars(train, f"{tag}/{stat}")
            assert sorted(logged) == list(range(0, 30, 2)), tag  # scalar_every = 2, 30 steps
            for step, value in logged.items():
                expected = float(reference(captured[step][tag]))
                # simple_value is a float32
                assert value == pytest.approx(expected, rel=2e-6, abs=1e-7), (tag, stat, step)


def test_histograms_count_every_value(trained):
    train, captured = trained["train"], trained["capture"].tensors
    for tag in expected_tags(trained["trainer"].model):
        events = train.Histograms(tag)
        assert [event.step for event in events] == [0, 5, 10, 15, 20, 25]
        for event in events:
            array = captured[event.step][tag].astype(np.float64)
            histo = event.histogram_value
            assert histo.num == array.size
            assert sum(histo.bucket) == array.size
            assert histo.min == pytest.approx(array.min()) and histo.max == pytest.approx(
                array.max()
            )
            assert histo.sum == pytest.approx(array.sum(), rel=1e-5, abs=1e-5)
            assert histo.sum_squares == pytest.approx(
                np.dot(array.ravel(), array.ravel()), rel=1e-5, abs=1e-6
            )


def test_histogram_buckets_match_numpy():
    rng = np.random.default_rng(3)
    for array in (
        rng.normal(size=(50, 40)),
        rng.uniform(-1, 1, 1000).astype(np.float32),
        np.arange(10.0),
    ):
        proto = histogram(array)
        counts, edges = np.histogram(array, bins=64, range=(array.min(), array.max()))
        assert list(proto.bucket) == counts.tolist()
        np.testing.assert_allclose(proto.bucket_limit, edges[1:], rtol=1e-6, atol=1e-7)
    for scale in (1e-20, 1.0, 3e4, 1e15):  # every value counted, the maximum in the last bucket
        array = (rng.standard_normal(20_000) * scale).astype(np.float32)
        proto = histogram(array)
        assert sum(proto.bucket) == array.size and proto.bucket[-1] >= 1
        counts, _ = np.histogram(array, bins=64, range=(array.min(), array.max()))
        assert np.abs(np.array(proto.bucket) - counts).sum() <= 2  # float32 edge rounding
    constant = histogram(np.full(7, 2.5))
    assert (constant.num, list(constant.bucket), constant.min, constant.max) == (7, [7], 2.5, 2.5)


def test_nan_tensors_log_scalars_but_no_histogram():
    array = np.array([1.0, np.nan, 3.0], dtype=np.float32)
    assert histogram(array) is None
    values = tensor_values("layer/weights", array, scalars=True, histograms=True)
    assert [v.tag for v in values] == [f"layer/weights/{stat}" for stat in STATS]
    assert np.isnan(values[0].simple_value)
    mean, stddev, top, bottom = tensor_stats(np.array([[1.0, 2.0], [3.0, 6.0]]))
    assert (mean, top, bottom) == (3.0, 6.0, 1.0) and stddev == pytest.approx(np.std([1, 2, 3, 6]))


def test_histograms_bucketed_in_blocks_equal_one_pass(monkeypatch):
    """Bucketing in blocks (the last one short) counts exactly what one pass does."""
    import framework.summaries

    rng = np.random.default_rng(5)
    block = framework.summaries.BUCKET_BLOCK
    for array in (
        rng.standard_normal(3 * block + 5).astype(np.float32),
        rng.uniform(-2, 7, (block + 1, 3)),
    ):
        blocked = histogram(array)
        monkeypatch.setattr(framework.summaries, "BUCKET_BLOCK", array.size)
        whole = histogram(array)
        monkeypatch.undo()
        assert list(blocked.bucket) == list(whole.bucket)
        assert sum(blocked.bucket) == array.size
        low, high = float(array.min()), float(array.max())
        counts, _ = np.histogram(array, bins=64, range=(low, high))
        assert np.abs(np.array(blocked.bucket) - counts).sum() <= 2  # edge rounding
        np.testing.assert_allclose(blocked.bucket_limit, np.linspace(low, high, 65)[1:])
        assert blocked.bucket_limit[-1] == high


def test_statistics_of_many_tensors_equal_each_on_its_own():
    """The small tensors' statistics, computed together in float64, match numpy's on each
    array; the large ones and the odd ones (empty, NaN, inf, integers) are as
    `tensor_stats` gives them one by one."""
    rng = np.random.default_rng(7)
    arrays = [
        rng.standard_normal((30, 4)).astype(np.float32),
        np.float32(1e4) + rng.random(500, dtype=np.float32),  # mean far above the spread
        np.zeros(0, np.float32),
        rng.standard_normal(SMALL_TENSOR + 1).astype(np.float32),  # large: on its own
        np.array([1.0, np.nan, 3.0], np.float32),
        np.array([1.0, np.inf], np.float32),
        np.arange(12).reshape(3, 4),  # integers
        np.full(5, 2.5),
        rng.standard_normal((64, 64)),
    ]
    together = tensors_stats(arrays)
    assert len(together) == len(arrays)
    for array, stats in zip(arrays, together, strict=True):
        alone = tensor_stats(array)
        if array.size == 0 or not np.isfinite(array).all():
            assert np.array_equal(stats, alone, equal_nan=True), (array, stats, alone)
            continue
        values = array.astype(np.float64)
        expected = (values.mean(), values.std(), values.max(), values.min())
        np.testing.assert_allclose(stats, expected, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(stats, alone, rtol=1e-5, atol=1e-7)
    assert np.isnan(together[4]).all() and together[5][0] == np.inf
    assert tensors_stats([np.ones(3)]) == [tensor_stats(np.ones(3))]  # one small: on its own


def test_train_scalars_are_the_batch_logs(trained):
    train, trainer = trained["train"], trained["trainer"]
    loss = scalars(train, "loss")
    assert sorted(loss) == list(range(0, 30, 2))
    assert all(value == pytest.approx(0.1) for value in scalars(train, "lr").values())
    assert all(0 <= value <= 1 for value in scalars(train, "accuracy").values())
    assert all(np.isfinite(value) and value > 0 for value in loss.values())
    assert trainer.step == 30


def test_test_writer_holds_each_evaluation_and_the_final_one_equals_evaluate(trained):
    test, trainer, capture = trained["test"], trained["trainer"], trained["capture"]
    assert set(test.Tags()["scalars"]) == {"loss", "accuracy"}
    loss, accuracy = scalars(test, "loss"), scalars(test, "accuracy")
    # every 4 steps, after each 10-step epoch, and at the end (step 30, already logged)
    assert sorted(loss) == [4, 8, 10, 12, 16, 20, 24, 28, 30]
    for step, logs in capture.evaluations.items():
        assert loss[step] == pytest.approx(logs["loss"], rel=1e-6)
        assert accuracy[step] == pytest.approx(logs["accuracy"], rel=1e-6)
    final = trainer.evaluate(*trained["held_out"])
    assert loss[30] == pytest.approx(final["loss"], rel=1e-6)
    assert accuracy[30] == pytest.approx(final["accuracy"], rel=1e-6)


def test_callbacks_own_evaluate_every_adds_test_points_the_trainer_does_not(tmp_path):
    x, y = classification_data()
    tensorboard = create(
        "callbacks", "tensorboard", evaluate_every=3, histogram_every=1, flush_secs=600
    )
    trainer = Trainer(
        deep_model(),
        "cross_entropy",
        metrics=["accuracy"],
        callbacks=[tensorboard],
        logdir=str(tmp_path),
    )
    trainer.fit(x[:200], y[:200], epochs=2, batch_size=20, validation_data=(x[200:], y[200:]))
    loss = scalars(accumulator(tmp_path / "test"), "loss")
    # the callback's every 3 steps, the trainer's after each 10-step epoch (20 is the end too)
    assert sorted(loss) == [3, 6, 9, 10, 12, 15, 18, 20]
    assert loss[20] == pytest.approx(trainer.evaluate(x[200:], y[200:])["loss"], rel=1e-6)
    # each step's activations are its batch's (20 samples × 8 units), not the held-out data's
    histograms = accumulator(tmp_path / "train").Histograms("dense_0/activations")
    assert len(histograms) == 20 and {event.histogram_value.num for event in histograms} == {20 * 8}


class ZeroWeightsAfterLastEpoch:
    """Changes the weights between the last epoch's evaluation and the final one, as early
    stopping does when it restores the best epoch's."""

    @hookimpl
    def on_epoch_end(self, trainer, epoch):
        if epoch == trainer.epochs - 1:
            trainer.model.set_params(np.zeros_like(trainer.model.get_params()))


def test_final_evaluation_is_logged_when_the_weights_changed_at_the_same_step(tmp_path):
    x, y = classification_data()
    tensorboard = create("callbacks", "tensorboard", flush_secs=600)
    trainer = Trainer(
        deep_model(),
        "cross_entropy",
        callbacks=[tensorboard, ZeroWeightsAfterLastEpoch()],
        logdir=str(tmp_path),
    )
    trainer.fit(x[:200], y[:200], epochs=2, batch_size=20, validation_data=(x[200:], y[200:]))
    events = accumulator(tmp_path / "test").Scalars("loss")
    assert [e.step for e in events] == [10, 20, 20]  # the epoch's, then the final one's
    assert events[-1].value == pytest.approx(trainer.evaluate(x[200:], y[200:])["loss"], rel=1e-6)
    assert events[-1].value != pytest.approx(events[-2].value)


def test_graph_has_a_node_per_layer_operation_wired_in_order(trained):
    graph = trained["train"].Graph()
    nodes = {node.name: node for node in graph.node}
    assert list(nodes) == [
        "input",
        "dense_0/weights",
        "dense_0/bias",
        "dense_0/matmul",
        "dense_0/bias_add",
        "dense_0/tanh",
        "dropout_1/dropout",
        "dense_2/weights",
        "dense_2/bias",
        "dense_2/matmul",
        "dense_2/bias_add",
        "activation_3/relu",
        "dense_4/weights",
        "dense_4/bias",
        "dense_4/matmul",
        "dense_4/bias_add",
        "dense_4/softmax",
        "labels",
        "loss",
    ]
    assert list(nodes["dense_0/matmul"].input) == ["input", "dense_0/weights"]
    assert list(nodes["dense_0/bias_add"].input) == ["dense_0/matmul", "dense_0/bias"]
    assert list(nodes["dropout_1/dropout"].input) == ["dense_0/tanh"]
    assert list(nodes["activation_3/relu"].input) == ["dense_2/bias_add"]
    assert list(nodes["loss"].input) == ["dense_4/softmax", "labels"]
    assert nodes["dense_0/matmul"].op == "MatMul" and nodes["dense_4/softmax"].op == "Softmax"

    def shape(name):
        return [dim.size for dim in nodes[name].attr["_output_shapes"].list.shape[0].dim]

    assert shape("input") == [-1, 4]
    assert shape("dense_0/weights") == [4, 8]
    assert shape("dense_0/tanh") == [-1, 8] and shape("dense_4/softmax") == [-1, 3]


def test_conv_graph_and_input_images(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((24, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 2, 24)
    model = Sequential(
        [
            {"type": "conv2d", "filters": 3, "kernel_size": 3, "activation": "relu"},
            {"type": "maxpool2d", "pool_size": 2},
            {"type": "flatten"},
            {"type": "dense", "units": 2, "activation": "softmax"},
        ],
        input_shape=(8, 8, 1),
        seed=0,
    )
    trainer = Trainer(
        model,
        "cross_entropy",
        "adam",
        callbacks=[{"type": "tensorboard", "images": 6}],
        logdir=str(tmp_path),
    )
    trainer.fit(x, y, epochs=1, batch_size=8)
    train = accumulator(tmp_path / "train")
    names = [node.name for node in train.Graph().node]
    assert names[:6] == [
        "input",
        "conv2d_0/weights",
        "conv2d_0/bias",
        "conv2d_0/conv2d",
        "conv2d_0/bias_add",
        "conv2d_0/relu",
    ]
    assert names[6:8] == ["maxpool2d_1/maxpool2d", "flatten_2/flatten"]
    assert "maxpool2d_1/activations" in train.Tags()["histograms"]
    (image,) = train.Images("inputs")
    assert image.step == 0
    # six 8x8 samples tiled four to a row with 2-pixel gaps: 2 rows
    assert (image.width, image.height) == (4 * 10 + 2, 2 * 10 + 2)


def test_layers_may_describe_their_own_ops():
    class Fancy:
        name, kind = "fancy_0", "fancy"
        output_shape = (5,)
        params = {"kernel": np.zeros((3, 5)), "bias": np.zeros(5)}

        def graph_ops(self):
            return [("einsum", ["kernel"]), "bias_add", ("gelu", [])]

    assert layer_ops(Fancy()) == [("einsum", ("kernel",)), ("bias_add", ()), ("gelu", ())]

    class Model:
        dtype, input_shape, layers = np.float32, (3,), [Fancy()]

    nodes = {node.name: node for node in model_graph(Model()).node}
    assert list(nodes) == [
        "input",
        "fancy_0/kernel",
        "fancy_0/bias",
        "fancy_0/einsum",
        "fancy_0/bias_add",
        "fancy_0/gelu",
    ]
    assert list(nodes["fancy_0/einsum"].input) == ["input", "fancy_0/kernel"]
    assert nodes["fancy_0/gelu"].op == "Gelu"


def moons_config(logdir, lr, epochs=3):
    return {
        "seed": 0,
        "data": {"type": "moons", "n_samples": 200, "noise": 0.2, "test_fraction": 0.25},
        "model": {
            "layers": [
                {"type": "dense", "units": 8, "activation": "tanh"},
                {"type": "dense", "units": 2, "activation": "softmax"},
            ]
        },
        "train": {
            "loss": "cross_entropy",
            "optimizer": {"type": "sgd", "lr": lr, "momentum": 0.9},
            "epochs": epochs,
            "batch_size": 30,
            "metrics": ["accuracy"],
            "callbacks": [{"type": "tensorboard", "image_every": 2}],
        },
        "logging": {"logdir": str(logdir)},
    }


def session_groups(root):
    """What TensorBoard's HParams tab lists for the runs under ``root``."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(root))
    multiplexer.Reload()
    from tensorboard import context
    from tensorboard.plugins import base_plugin

    provider = data_provider.MultiplexerDataProvider(multiplexer, str(root))
    backend = backend_context.Context(
        base_plugin.TBContext(logdir=str(root), data_provider=provider, multiplexer=multiplexer)
    )
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0,
        slice_size=100,
        allowed_statuses=[api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE],
    )
    response = list_session_groups.Handler(context.RequestContext(), backend, "", request).run()
    return {group.name: group for group in response.session_groups}


def test_hparams_tab_shows_one_row_per_run_with_config_and_final_metrics(tmp_path):
    summaries = {lr: run(moons_config(tmp_path / f"lr-{lr}", lr)) for lr in (0.05, 0.5)}
    groups = session_groups(tmp_path)
    assert set(groups) == {"lr-0.05", "lr-0.5"}
    for lr, summary in summaries.items():
        group = groups[f"lr-{lr}"]
        hparams = {key: value for key, value in group.hparams.items()}
        assert hparams["train.optimizer.lr"].number_value == pytest.approx(lr)
        assert hparams["train.optimizer.type"].string_value == "sgd"
        assert hparams["model.layers.0.units"].number_value == 8
        assert hparams["model.layers.0.activation"].string_value == "tanh"
        assert not any(key.startswith(("logging.", "train.callbacks.")) for key in hparams)
        metrics = {value.name.tag: value.value for value in group.metric_values}
        assert metrics == pytest.approx(
            {
                f"hparams/{part}/{key}": value
                for part in ("train", "test")
                for key, value in summary[part].items()
            },
            rel=1e-6,
        )
        assert group.sessions[0].status == api_pb2.STATUS_SUCCESS


def test_decision_boundary_image_every_n_epochs_and_at_the_end(tmp_path):
    run(moons_config(tmp_path, 0.5, epochs=5))
    train = accumulator(tmp_path / "train")
    images = train.Images("decision_boundary")
    steps_per_epoch = 5  # 150 training samples, batch 30
    assert [image.step for image in images] == [
        2 * steps_per_epoch,
        4 * steps_per_epoch,
        5 * steps_per_epoch,
    ]
    assert (images[-1].width, images[-1].height) == (256, 256)
    from PIL import Image

    picture = np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string)))
    assert picture.shape == (256, 256, 3)
    texts = train.Tags()["tensors"]
    assert {"config", "model"} <= set(texts)


def test_decision_boundary_colours_each_side_of_a_known_boundary():
    x = np.array([[-1.0, -1.0], [1.0, 1.0], [-0.5, 0.8], [0.7, -0.9]])
    labels = np.array([0, 1, 0, 1])

    def predict(grid):  # class 1 right of x0 = 0, surer further away
        p = 1 / (1 + np.exp(-4 * grid[:, 0]))
        return np.stack([1 - p, p], axis=1)

    image = decision_boundary(predict, x, labels, size=64).astype(int)
    assert image.shape == (64, 64, 3)
    left, right = image[32, 2], image[32, 61]  # background far from any point
    blue, orange = PALETTE[0], PALETTE[1]
    assert np.argmax(left) == np.argmax(blue) and np.argmax(right) == np.argmax(orange)
    # the boundary (x0 = 0, halfway across) is darker than the pale regions beside it
    row = image[32].sum(axis=1)  # y = 0: no point on this row
    boundary = int(np.argmin(row))
    assert 30 <= boundary <= 33
    assert row[boundary] < 0.6 * min(row[boundary - 4], row[boundary + 4])


def test_png_encoding_round_trips():
    from PIL import Image

    rng = np.random.default_rng(0)
    for shape in ((5, 7), (6, 4, 3), (3, 3, 4)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        decoded = np.asarray(Image.open(io.BytesIO(encode_png(image))))
        np.testing.assert_array_equal(decoded, image)


def test_class_labels():
    assert class_labels(np.array([0, 2, 1])).tolist() == [0, 2, 1]
    assert class_labels(np.eye(3)[[2, 0]]).tolist() == [2, 0]
    assert class_labels(np.array([[1.0], [0.0]])).tolist() == [1, 0]
    assert class_labels(np.array([0.3, 1.2])) is None  # regression targets
    assert class_labels(np.array([-1, 1])) is None


class Stop:
    def __init__(self, at):
        self.at = at

    @hookimpl
    def on_batch_end(self, trainer, step):
        if step == self.at:
            trainer.stop_training = True


class Fail:
    def __init__(self, error=None):
        self.error = error if error is not None else RuntimeError("boom")

    @hookimpl
    def on_batch_end(self, step):
        if step == 3:
            raise self.error


def test_writers_are_flushed_and_closed_on_early_stop(tmp_path):
    x, y = classification_data()
    tensorboard = create("callbacks", "tensorboard", scalar_every=1, flush_secs=600)
    trainer = Trainer(
        deep_model(), "cross_entropy", callbacks=[tensorboard, Stop(at=2)], logdir=str(tmp_path)
    )
    trainer.fit(x, y, epochs=5, batch_size=20)
    assert tensorboard.train_writer is None
    assert sorted(scalars(accumulator(tmp_path / "train"), "loss")) == [0, 1, 2]


@pytest.mark.parametrize(
    "error, status",
    [(RuntimeError("boom"), api_pb2.STATUS_FAILURE), (KeyboardInterrupt(), api_pb2.STATUS_UNKNOWN)],
    ids=["failure", "interrupted"],
)
def test_writers_are_flushed_and_closed_on_an_exception(tmp_path, error, status):
    x, y = classification_data()
    tensorboard = create("callbacks", "tensorboard", scalar_every=1, flush_secs=600)
    trainer = Trainer(
        deep_model(),
        "cross_entropy",
        metrics=["accuracy"],
        callbacks=[tensorboard, Fail(error)],
        logdir=str(tmp_path),
    )
    with pytest.raises(type(error)):
        trainer.fit(
            x[:200],
            y[:200],
            epochs=5,
            batch_size=20,
            validation_data=(x[200:], y[200:]),
            evaluate_every=2,
        )
    assert tensorboard.train_writer is None and tensorboard.test_writer is None
    # pluggy calls the later-registered Fail first: step 3 raised before it was written
    assert sorted(scalars(accumulator(tmp_path / "train"), "loss")) == [0, 1, 2]
    assert sorted(scalars(accumulator(tmp_path / "test"), "loss")) == [2]
    (root_file,) = glob.glob(str(tmp_path / "events.out.tfevents.*"))
    content = accumulator(root_file).PluginTagToContent("hparams")
    end = hparams_metadata.parse_session_end_info_plugin_data(content["_hparams_/session_end_info"])
    assert end.status == status


def test_python_api_run_without_config_gets_component_hparams(tmp_path):
    x, y = classification_data()
    trainer = Trainer(
        deep_model(),
        "cross_entropy",
        {"type": "sgd", "lr": 0.2},
        callbacks=["tensorboard"],
        logdir=str(tmp_path),
    )
    trainer.fit(x, y, epochs=1, batch_size=40)
    (root_file,) = glob.glob(str(tmp_path / "events.out.tfevents.*"))
    content = accumulator(root_file).PluginTagToContent("hparams")
    start = hparams_metadata.parse_session_start_info_plugin_data(
        content["_hparams_/session_start_info"]
    )
    assert start.hparams["train.optimizer.lr"].number_value == pytest.approx(0.2)
    assert start.hparams["model.layers.0.units"].number_value == 8
    assert start.hparams["model.layers.1.type"].string_value == "dropout"
    # a second fit replaces the run's hyper-parameters instead of adding a second session
    trainer.fit(x, y, epochs=2, batch_size=40)
    assert len(glob.glob(str(tmp_path / "events.out.tfevents.*"))) == 1


def test_bad_options_and_missing_logdir_are_config_errors():
    with pytest.raises(
        ConfigError, match="callback 'tensorboard'.*scalar_every must be a positive integer, got 0"
    ):
        create("callbacks", "tensorboard", scalar_every=0)
    with pytest.raises(
        ConfigError, match="has no parameter 'histogram_evry'; did you mean 'histogram_every'"
    ):
        create("callbacks", "tensorboard", histogram_evry=5)
    x, y = classification_data()
    trainer = Trainer(deep_model(), "cross_entropy", callbacks=["tensorboard"])
    with pytest.raises(ConfigError, match="the tensorboard callback needs a logdir"):
        trainer.fit(x, y, epochs=1)


def test_plugnet_train_writes_tensorboard_logs_and_prints_the_command(tmp_path, capsys):
    from framework.cli import main

    assert (
        main(["train", "--epochs", "2", "--logdir", str(tmp_path / "runs" / "moons"), "--quiet"])
        == 0
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].strip() == f"tensorboard --logdir {tmp_path / 'runs'}"
    for part in ("train", "test"):
        assert glob.glob(str(tmp_path / "runs" / "moons" / part / "events.out.tfevents.*"))
    assert os.path.exists(tmp_path / "runs" / "moons" / "summary.json")
    assert (
        "decision_boundary" in accumulator(tmp_path / "runs" / "moons" / "train").Tags()["images"]
    )


def test_a_resumed_run_replaces_what_the_interrupted_one_logged_after_its_checkpoint(tmp_path):
    config = moons_config(tmp_path / "run", 0.5, epochs=4)  # 5 steps an epoch: 20 steps
    config["train"]["callbacks"] = [
        {"type": "tensorboard", "scalar_every": 1, "histogram_every": 0},
        {"type": "checkpoint", "every": 10, "keep": 0},
    ]
    first = run(config)
    os.unlink(tmp_path / "run" / "checkpoints" / "step-20.npz")  # as if killed before it
    resumed = run(resume=tmp_path / "run")
    assert resumed["train"] == pytest.approx(first["train"])
    loss = accumulator(tmp_path / "run" / "train").Scalars("loss")
    assert [event.step for event in loss] == list(range(20))  # steps 10-19 once, not twice
    test = accumulator(tmp_path / "run" / "test").Scalars("loss")
    assert [event.step for event in test] == [5, 10, 15, 20]
    assert test[-1].value == pytest.approx(resumed["test"]["loss"], rel=1e-6)
    assert (
        len(glob.glob(str(tmp_path / "run" / "events.out.tfevents.*"))) == 1
    )  # one HParams session


def test_event_file_writer_writes_in_order_in_the_background_and_survives_a_failing_disk(
    tmp_path, caplog
):
    from tensorboard.backend.event_processing.event_file_loader import (
        LegacyEventFileLoader as EventFileLoader,
    )
    from tensorboardX.proto.summary_pb2 import Summary

    from framework.event_files import EventFileWriter
    from framework.summaries import scalar_value

    writer = EventFileWriter(str(tmp_path / "a"), flush_secs=600, purge_step=3)
    for step in range(3, 8):
        writer.add_summary(Summary(value=[scalar_value("x", step * 0.5)]), step)
    (path,) = glob.glob(str(tmp_path / "a" / "events.out.tfevents.*"))
    assert (
        len(list(EventFileLoader(path).Load())) <= 1
    )  # at most the file version: nothing waited on I/O
    writer.close()
    writer.close()  # closing twice is harmless
    events = list(EventFileLoader(path).Load())
    assert events[1].session_log.status == events[1].session_log.START and events[1].step == 3
    assert [(e.step, e.summary.value[0].simple_value) for e in events[2:]] == [
        (s, s * 0.5) for s in range(3, 8)
    ]

    broken = EventFileWriter(str(tmp_path / "b"), flush_secs=600)

    def full_disk(event):
        raise OSError(28, "No space left on device")

    broken._file.write = full_disk
    broken.add_summary(Summary(value=[scalar_value("x", 1.0)]), 0)
    broken.close()  # no exception: training must not die of its summaries
    assert isinstance(broken.error, OSError) and "No space left" in caplog.text
    broken.add_summary(Summary(value=[scalar_value("x", 2.0)]), 1)  # dropped, not queued
    assert not broken._events

    # The same failure met by the writing thread, the writer still open: the thread gives
    # up on it instead of waking for it again and again.
    failing = EventFileWriter(str(tmp_path / "c"), flush_secs=0.05)
    failing._file.write = full_disk
    failing.add_summary(Summary(value=[scalar_value("x", 1.0)]), 0)
    deadline = time.monotonic() + 20
    while failing.error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert isinstance(failing.error, OSError)
        cpu = time.process_time()
        time.sleep(0.5)
        assert time.process_time() - cpu < 0.25  # asleep, not spinning
    finally:
        failing.close()


def test_event_file_writer_drains_a_long_queue_before_its_flush_interval(tmp_path):
    """A fast training logging often must not hold flush_secs' worth of events in memory."""
    from tensorboardX.proto.summary_pb2 import Summary

    from framework.event_files import EventFileWriter
    from framework.summaries import scalar_value

    writer = EventFileWriter(str(tmp_path), flush_secs=600)
    for step in range(4 * writer.max_pending):
        writer.add_summary(Summary(value=[scalar_value("x", float(step))]), step)
    deadline = time.monotonic() + 10
    while writer._events and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        assert len(writer._events) < writer.max_pending  # written long before 600 s
    finally:
        writer.close()
    (path,) = glob.glob(str(tmp_path / "events.out.tfevents.*"))
    assert len(scalars(accumulator(path), "x")) == 4 * writer.max_pending


def event_steps(path):
    from tensorboard.backend.event_processing.event_file_loader import (
        LegacyEventFileLoader as EventFileLoader,
    )

    return [event.step for event in EventFileLoader(path).Load() if event.HasField("summary")]


def test_event_file_writers_share_one_thread_that_writes_each_when_its_flush_secs_are_up(
    tmp_path,
):
    """Opening writers starts no thread of their own; the one writing thread, asleep until
    a slow writer's time, wakes for a fast one opened after it and writes its events
    without being closed."""
    import threading

    from tensorboardX.proto.summary_pb2 import Summary

    from framework.event_files import EventFileWriter
    from framework.summaries import scalar_value

    def writing_threads():
        return [t for t in threading.enumerate() if t.name == "event files"]

    slow = EventFileWriter(str(tmp_path / "slow"), flush_secs=600)
    slow.add_summary(Summary(value=[scalar_value("x", 1.0)]), 1)
    threads = writing_threads()
    time.sleep(0.5)  # the thread asleep until the slow writer's time: the fast one must wake it
    fast = EventFileWriter(str(tmp_path / "fast"), flush_secs=0.2)
    assert writing_threads() == threads and len(threads) == 1
    fast.add_summary(Summary(value=[scalar_value("x", 2.0)]), 2)
    deadline = time.monotonic() + 20
    while not event_steps(fast.path) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert event_steps(fast.path) == [2]  # written and flushed, the writer still open
        assert event_steps(slow.path) == []  # not due for 600 s
    finally:
        fast.close()
        slow.close()
    assert event_steps(slow.path) == [1]  # closing writes what was queued
    assert writing_threads() == threads  # still the one thread, asleep


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_leaves_the_parents_event_files_to_the_parent(tmp_path):
    from tensorboardX.proto.summary_pb2 import Summary

    import framework.event_files
    from framework.event_files import EventFileWriter
    from framework.summaries import scalar_value

    parent = EventFileWriter(str(tmp_path / "parent"), flush_secs=600)
    parent.add_summary(Summary(value=[scalar_value("x", 1.0)]), 1)
    flusher = framework.event_files._flusher
    pid = os.fork()
    if pid == 0:  # the child: its own writing thread, the parent's writer inert
        ok = False
        try:
            child = EventFileWriter(str(tmp_path / "child"), flush_secs=600)
            child.add_summary(Summary(value=[scalar_value("x", 3.0)]), 3)
            child.close()
            parent.close()
            ok = (
                framework.event_files._flusher is not flusher
                and parent.closed
                and event_steps(child.path) == [3]
            )
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 30
    while (waited := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if waited[0] == 0:  # stuck (on a lock held at the fork): fail, not hang
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    parent.add_summary(Summary(value=[scalar_value("x", 2.0)]), 2)
    parent.close()
    assert waited[0] == pid and os.waitstatus_to_exitcode(waited[1]) == 0
    assert event_steps(parent.path) == [1, 2]  # each event once, by the parent
