"""Text datasets, the character tokenizer, lazy windows, masked token targets and the
tokenizer saved with a model (issue: text in, text out)."""

import hashlib
import http.server
import json
import os
import threading

import numpy as np
import pytest

from framework import ConfigError, DataError, Tokenizer, Windows, create, load_model, run
from framework.cli import main

SHAKESPEARE = "/work/shared/data/text/shakespeare.txt"

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 4


def load(name, **params):
    dataset = create("datasets", name, **params)
    return dataset, dataset.load(np.random.default_rng(0))


def write(path, data):
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return str(path)


# --- tokenizer -------------------------------------------------------------------------------


def test_char_tokenizer_round_trips_text_and_json():
    tokenizer = Tokenizer.from_text(TEXT)
    assert tokenizer.chars == "".join(sorted(set(TEXT)))
    assert tokenizer.vocab_size == len(set(TEXT))
    ids = tokenizer.encode("Speak, all")
    assert ids.dtype == np.int64 and tokenizer.decode(ids) == "Speak, all"
    assert list(tokenizer.encode("\n ")) == [0, 1]  # sorted: newline, then space
    again = Tokenizer.from_json(json.loads(json.dumps(tokenizer.to_json())))
    assert again == tokenizer and again.decode(ids) == "Speak, all"


def test_char_tokenizer_names_a_character_outside_its_vocabulary():
    with pytest.raises(DataError, match="character 'z' is not in the model's vocabulary"):
        Tokenizer.from_text("abc").encode("abz")


def test_byte_tokenizer_takes_any_text():
    tokenizer = Tokenizer(kind="bytes")
    assert tokenizer.vocab_size == 256
    ids = tokenizer.encode("né")
    assert list(ids) == [110, 0xC3, 0xA9] and tokenizer.decode(ids) == "né"
    decode = tokenizer.decoder()
    assert [decode(i) for i in ids] == ["n", "", "é"]  # held back until the character is whole


def test_stop_token_is_id_zero_and_decodes_to_nothing():
    tokenizer = Tokenizer.from_text("abc", stop=True)
    assert tokenizer.vocab_size == 4
    assert list(tokenizer.encode("cab")) == [3, 1, 2]
    assert tokenizer.decode([0, 1, 2, 0, 0]) == "ab"
    assert tokenizer.labels()[:2] == ["<stop>", "a"]


def test_damaged_tokenizer_json_is_a_data_error():
    with pytest.raises(DataError, match="the tokenizer in m.npz is damaged"):
        Tokenizer.from_json('{"format": 7}', "the tokenizer in m.npz")


# --- windows ---------------------------------------------------------------------------------


def test_windows_gather_only_the_rows_asked_for():
    ids = np.arange(20, dtype=np.uint16) * 3
    x, y = Windows(ids, 4), Windows(ids, 4, shift=1)
    assert len(x) == 16 and x.shape == (16, 4) and x.dtype == np.int64
    every = np.stack([ids[i : i + 4] for i in range(16)])
    assert np.array_equal(np.asarray(x), every)
    assert np.array_equal(np.asarray(y), every + 3)
    rows = np.array([15, 0, 7, 7])
    assert np.array_equal(x[rows], every[rows]) and x[rows].dtype == np.int64
    assert np.array_equal(x[2:5], every[2:5]) and np.array_equal(x[-1], every[-1])
    assert np.array_equal(x[np.array([[1, 2], [3, 4]])], every[np.array([[1, 2], [3, 4]])])
    with pytest.raises(IndexError):
        x[np.array([16])]


def test_windows_over_a_memmap_never_read_whole(tmp_path):
    path = tmp_path / "ids.bin"
    np.arange(1000, dtype="<u2").tofile(path)
    view = Windows(np.memmap(path, dtype="<u2", mode="r"), 8)
    assert np.array_equal(view[np.array([992 - 1])], [np.arange(991, 999)])


# --- datasets --------------------------------------------------------------------------------


