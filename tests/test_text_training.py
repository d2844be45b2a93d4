"""Training by steps, array-like data, random offsets, streaming evaluation and exact resume
of text runs (issue: text in, text out)."""

import io
import json
import os
import sys

import numpy as np
import pytest
from test_faults import count, final_params, kill_when, start

import framework
from framework import Trainer, Windows, create, run
from framework.cli import main
from framework.run import build

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 6
SUPPORT = os.path.join(os.path.dirname(__file__), "support")


class Recorded:
    """An array-like that records the size of every index it is asked for and refuses to be
    read whole."""

    def __init__(self, array, every_offset=False):
        self.array, self.every_offset, self.asked, self.recorded = array, every_offset, [], []
        self.shape, self.dtype = array.shape, array.dtype

    def __len__(self):
        return len(self.array)

    def __getitem__(self, index):
        self.asked.append(np.size(np.arange(len(self))[index]))
        self.recorded.append(index)
        return self.array[index]

    def __array__(self, *args, **kwargs):
        raise AssertionError("the array-like was read whole")


def small_model(vocab=7, block=5):
    return framework.Sequential(
        [
            create("layers", "embedding", input_dim=vocab, output_dim=4),
            create("layers", "gru", units=6, return_sequences=True),
            create("layers", "dense", units=vocab, activation="softmax"),
        ],
        input_shape=(block,),
        seed=0,
    )


def test_batches_are_gathered_by_index_never_from_a_copy():
    rng = np.random.default_rng(0)
    x = Recorded(rng.integers(0, 7, size=(100, 5)))
    y = Recorded(rng.integers(0, 7, size=(100, 5)))
    trainer = Trainer(small_model(), "cross_entropy", "adam", seed=0)
    trainer.fit(x, y, epochs=2, batch_size=16)
    assert trainer.step == 14 and max(x.asked) <= 4096 and max(y.asked) <= 4096
    assert sorted(set(x.asked[-14:])) == [4, 16]  # batches of 16 and the epoch's last 4


def test_a_source_of_offsets_is_sampled_each_step():
    ids = np.random.default_rng(1).integers(0, 7, size=10_000)
    x = Recorded(np.asarray(Windows(ids, 5)), every_offset=True)
    y = Recorded(np.asarray(Windows(ids, 5, shift=1)), every_offset=True)
    x.block_size = 5

    class Watched(np.random.Generator):  # records every permutation asked for
        sizes = []

        def permutation(self, n, *args, **kwargs):
            self.sizes.append(n)
            return super().permutation(n, *args, **kwargs)

    trainer = Trainer(small_model(), "cross_entropy", "adam", seed=0)
    trainer.rng = Watched(np.random.PCG64(0))
    trainer.fit(x, y, epochs=1, batch_size=50)
    assert not Watched.sizes  # no index array of the corpus's size
    assert trainer.steps_per_epoch == 40  # 9,995 windows / block 5 / batch 50
    assert trainer.step == 40 and trainer.epoch == 1
    assert set(x.asked[-40:]) == {50} and set(y.asked[-40:]) == {50}
    expected = np.random.Generator(np.random.PCG64(0)).integers(0, len(x), size=50)
    assert np.array_equal(x.recorded[-40], expected)  # drawn with the trainer's generator


