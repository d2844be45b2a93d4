"""framework.batch_split: a training batch shared out over two threads, each half through its
own copy of the model, gives the unsplit step's loss and gradients."""

import threading

import numpy as np
import pytest

from framework import Input, Model, Sequential, Trainer, batch_split, create, threads
from framework.registry import resolve


def layer(kind, **params):
    return create("layers", kind, **params)


def transformer(dtype="float64", attention_dropout=0.0, vocab=11, steps=6, channels=8):
    """A one-block GPT: embeddings, attention, GELU MLP, layer norms, the tied projection."""
    ids = Input((steps,), name="ids", dtype="int64")
    x = layer("embedding", input_dim=vocab, output_dim=channels, name="wte")(ids)
    x = layer("positional_embedding", max_length=steps, name="wpe")(x)
    h = layer("layer_norm", use_bias=False, name="ln_1")(x)
    h = layer(
        "multi_head_attention", num_heads=2, causal=True, dropout=attention_dropout, name="attn"
    )(h)
    x = layer("add", name="residual_1")([x, h])
    h = layer("layer_norm", name="ln_2")(x)
    h = layer("dense", units=4 * channels, activation="gelu", name="fc")(h)
    h = layer("dense", units=channels, name="proj")(h)
    x = layer("add", name="residual_2")([x, h])
    probabilities = layer(
        "dense", units=vocab, tied_to="wte", use_bias=False, activation="softmax", name="head"
    )(x)
    return Model(ids, probabilities, dtype=dtype, seed=0)


def batch(n=10, vocab=11, steps=6):
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, vocab, (n, steps)), rng.integers(0, vocab, (n, steps))
    y[0, :2] = -1  # ignored targets: the loss's mean is over the counted ones, split or not
    return x, y


def unsplit_step(model, x, y, loss):
    probabilities = model.forward(x, True)
    model.backward_preactivation(loss.backward_fused(probabilities, y), input_grad=False)
    return probabilities, [g.copy() for g in model.grads_list()]


def test_a_split_batch_gives_the_unsplit_predictions_and_gradients():
    model, loss = transformer(), resolve("losses", "cross_entropy")
    x, y = batch()
    probabilities, grads = unsplit_step(model, x, y, loss)
    split = batch_split.BatchSplit(model)
    split_probabilities = split.forward(x, True)
    split.backward_preactivation(loss.backward_fused(split_probabilities, y))
    np.testing.assert_allclose(split_probabilities, probabilities, rtol=1e-12, atol=1e-14)
    assert loss.forward(split_probabilities, y) == pytest.approx(loss.forward(probabilities, y))
    for (layer_name, name, _), got, want in zip(
        model.parameters(), model.grads_list(), grads, strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13, err_msg=(layer_name, name))
    # Run again: each copy's gradients are its own step's, not added to the last step's.
    split.forward(x, True)
    split.backward_preactivation(loss.backward_fused(split_probabilities, y))
    np.testing.assert_allclose(model.grads_list()[0], grads[0], rtol=1e-10, atol=1e-13)


def test_a_twin_shares_the_parameters_and_keeps_its_own_gradients_and_memory():
    model = transformer()
    twin = model.twin()
    assert all(a is b for a, b in zip(model.params_list(), twin.params_list(), strict=True))
    assert not any(a is b for a, b in zip(model.grads_list(), twin.grads_list(), strict=True))
    assert not set(map(id, twin.layers)) & set(map(id, model.layers))
    head, twin_head = model.layers[-1], twin.layers[-1]
    assert twin_head.tied is twin.layers[0] and head.tied is model.layers[0]
    fc, twin_fc = (next(lay for lay in m.layers if lay.name == "fc") for m in (model, twin))
    assert twin_fc.activation is not fc.activation
    # attention's Q, K, V gradients stay views of the copy's own joined array
    attention = next(lay for lay in twin.layers if lay.name == "attn")
    for projection in ("query", "key", "value"):
        assert np.shares_memory(attention.grads[f"{projection}_weights"], attention.qkv_grads)
    assert not np.shares_memory(attention.qkv_grads, model.layers[3].qkv_grads)
    x, _ = batch()
    model.forward(x, True)
    kept = fc.activation._kept[1].copy()
    twin.forward(x[:3], True)  # the twin's GELU writes into arrays of its own
    np.testing.assert_array_equal(fc.activation._kept[1], kept)