def test_text_dataset_splits_contiguously_and_windows_both_parts(tmp_path):
    path = write(tmp_path / "t.txt", TEXT)
    dataset, (x, y, xv, yv) = load("text", path=path, block_size=8, val_fraction=0.25)
    tokenizer = dataset.tokenizer
    ids = tokenizer.encode(TEXT)
    n_train = int(len(ids) * 0.75)
    assert len(x) == n_train - 8 and len(xv) == len(ids) - n_train - 8
    assert np.array_equal(x[np.array([0, 5])], [ids[0:8], ids[5:13]])
    assert np.array_equal(y[np.array([5])], [ids[6:14]])
    assert np.array_equal(xv[np.array([0])], [ids[n_train : n_train + 8]])
    assert tokenizer.decode(x[0]) == TEXT[:8]


def test_text_dataset_in_bytes_reads_any_file(tmp_path):
    path = write(tmp_path / "b.bin", bytes(range(256)) * 2)
    dataset, (x, y, xv, yv) = load("text", path=path, block_size=4, tokens="bytes", val_fraction=0)
    assert dataset.tokenizer.vocab_size == 256 and len(xv) == 0 and xv.shape == (0, 4)
    assert list(x[255]) == [255, 0, 1, 2]


def test_text_found_in_plugnet_data_then_the_cache(tmp_path, monkeypatch):
    root = tmp_path / "data" / "text"
    root.mkdir(parents=True)
    write(root / "corpus.txt", TEXT)
    monkeypatch.setenv("PLUGNET_DATA", str(tmp_path / "data"))
    dataset, _ = load("text", path="corpus.txt", block_size=4)
    assert dataset.tokenizer.vocab_size == len(set(TEXT))
    monkeypatch.delenv("PLUGNET_DATA")
    with pytest.raises(DataError, match="file not found: corpus.txt.*PLUGNET_DATA"):
        load("text", path="corpus.txt", block_size=4)


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "corpus.txt").write_text(TEXT, encoding="utf-8")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/corpus.txt"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_text_fetched_from_url_once_and_hash_checked(tmp_path, served):
    digest = "sha256:" + hashlib.sha256(TEXT.encode()).hexdigest()
    dataset, _ = load("text", url=served, hash=digest, block_size=4)
    cached = tmp_path / "cache" / "plugnet" / "text" / "corpus.txt"
    assert cached.read_text() == TEXT and dataset.tokenizer.vocab_size == len(set(TEXT))
    with pytest.raises(DataError, match="could not fetch .*digest does not match"):
        load("text", url=served, path=str(tmp_path / "here" / "c.txt"), hash="sha256:" + "0" * 64)
    assert not (tmp_path / "here" / "c.txt").exists()


def test_text_bad_input(tmp_path):
    bad = write(tmp_path / "bad.txt", "abc".encode() + b"\xff" + "def".encode())
    with pytest.raises(DataError, match=r"bad.txt is not UTF-8 text: byte 3 \(0xff\)"):
        load("text", path=bad, block_size=2)
    empty = write(tmp_path / "empty.txt", "")
    with pytest.raises(DataError, match="empty.txt is empty"):
        load("text", path=empty, block_size=2)
    short = write(tmp_path / "short.txt", "x" * 100)
    with pytest.raises(DataError, match="block_size 95 is longer than the training part"):
        load("text", path=short, block_size=95)
    with pytest.raises(DataError, match="block_size 20 is longer than the held-out part"):
        load("text", path=short, block_size=20)
    with pytest.raises(ConfigError, match="tokens must be 'chars' or 'bytes'"):
        create("datasets", "text", path=short, tokens="words")


def test_lines_dataset_is_makemores(tmp_path):
    path = write(tmp_path / "names.txt", "emma\n\nava \nolivia\nbo\n")
    dataset, (x, y, xv, yv) = load("lines", path=path, val_count=1)
    tokenizer = dataset.tokenizer
    assert tokenizer.stop and tokenizer.chars == "abeilmov" and tokenizer.vocab_size == 9
    assert x.shape == (3, 7) and xv.shape == (1, 7)  # the longest name (6) + 1
    rows = {
        tokenizer.decode(row): (row, target)
        for row, target in zip(np.concatenate([x, xv]), np.concatenate([y, yv]), strict=True)
    }
    assert set(rows) == {"emma", "ava", "olivia", "bo"}
    row, target = rows["ava"]
    assert list(row) == [0, 1, 8, 1, 0, 0, 0]
    assert list(target) == [1, 8, 1, 0, -1, -1, -1]


