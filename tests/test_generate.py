"""Sampling from language models: framework.generate, plugnet sample and the samples
callback (issue: text in, text out)."""

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from framework import ConfigError, DataError, Sequential, create, generate, load_model, run
from framework.cli import main
from framework.text import StateReader, WindowReader, stepping_layers

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 8
NAMES = "anna\nbob\ncecilia\ndave\neve\nfrank\ngrace\nheidi\nivan\njudy\nkarl\nliam\n" * 3


def char_model(kind, block=6, vocab=9, **extra):
    layers = [create("layers", "embedding", input_dim=vocab, output_dim=5)]
    if kind == "attention":
        layers += [create("layers", "multi_head_attention", num_heads=1, causal=True)]
    elif kind == "mlp":
        layers += [create("layers", "flatten"), create("layers", "dense", units=7)]
    else:
        layers += [create("layers", kind, units=7, return_sequences=True, **extra)]
    layers += [create("layers", "dense", units=vocab, activation="softmax")]
    return Sequential(layers, input_shape=(block,), seed=1, dtype="float64")


@pytest.mark.parametrize("kind", ["simple_rnn", "lstm", "gru"])
def test_a_recurrent_step_is_its_forward_one_step_at_a_time(kind):
    layer = char_model(kind).layers[1]
    x = np.random.default_rng(0).normal(size=(3, 6, 5))
    expected = layer.forward(x)
    state, steps = None, []
    for t in range(6):
        h, state = layer.step(x[:, t], state)
        steps.append(h)
    np.testing.assert_allclose(np.stack(steps, axis=1), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["simple_rnn", "lstm", "gru"])
def test_carried_state_gives_the_window_s_probabilities_within_a_window(kind):
    model = char_model(kind)
    layers = stepping_layers(model)
    assert layers is not None
    ids = np.random.default_rng(2).integers(0, 9, size=(2, 6))
    state, window = StateReader(model, layers), WindowReader(model, 0)
    for length in range(1, 7):  # the window grows to block_size, as a sample's first ids do
        np.testing.assert_allclose(state(ids[:, :length]), window(ids[:, :length]), atol=1e-12)


def test_models_that_are_not_recurrent_chains_reread_windows():
    assert stepping_layers(char_model("attention")) is None
    mlp = char_model("mlp")
    assert stepping_layers(mlp) is None
    out = generate(mlp, [0], 10, rng=0, stop=None)  # a fixed-length model: padded on the left
    assert out.shape == (11,) and out[0] == 0


@pytest.mark.parametrize("kind", ["gru", "attention"])
def test_generate_is_reproducible_and_honours_temperature_top_k_and_stop(kind):
    model = char_model(kind)
    first = generate(model, [1, 2], 20, rng=5)
    assert first.shape == (22,) and list(first[:2]) == [1, 2]
    assert np.array_equal(first, generate(model, [1, 2], 20, rng=np.random.default_rng(5)))
    greedy = generate(model, [[1, 2], [3, 4]], 8, temperature=0)
    assert np.array_equal(greedy, generate(model, [[1, 2], [3, 4]], 8, top_k=1, rng=9))
    stopped = generate(model, [[1], [2], [3]], 40, rng=0, stop=4)
    for row in stopped[:, 1:]:
        hits = np.flatnonzero(row == 4)
        if hits.size:
            assert np.all(row[hits[0] :] == 4)  # a row ends at its stop id
    with pytest.raises(ConfigError, match="temperature must be a number >= 0"):
        generate(model, [1], 3, temperature=-1)
    with pytest.raises(ConfigError, match="top_k must be a positive integer"):
        generate(model, [1], 3, top_k=0)


def config(kind, path, logdir, steps=30, callbacks=()):
    data = (
        {"type": "text", "path": str(path), "block_size": 8, "val_fraction": 0.2}
        if kind == "text"
        else {"type": "lines", "path": str(path), "val_count": 4}
    )
    return {
        "seed": 0,
        "data": data,
        "model": {
            "layers": [
                {"type": "embedding", "input_dim": "vocab", "output_dim": 8},
                {"type": "lstm", "units": 24, "return_sequences": True},
                {"type": "dense", "units": "vocab", "activation": "softmax"},
            ]
        },
        "train": {
            "loss": "cross_entropy",
            "optimizer": {"type": "adam", "lr": 0.02},
            "batch_size": 16,
            "steps": steps,
            "callbacks": list(callbacks),
        },
        "logging": {"logdir": str(logdir)},
    }


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("text_run")
    (root / "t.txt").write_text(TEXT)
    run(config("text", root / "t.txt", root / "run", steps=60))
    return root / "run"


