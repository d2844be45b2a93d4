"""TensorBoard for sequence models, read back with TensorBoard's own reader: every
parameter of a recurrent layer (recurrent_weights and the rest) with its scalars and
histograms, its hidden-state sequence as ``activations``, and an image per attention head."""

import io

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from framework import Sequential, Trainer

EVERYTHING = {kind: 0 for kind in ("images", "scalars", "histograms", "tensors")}


def accumulator(path):
    events = EventAccumulator(str(path), size_guidance=EVERYTHING)
    events.Reload()
    return events


def train(tmp_path, layers, x, y, loss, epochs=2):
    model = Sequential(layers, input_shape=x.shape[1:], seed=0)
    trainer = Trainer(
        model,
        loss,
        {"type": "adam", "lr": 0.01},
        seed=0,
        logdir=str(tmp_path),
        callbacks=[
            {"type": "tensorboard", "scalar_every": 1, "histogram_every": 2, "image_every": 1}
        ],
    )
    trainer.fit(x, y, epochs=epochs, batch_size=8)
    return model, accumulator(tmp_path / "train")


def test_recurrent_parameters_and_hidden_states_are_logged(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 6, 2), dtype=np.float32), rng.random((32, 1), dtype=np.float32)
    model, events = train(
        tmp_path, [{"type": "gru", "units": 4}, {"type": "dense", "units": 1}], x, y, "mse"
    )
    tags = events.Tags()
    for tensor in (
        "weights",
        "recurrent_weights",
        "bias",
        "recurrent_bias",
        "activations",
        "weights_grad",
        "recurrent_weights_grad",
        "bias_grad",
        "recurrent_bias_grad",
    ):
        assert f"gru_0/{tensor}" in tags["histograms"], tensor
        for stat in ("mean", "stddev", "max", "min"):
            assert f"gru_0/{tensor}/{stat}" in tags["scalars"]
    # activations are the whole hidden-state sequence: 8 samples x 6 steps x 4 units
    last = events.Histograms("gru_0/activations")[-1].histogram_value
    assert last.num == 8 * 6 * 4
    assert -1 <= last.min and last.max <= 1


def test_attention_weights_are_drawn_per_head(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    x, y = rng.random((32, 5, 4), dtype=np.float32), rng.integers(0, 3, size=(32, 5))
    layers = [
        {"type": "multi_head_attention", "num_heads": 2},
        {"type": "dense", "units": 3, "activation": "softmax"},
    ]
    model, events = train(tmp_path, layers, x, y, "cross_entropy", epochs=2)
    image_tags = events.Tags()["images"]
    assert "inputs" not in image_tags  # (T, F) sequences are not pictures
    heads = {tag for tag in image_tags if tag.startswith("multi_head_attention_0/")}
    assert heads == {
        "multi_head_attention_0/attention/head_0",
        "multi_head_attention_0/attention/head_1",
    }
    images = events.Images("multi_head_attention_0/attention/head_1")
    assert [image.step for image in images] == [
        4,
        8,
    ]  # every epoch (4 steps each); the end repeats the last
    picture = np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string)))
    assert picture.shape == (160, 160)  # 5 x 5 weights, 32 pixels each
    # the picture is one training example's weights of head 1 (the first of the first,
    # shuffled, batch), scaled by their max: one of the samples gives exactly these pixels
    weights = picture[::32, ::32] / 255
    candidates = []
    for sample in x:
        model.predict(sample[None])
        w = model.layers[0].attention_weights[0, 1]
        candidates.append(np.abs(w / w.max() - weights).max())
    assert min(candidates) < 1 / 255 + 1e-6