def test_lines_bad_input(tmp_path):
    blank = write(tmp_path / "blank.txt", "\n  \n\n")
    with pytest.raises(DataError, match="blank.txt has no non-empty line"):
        load("lines", path=blank)
    few = write(tmp_path / "few.txt", "a\nb\n")
    with pytest.raises(DataError, match="val_count 1000 leaves no training line"):
        load("lines", path=few)


def test_tokens_dataset_memory_maps_the_files(tmp_path):
    np.arange(300, dtype="<u2").tofile(tmp_path / "train.bin")
    (np.arange(50, dtype="<u2") + 7).tofile(tmp_path / "val.bin")
    dataset, (x, y, xv, yv) = load(
        "tokens",
        path=str(tmp_path / "train.bin"),
        val_path=str(tmp_path / "val.bin"),
        vocab_size=300,
        block_size=16,
    )
    assert isinstance(x.ids, np.memmap) and len(x) == 284 and len(xv) == 34
    assert list(y[3]) == list(range(4, 20)) and list(xv[0]) == list(range(7, 23))
    assert dataset.tokenizer is None


def test_tokens_bad_input(tmp_path):
    (tmp_path / "odd.bin").write_bytes(b"\x01\x00\x02")
    with pytest.raises(DataError, match="odd.bin is 3 bytes, not a whole number of uint16 ids"):
        load("tokens", path=str(tmp_path / "odd.bin"), vocab_size=10, block_size=1)
    np.array([1, 2, 70, 3] * 10, dtype="<u2").tofile(tmp_path / "ids.bin")
    with pytest.raises(DataError, match="holds id 70, beyond vocab_size 65"):
        load("tokens", path=str(tmp_path / "ids.bin"), vocab_size=65, block_size=4)
    with pytest.raises(DataError, match="needs vocab_size"):
        load("tokens", path=str(tmp_path / "ids.bin"), block_size=4)
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(DataError, match="empty.bin is empty"):
        load("tokens", path=str(tmp_path / "empty.bin"), vocab_size=10)


@pytest.mark.skipif(not os.path.isfile(SHAKESPEARE), reason="the shared Tiny Shakespeare")
def test_tiny_shakespeare_as_nanogpt_reads_it(monkeypatch):
    monkeypatch.setenv("PLUGNET_DATA", os.path.dirname(os.path.dirname(SHAKESPEARE)))
    dataset, (x, y, xv, yv) = load("text", path="shakespeare.txt", block_size=64)
    assert dataset.tokenizer.vocab_size == 65
    assert len(x) + 64 == 1003854 and len(xv) + 64 == 111540  # nanoGPT's 90% / 10%
    assert dataset.tokenizer.decode(x[0][:13]) == "First Citizen"


# --- masked targets --------------------------------------------------------------------------


def masked_case(seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(3, 5, 7))
    labels = rng.integers(0, 7, size=(3, 5))
    labels[0, 3:] = -1
    labels[2, 1] = -1
    return logits, labels


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_masked_cross_entropy_matches_torch_ignore_index():
    torch = pytest.importorskip("torch")
    logits, labels = masked_case()
    z = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(
        z.reshape(-1, 7), torch.tensor(labels).reshape(-1), ignore_index=-1
    )
    expected.backward()
    grad = z.grad.numpy()
    for loss in (create("losses", "cross_entropy", from_logits=True),):
        assert loss.forward(logits, labels) == pytest.approx(expected.item(), rel=1e-12)
        assert np.allclose(loss.backward(logits, labels), grad, atol=1e-12)
    loss = create("losses", "cross_entropy")
    p = softmax(logits)
    assert loss.forward(p, labels) == pytest.approx(expected.item(), rel=1e-9)
    fused = loss.backward_fused(p, labels)
    assert np.allclose(fused, grad, atol=1e-12)
    chained = loss.backward(p, labels)
    masked = labels < 0
    assert np.all(fused[masked] == 0) and np.all(chained[masked] == 0)  # exactly zero
    assert loss.count(p, labels) == np.count_nonzero(~masked)