def test_steps_end_the_run_whichever_comes_first(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(TEXT)
    config = text_config(path, tmp_path / "a", steps=7)
    summary = run(config)
    # an epoch: 380 training windows / block 8 / batch 32 = 2 steps
    assert summary["steps"] == 7 and summary["epochs"] == 3
    summary = run(
        {
            **config,
            "train": {**config["train"], "epochs": 1, "steps": 10_000},
            "logging": {"logdir": str(tmp_path / "b")},
        }
    )
    assert summary["epochs"] == 1 and summary["steps"] == 2


def test_eval_batches_estimate_from_random_batches(tmp_path):
    x, y = text_arrays(tmp_path)
    trainer = Trainer(small_model(vocab=y.max() + 1, block=8), "cross_entropy", "adam", seed=0)
    full = trainer.evaluate(x, y)
    estimate = trainer.evaluate(x, y, batch_size=16, batches=3)
    again = trainer.evaluate(x, y, batch_size=16, batches=3)
    assert estimate == again and estimate["loss"] != full["loss"]
    assert estimate["loss"] == pytest.approx(full["loss"], rel=0.05)


def text_arrays(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(TEXT)
    dataset = create("datasets", "text", path=str(path), block_size=8, val_fraction=0)
    x, y, _, _ = dataset.load(np.random.default_rng(0))
    return np.asarray(x), np.asarray(y)


def test_streaming_evaluation_gives_the_whole_batch_values(monkeypatch, tmp_path):
    x, y = text_arrays(tmp_path)
    y = y.copy()
    y[::3, 5:] = -1  # masked targets weigh each batch by what it counts
    trainer = Trainer(
        small_model(vocab=x.max() + 1, block=8), "cross_entropy", "adam", metrics=["accuracy"]
    )
    whole = trainer.evaluate(x, y)
    monkeypatch.setattr(framework.trainer, "EVAL_VALUES", 1)  # batches of 256 rows
    streamed = trainer.evaluate(x, y, batch_size=7)  # batches of 7 rows
    assert streamed["loss"] == pytest.approx(whole["loss"], rel=1e-6)
    assert streamed["accuracy"] == pytest.approx(whole["accuracy"], abs=1e-12)
    p = trainer.model.predict(x)
    loss = trainer.loss.forward(p, y)
    assert whole["loss"] == pytest.approx(loss, rel=1e-6)


class Largest:
    """A stateful metric: the largest predicted probability seen (not an average)."""

    def __init__(self):
        self.value, self.calls = 0.0, 0

    def __call__(self, y_pred, y_true):
        return float(y_pred.max())

    def update(self, y_pred, y_true):
        self.calls += 1
        self.value = max(self.value, float(y_pred.max()))

    def result(self):
        return self.value

    def reset(self):
        self.value = 0.0


def test_a_stateful_metric_is_fed_batch_by_batch(monkeypatch, tmp_path):
    x, y = text_arrays(tmp_path)
    metric = Largest()
    trainer = Trainer(small_model(vocab=x.max() + 1, block=8), "cross_entropy", metrics=[metric])
    monkeypatch.setattr(framework.trainer, "EVAL_VALUES", 1)
    logs = trainer.evaluate(np.concatenate([x] * 3), np.concatenate([y] * 3), batch_size=100)
    assert metric.calls == -(-3 * len(x) // 256) and logs["largest"] == pytest.approx(
        trainer.model.predict(x).max()
    )


def text_config(path, logdir, **train):
    return {
        "seed": 3,
        "data": {"type": "text", "path": str(path), "block_size": 8, "val_fraction": 0.2},
        "model": {
            "layers": [
                {"type": "embedding", "input_dim": "vocab", "output_dim": 8},
                {"type": "dropout", "rate": 0.2},
                {"type": "gru", "units": 12, "return_sequences": True},
                {"type": "dense", "units": "vocab", "activation": "softmax"},
            ]
        },
        "train": {
            "loss": "cross_entropy",
            "optimizer": {"type": "adam", "lr": 0.01},
            "batch_size": 32,
            "metrics": ["accuracy"],
            **train,
        },
        "logging": {"logdir": str(logdir)},
    }


def test_progress_lines_count_steps_and_schedule_spans_them(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(TEXT)
    stream = io.StringIO()
    config = text_config(
        path,
        tmp_path / "r",
        steps=12,
        evaluate_every=5,
        eval_batches=2,
        callbacks=[{"type": "lr_schedule", "schedule": "cosine", "min_lr": 0.001}],
    )
    experiment = build(config)
    experiment.trainer.add_callback(create("callbacks", "progress", file=stream, bar=False))
    experiment.fit(handle_signals=False)
    lines = stream.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["5/12", "10/12", "12/12"]
    assert "val_loss" in lines[0] and "val_loss" in lines[2]
    schedule = experiment.trainer.callbacks[0]
    assert schedule.length == 12 and experiment.trainer.optimizer.lr == pytest.approx(
        0.001, abs=2e-4
    )


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("train.steps=0", "'train.steps' must be >= 1, got 0"),
        ("train.eval_batches=2", "train.eval_batches estimates the held-out loss"),
    ],
)
def test_steps_bad_input(tmp_path, capsys, setting, message):
    path = tmp_path / "t.txt"
    path.write_text(TEXT)
    config = tmp_path / "c.toml"
    config.write_text(
        LINES_CONFIG.format(kind="text", path=path, data="block_size = 4\nval_fraction = 0")
        + f'[logging]\nlogdir = "{tmp_path / "r"}"\n'
    )
    code = main(["train", str(config), "--set", setting])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


LINES_CONFIG = """seed = 2
plugins = ["slow_plugin"]
[data]
type = "{kind}"
path = "{path}"
{data}
[model]
layers = [
  {{ type = "embedding", input_dim = "vocab", output_dim = 8 }},
  {{ type = "dropout", rate = 0.2 }},
  {{ type = "gru", units = 12, return_sequences = true }},
  {{ type = "dense", units = "vocab", activation = "softmax" }},
]
[train]
loss = "cross_entropy"
optimizer = {{ type = "adam", lr = 0.01 }}
batch_size = 8
steps = 30
metrics = ["accuracy"]
callbacks = [{{ type = "checkpoint", every = 3, keep = 0 }}, {{ type = "slow", seconds = 0.03 }}]
"""


@pytest.mark.parametrize(
    ("kind", "data"),
    [("text", "block_size = 6\nval_fraction = 0.2"), ("lines", "val_count = 4")],
)
def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_weights(tmp_path, kind, data):
    path = tmp_path / "corpus.txt"
    words = "anna bob cecilia dave eve frank grace heidi ivan judy karl liam mallory ned olga"
    path.write_text(TEXT if kind == "text" else "\n".join(words.split() * 3) + "\n")
    (tmp_path / "c.toml").write_text(LINES_CONFIG.format(kind=kind, path=path, data=data))
    sys.path.insert(0, SUPPORT)
    try:
        config = framework.config.load_config(tmp_path / "c.toml")
        expected = run(dict(config, logging={"logdir": str(tmp_path / "straight")}))
    finally:
        sys.path.remove(SUPPORT)
    straight = final_params(tmp_path / "straight")
    assert straight["step"] == 30
    logdir = str(tmp_path / "killed")
    kill_when(start(["c.toml", "--logdir", logdir], tmp_path), logdir, lambda n: count(n) >= 2)
    kill_when(start(["--resume", logdir], tmp_path), logdir, lambda n: count(n) >= 5)
    process = start(["--resume", logdir], tmp_path)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode()
    resumed = final_params(logdir)
    assert resumed["step"] == 30
    for key, value in straight["params"].items():
        np.testing.assert_allclose(resumed["params"][key], value, rtol=0, atol=1e-6, err_msg=key)
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert summary["test"] == pytest.approx(expected["test"], abs=1e-9)