def sample(capsys, *args):
    code = main(["sample", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_plugnet_sample_is_reproducible_by_seed(text_run, capsys):
    code, out, err = sample(capsys, text_run, "--prompt", "All:", "--tokens", 40, "--seed", 3)
    assert code == 0, err
    assert out.startswith("All:") and len(out) == len("All:") + 40 + 1
    assert set(out) <= set(TEXT)
    assert sample(capsys, text_run, "--prompt", "All:", "--tokens", 40, "--seed", 3)[1] == out
    two = sample(capsys, text_run, "--tokens", 10, "--num-samples", 2, "--seed", 4, "--top-k", 3)
    assert two[0] == 0 and two[1].count("\n") >= 4  # each: a newline prompt, ..., a newline


def test_plugnet_sample_bad_input(text_run, tmp_path, capsys):
    code, _, err = sample(capsys, text_run, "--prompt", "Zoë")
    assert code == 2 and "character 'Z' is not in the model's vocabulary" in err
    assert "Traceback" not in err
    code, _, err = sample(capsys, text_run, "--temperature", "-1")
    assert code == 2 and "temperature must be a number >= 0" in err
    moons = tmp_path / "moons"
    run(
        {
            "data": {"type": "moons", "n_samples": 50},
            "model": {"layers": [{"type": "dense", "units": 2, "activation": "softmax"}]},
            "train": {"loss": "cross_entropy", "epochs": 1},
            "logging": {"logdir": str(moons)},
        }
    )
    code, _, err = sample(capsys, moons, "--tokens", 5)
    assert code == 2 and "the model has no tokenizer" in err and "Traceback" not in err


def test_sample_of_a_lines_model_writes_items_ending_at_the_stop(tmp_path, capsys):
    (tmp_path / "names.txt").write_text(NAMES)
    run(config("lines", tmp_path / "names.txt", tmp_path / "run", steps=40))
    model = load_model(tmp_path / "run")
    assert model.tokenizer.stop
    code, out, err = sample(capsys, tmp_path / "run", "--num-samples", 5, "--seed", 1)
    assert code == 0, err
    items = out.split("\n")
    assert len(items) == 6 and items[-1] == ""  # five lines
    assert all(set(item) <= set(NAMES) - {"\n"} for item in items)
    assert all(len(item) <= model.input_shape[0] for item in items)


def test_samples_callback_writes_text_by_step_and_the_embedding_by_character(tmp_path):
    (tmp_path / "t.txt").write_text(TEXT)
    callbacks = [{"type": "samples", "every": 10, "tokens": 20, "prompt": "All"}]
    run(config("text", tmp_path / "t.txt", tmp_path / "run", steps=25, callbacks=callbacks))
    events = EventAccumulator(str(tmp_path / "run" / "train"), size_guidance={"tensors": 0})
    events.Reload()
    written = {e.step: e.tensor_proto.string_val[0].decode() for e in events.Tensors("samples")}
    assert sorted(written) == [10, 20, 25]
    assert all(text.strip().startswith("All") for text in written.values())
    labels = (tmp_path / "run" / "embedding" / "metadata.tsv").read_text().splitlines()
    chars = sorted(set(TEXT))
    assert labels == [{"\n": "\\n", " ": "␣"}.get(c, c) for c in chars]
    rows = np.loadtxt(tmp_path / "run" / "embedding" / "tensors.tsv", delimiter="\t")
    np.testing.assert_allclose(
        rows, load_model(tmp_path / "run").layers[0].params["weights"], atol=1e-6
    )
    config_text = (tmp_path / "run" / "embedding" / "projector_config.pbtxt").read_text()
    assert 'metadata_path: "metadata.tsv"' in config_text
    # Its files are the run's own (in the manifest): --overwrite replaces them.
    again = config("text", tmp_path / "t.txt", tmp_path / "run", steps=5, callbacks=callbacks)
    run(again, overwrite=True)
    assert len(list((tmp_path / "run" / "train").glob("*.samples"))) == 1


def test_samples_callback_needs_a_tokenizer(tmp_path):
    with pytest.raises(ConfigError, match="samples callback needs a model with a tokenizer"):
        run(
            {
                "data": {"type": "moons", "n_samples": 50},
                "model": {"layers": [{"type": "dense", "units": 2, "activation": "softmax"}]},
                "train": {"loss": "cross_entropy", "epochs": 1, "callbacks": ["samples"]},
                "logging": {"logdir": str(tmp_path / "r")},
            }
        )
    assert not (tmp_path / "r").exists()
    with pytest.raises(DataError, match="is not in the model's vocabulary"):
        (tmp_path / "t.txt").write_text(TEXT)
        callbacks = [{"type": "samples", "prompt": "€"}]
        run(config("text", tmp_path / "t.txt", tmp_path / "r2", steps=2, callbacks=callbacks))