@pytest.mark.parametrize(
    "model",
    [
        lambda: transformer(attention_dropout=0.1),
        lambda: Sequential(
            [{"type": "dense", "units": 4}, {"type": "dropout", "rate": 0.5}],
            input_shape=(3,),
            seed=0,
        ),
        lambda: Sequential([{"type": "lstm", "units": 3}], input_shape=(5, 2), seed=0),
    ],
    ids=["attention dropout", "dropout", "lstm"],
)
def test_models_that_draw_or_step_through_time_are_never_split(model):
    assert not model().splits_batch


def test_only_a_big_enough_batch_on_two_threads_is_split(monkeypatch):
    model = transformer(dtype="float32", channels=64, steps=64)
    monkeypatch.setattr(batch_split, "workers", lambda: 2)
    assert batch_split.worth_splitting(model, 32)  # 50,000 activations a sample
    assert not batch_split.worth_splitting(model, 16)  # too little work to hand off
    assert not batch_split.worth_splitting(model, 3)  # parts of one sample
    monkeypatch.setattr(batch_split, "workers", lambda: 1)
    assert not batch_split.worth_splitting(model, 32)
    wide = Sequential([{"type": "dense", "units": 2048}] * 2, input_shape=(784,), seed=0)
    monkeypatch.setattr(batch_split, "workers", lambda: 2)
    assert not batch_split.worth_splitting(wide, 128)  # BLAS splits its products well


def training_run(monkeypatch, split):
    from framework import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "worth_splitting", lambda model, size: split)
    model = transformer()
    trainer = Trainer(model, "cross_entropy", {"type": "adamw", "lr": 0.01}, seed=0)
    x, y = batch(n=40)
    trainer.fit(x, y, epochs=2, batch_size=7)  # each epoch's last batch (5) split too
    return model.params_list(), trainer.history["loss"]


def test_training_on_split_batches_follows_the_unsplit_run(monkeypatch):
    split_params, split_loss = training_run(monkeypatch, True)
    plain_params, plain_loss = training_run(monkeypatch, False)
    np.testing.assert_allclose(split_loss, plain_loss, rtol=1e-12)
    for got, want in zip(split_params, plain_params, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10)
    assert not np.allclose(split_params[0], transformer().params_list()[0])  # it trained


def test_the_halves_run_on_two_threads():
    if threads.workers() < 2:
        pytest.skip("one thread here (or OpenBLAS's idle threads spin): nothing to split over")
    split = batch_split.BatchSplit(transformer())
    seen = set()
    for copy in split.models:
        embedding = copy.layers[0]

        def spy(x, training=False, forward=embedding.forward):
            seen.add(threading.get_ident())
            return forward(x, training)

        embedding.forward = spy
    split.forward(batch()[0], True)
    assert len(seen) == 2


def test_a_model_of_another_kind_is_never_split(monkeypatch):
    """A duck-typed model (forward, backward, layers) without ``splits_batch``."""

    class Plain:
        layers = []

    monkeypatch.setattr(batch_split, "workers", lambda: 2)
    assert not batch_split.worth_splitting(Plain(), 64)


def test_a_split_conv_net_gives_the_unsplit_gradients():
    """conv2d's reused working memory (its scratch buffers) is the copy's own."""
    model = Sequential(
        [
            {"type": "conv2d", "filters": 3, "kernel_size": 3, "activation": "relu"},
            {"type": "maxpool2d", "pool_size": 2},
            {"type": "flatten"},
            {"type": "dense", "units": 4, "activation": "softmax"},
        ],
        input_shape=(8, 8, 2),
        dtype="float64",
        seed=0,
    )
    assert model.splits_batch
    loss = resolve("losses", "cross_entropy")
    rng = np.random.default_rng(2)
    x, y = rng.random((10, 8, 8, 2)), rng.integers(0, 4, 10)
    probabilities, grads = unsplit_step(model, x, y, loss)
    split = batch_split.BatchSplit(model)
    for _ in range(2):  # the second time through buffers the first one left
        split_probabilities = split.forward(x, True)
        split.backward_preactivation(loss.backward_fused(split_probabilities, y))
    np.testing.assert_allclose(split_probabilities, probabilities, rtol=1e-12)
    for got, want in zip(model.grads_list(), grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)