def test_all_targets_masked_is_zero_loss_and_gradient():
    loss = create("losses", "cross_entropy")
    p = softmax(np.ones((2, 3, 4)))
    labels = -np.ones((2, 3), dtype=np.int64)
    assert loss.forward(p, labels) == 0.0
    assert not loss.backward_fused(p, labels).any() and not loss.backward(p, labels).any()


def test_masked_accuracy_counts_only_kept_targets():
    accuracy = create("metrics", "accuracy")
    p = np.zeros((1, 4, 3))
    p[0, :, 1] = 1  # always class 1
    labels = np.array([[1, 2, -1, -1]])
    assert accuracy(p, labels) == 0.5
    accuracy.reset()
    accuracy.update(p, labels)
    accuracy.update(p[:, :1], np.array([[1]]))
    assert accuracy.result() == pytest.approx(2 / 3)
    with pytest.raises(DataError, match="label -2 is out of range"):
        create("losses", "cross_entropy").check_targets(np.array([[-2, 0]]), (2, 3))


# --- configs and model files -----------------------------------------------------------------


def text_config(path, logdir, **train):
    return {
        "seed": 0,
        "data": {"type": "text", "path": path, "block_size": 8, "val_fraction": 0.2},
        "model": {
            "layers": [
                {"type": "embedding", "input_dim": "vocab", "output_dim": 8},
                {"type": "gru", "units": 16, "return_sequences": True},
                {"type": "dense", "units": "vocab", "activation": "softmax"},
            ]
        },
        "train": {
            "loss": "cross_entropy",
            "optimizer": {"type": "adam", "lr": 0.01},
            "epochs": 1,
            "batch_size": 32,
            "metrics": ["accuracy"],
            **train,
        },
        "logging": {"logdir": str(logdir)},
    }


def test_vocab_sizes_the_model_and_the_tokenizer_travels_in_model_npz(tmp_path):
    path = write(tmp_path / "t.txt", TEXT)
    summary = run(text_config(path, tmp_path / "run"))
    assert summary["test"]["loss"] < np.log(len(set(TEXT)))  # better than a uniform guess
    model = load_model(tmp_path / "run")
    assert model.layers[0].input_dim == model.layers[-1].units == len(set(TEXT))
    assert model.tokenizer == Tokenizer.from_text(TEXT)
    with np.load(tmp_path / "run" / "model.npz", allow_pickle=False) as arrays:
        assert json.loads(str(arrays["tokenizer"]))["chars"] == model.tokenizer.chars
    again = load_model(tmp_path / "run" / "model.npz")
    assert again.tokenizer == model.tokenizer


def test_vocab_with_a_dataset_without_one_is_refused(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(
        '[data]\ntype = "moons"\n[model]\nlayers = [{ type = "dense", units = "vocab" }]\n'
        '[train]\nloss = "mse"\n[logging]\nlogdir = "r"\n'
    )
    code = main(["train", str(config)])
    err = capsys.readouterr().err
    assert (
        code == 2
        and "model.layers.0.units = \"vocab\", but dataset 'moons' has no vocabulary" in err
    )
    assert "Traceback" not in err and not (tmp_path / "r").exists()


def test_cli_names_a_file_that_is_not_utf8(tmp_path, capsys):
    bad = write(tmp_path / "bad.txt", b"ok\n\xc3(")
    config = tmp_path / "c.toml"
    config.write_text(
        f'[data]\ntype = "text"\npath = "{bad}"\nblock_size = 1\n'
        '[model]\nlayers = [{ type = "embedding", input_dim = "vocab", output_dim = 2 }]\n'
        '[train]\nloss = "cross_entropy"\n[logging]\nlogdir = "r"\n'
    )
    code = main(["train", str(config)])
    err = capsys.readouterr().err
    assert code == 2 and "bad.txt is not UTF-8 text: byte 3 (0xc3)" in err
    assert "Traceback" not in err and not (tmp_path / "r").exists()