def residual_net(dtype="float64"):
    """examples/resnet_mnist.toml's shape in miniature: conv, batch norm, relu, a skip
    connection, pooling, global average pooling, softmax."""
    x = Input((8, 8, 1), name="images")
    stem = layer("conv2d", filters=4, kernel_size=3, activation="relu", name="stem")(x)
    h = layer("conv2d", filters=4, kernel_size=3, use_bias=False, name="conv")(stem)
    h = layer("batch_norm", momentum=0.5, name="bn")(h)
    h = layer("add", activation="relu", name="skip")([stem, h])
    h = layer("maxpool2d", pool_size=2, name="pool")(h)
    h = layer("batch_norm", name="bn_2")(h)  # after pooling: 4x4 values a channel and image
    h = layer("global_avgpool2d", name="gap")(h)
    return Model(
        x, layer("dense", units=3, activation="softmax", name="head")(h), dtype=dtype, seed=0
    )


@pytest.mark.parametrize("compiled", [True, False], ids=["kernels", "numpy"])
def test_a_split_batch_norm_net_normalises_with_the_whole_batch(compiled):
    """Batch norm's statistics are the whole batch's in both halves (the halves exchange
    them), the running averages move once, and the gradients are the unsplit step's."""
    from framework.kernels import use_kernels

    with use_kernels(compiled):
        model, loss = residual_net(), resolve("losses", "cross_entropy")
        assert model.splits_batch
        rng = np.random.default_rng(3)
        x, y = 5 + 3 * rng.random((10, 8, 8, 1)), rng.integers(0, 3, 10)  # a mean far from 0
        probabilities, grads = unsplit_step(model, x, y, loss)
        states = [
            {k: v.copy() for k, v in lay.state.items()}
            for lay in model.layers
            if hasattr(lay, "state")
        ]
        for lay in model.layers:  # back to the running averages before that step
            if hasattr(lay, "state"):
                lay.state["running_mean"][...] = 0
                lay.state["running_var"][...] = 1
        split = batch_split.BatchSplit(model)
        split_probabilities = split.forward(x, True)
        split.backward_preactivation(loss.backward_fused(split_probabilities, y))
    np.testing.assert_allclose(split_probabilities, probabilities, rtol=1e-11, atol=1e-13)
    for (layer_name, name, _), got, want in zip(
        model.parameters(), model.grads_list(), grads, strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=(layer_name, name))
    kept = [lay.state for lay in model.layers if hasattr(lay, "state")]
    for got, want in zip(kept, states, strict=True):
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-12, err_msg=key)
    # Each half's x̂ is normalised with the whole batch's μ and σ, not its own: the halves'
    # means are not 0, and cancel out.
    halves = [next(lay for lay in m.layers if lay.name == "bn").normalised for m in split.models]
    assert np.abs(halves[0].mean(axis=0)).min() > 1e-3
    np.testing.assert_allclose(halves[1].mean(axis=0), -halves[0].mean(axis=0), atol=1e-12)


def test_pooled_statistics_are_the_whole_batchs():
    from plugins.layers.normalization import pooled_statistics

    rng = np.random.default_rng(4)
    x = 1e4 + rng.standard_normal((30, 3))  # a mean far above the spread: no cancellation
    parts = [x[:7], x[7:19], x[19:]]
    shares = [(len(p), p.mean(0), ((p - p.mean(0)) ** 2).sum(0)) for p in parts]
    n, mean, squares = pooled_statistics(shares)
    assert n == 30
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-15)
    np.testing.assert_allclose(squares / n, x.var(0), rtol=1e-10)


def test_parts_that_wait_for_one_another_run_at_once_even_on_one_thread(monkeypatch):
    monkeypatch.setattr(threads, "workers", lambda: 1)
    seen, totals = set(), {}

    def work(part):
        seen.add(threading.get_ident())
        totals[part] = batch_split.current_part().sum(np.arange(3.0) * (part + 1), part + 1)

    batch_split.run_parts(work)
    assert len(seen) == batch_split.PARTS
    for total, count in totals.values():
        np.testing.assert_array_equal(total, [0.0, 3.0, 6.0])
        assert count == 3
    assert batch_split.current_part() is None  # outside a split step


def test_a_failing_part_raises_its_own_error_and_never_leaves_the_other_waiting():
    def work(part):
        if part == 1:
            raise ValueError("part 1 failed")
        batch_split.current_part().sum(1.0)  # waits for part 1, which never comes

    with pytest.raises(ValueError, match="part 1 failed"):
        batch_split.run_parts(work)
