"""Text for language models: tokenizers, lazy windows over a corpus of token ids, and
sampling from a trained model.

Public for plugin authors: a dataset of your own reads its text with `read_text`, turns it
into ids with a `Tokenizer` (exposed as the dataset's ``tokenizer``, which a run saves in
``model.npz``), and gives the trainer `Windows` over the ids instead of a copy of every
window, exactly as the built-in ``text``, ``lines`` and ``tokens`` datasets do.
`generate` samples from any model that maps ``(N, T)`` ids to ``(N, T, vocab)``
probabilities (or ``(N, vocab)`` for the last position).
"""

import json
import mmap

import numpy as np

from framework.errors import ConfigError, DataError

TOKEN_KINDS = ("chars", "bytes")
TOKENIZER_FORMAT = 1


class Tokenizer:
    """Characters (or bytes) to integer ids and back.

    ``kind = "chars"``: the ids of ``chars`` (a string of distinct characters, usually the
    sorted characters of a corpus) are their positions in it.  ``kind = "bytes"``: the ids are
    the UTF-8 bytes, 0–255, whatever the text.  With ``stop`` (the ``lines`` dataset), id 0 is
    a start / stop token that stands for no character, and the characters' ids begin at 1
    (makemore's convention).

    ``encode(text) -> ids`` (int64), ``decode(ids) -> text`` (stop tokens dropped),
    ``vocab_size``; ``to_json()`` / `Tokenizer.from_json` round-trip it as plain JSON text,
    which is how a run keeps it in ``model.npz``.
    """

    def __init__(self, chars="", kind="chars", stop=False):
        if kind not in TOKEN_KINDS:
            raise ConfigError(f"tokens must be 'chars' or 'bytes', got {kind!r}")
        if kind == "chars":
            if not isinstance(chars, str) or not chars:
                raise ConfigError("a character tokenizer needs its characters (a non-empty string)")
            if len(set(chars)) != len(chars):
                raise ConfigError("a character tokenizer's characters must be distinct")
        self.kind = kind
        self.chars = chars if kind == "chars" else ""
        self.stop = bool(stop)
        self.offset = 1 if self.stop else 0
        self.index = {c: i + self.offset for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text, kind="chars", stop=False):
        """The tokenizer of a corpus: its sorted distinct characters (``"bytes"``: all 256)."""
        return cls("".join(sorted(set(text))) if kind == "chars" else "", kind, stop)

    @property
    def vocab_size(self):
        return (len(self.chars) if self.kind == "chars" else 256) + self.offset

    def encode(self, text):
        """The ids of ``text``; a character outside the vocabulary is a `DataError`."""
        if self.kind == "bytes":
            return (
                np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64) + self.offset
            )
        try:
            return np.array([self.index[c] for c in text], dtype=np.int64)
        except KeyError as exc:
            known = self.chars if len(self.chars) <= 80 else self.chars[:80] + "…"
            raise DataError(
                f"character {exc.args[0]!r} is not in the model's vocabulary of "
                f"{len(self.chars)} characters ({known!r})"
            ) from None

    def decode(self, ids):
        """The text of ``ids``; stop tokens (``stop``) stand for nothing."""
        ids = [int(i) - self.offset for i in np.asarray(ids).ravel() if int(i) >= self.offset]
        if self.kind == "bytes":
            return bytes(ids).decode("utf-8", errors="replace")
        return "".join(self.chars[i] for i in ids)

    def decoder(self):
        """A function of one id giving its text, for writing a sample as it is drawn.  Bytes
        are held back until they make a whole UTF-8 character."""
        if self.kind == "chars":
            return lambda i: "" if i < self.offset else self.chars[i - self.offset]
        import codecs

        incremental = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return lambda i: "" if i < self.offset else incremental.decode(bytes([i - self.offset]))

    def labels(self):
        """One printable label per id (the Projector's metadata): the character, with
        whitespace spelt out."""
        names = {"\n": "\\n", "\t": "\\t", " ": "␣", "\r": "\\r"}
        if self.kind == "bytes":
            chars = [chr(b) if 32 < b < 127 else f"0x{b:02x}" for b in range(256)]
        else:
            chars = [names.get(c, c) for c in self.chars]
        return (["<stop>"] if self.stop else []) + chars

    def get_config(self):
        return {
            "format": TOKENIZER_FORMAT,
            "kind": self.kind,
            "chars": self.chars,
            "stop": self.stop,
        }

    def to_json(self):
        return json.dumps(self.get_config())

    @classmethod
    def from_json(cls, text, where="the tokenizer"):
        """A tokenizer from `to_json`'s text; damaged text is a `DataError` naming ``where``."""
        try:
            config = json.loads(text)
            if not isinstance(config, dict) or config.get("format") != TOKENIZER_FORMAT:
                raise ValueError(f"unsupported format {config!r}")
            return cls(config["chars"], config["kind"], config["stop"])
        except (ValueError, TypeError, KeyError, ConfigError) as exc:
            raise DataError(f"{where} is damaged: {exc}") from exc

    def __eq__(self, other):
        return isinstance(other, Tokenizer) and self.get_config() == other.get_config()

    def __repr__(self):
        shown = self.chars if len(self.chars) <= 20 else self.chars[:20] + "…"
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, chars={shown!r}, stop={self.stop})"


def read_text(path, kind="chars"):
    """The text of the file ``path``: a `str` for ``"chars"`` (UTF-8), the raw `bytes` for
    ``"bytes"``.  A missing or empty file, or one that is not UTF-8, is a `DataError` naming
    it (and the offset of the first bad byte)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"text file not found: {path}") from None
    except OSError as exc:
        raise DataError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    if not raw:
        raise DataError(f"{path} is empty: a text dataset needs some text")
    if kind == "bytes":
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text: byte {exc.start} (0x{raw[exc.start]:02x}) cannot be "
            'decoded; convert the file to UTF-8, or read it with tokens = "bytes"'
        ) from None


def id_dtype(vocab_size):
    """The smallest unsigned dtype that holds every id of a vocabulary."""
    return np.uint8 if vocab_size <= 256 else np.uint16 if vocab_size <= 65536 else np.uint32


def release_pages(ids):
    """Unmap the pages of a memory-mapped ``ids`` that a gather touched: they stay in the
    page cache (the next read of them costs no disk), but no longer count as the process's
    memory.  Without it, each random window maps a whole large folio of the file (2 MB on
    Linux 6.x), and 30 batches of 32 windows map most of a 600 MB file.  0.03 ms a call."""
    mapping = getattr(ids, "_mmap", None)  # np.memmap's mmap object
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if mapping is not None and advice is not None:
        try:
            mapping.madvise(advice)
        except (OSError, ValueError):  # a closed map, a platform without it: only memory lost
            pass


class Windows:
    """Every window of ``block_size`` ids of a flat id array, as a lazy 2-D array.

    Row ``i`` is ``ids[i + shift : i + shift + block_size]``, for ``i`` in
    ``[0, len(ids) − block_size)``: with ``shift = 0`` the inputs of a language model, with
    ``shift = 1`` its targets (the same window one id later).  Nothing is copied:
    ``windows[index]`` (an integer, a slice or an index array) gathers just those rows, as
    int64, from ``ids`` (an ndarray or an ``np.memmap`` never read whole).

    It is an *array-like* as the trainer takes them (``len``, ``shape``, ``dtype``,
    ``__getitem__``), and ``every_offset`` tells it that every offset starts a sample, so it
    samples random offsets each step rather than shuffling all of them.
    """

    every_offset = True
    dtype = np.dtype(np.int64)
    ndim = 2

    def __init__(self, ids, block_size, shift=0):
        if block_size < 1 or len(ids) < block_size + 1:
            raise DataError(
                f"{len(ids)} ids hold no window of block_size {block_size} and its next id"
            )
        self.ids = ids
        self.block_size = int(block_size)
        self.shift = int(shift)
        self._length = len(ids) - self.block_size
        self._positions = np.arange(self.block_size) + self.shift

    def __len__(self):
        return self._length

    @property
    def shape(self):
        return (self._length, self.block_size)

    @property
    def size(self):
        return self._length * self.block_size

    def __getitem__(self, index):
        if isinstance(index, tuple):
            rows = self[index[0]]
            return rows[(slice(None), *index[1:])]
        if isinstance(index, slice):
            index = np.arange(*index.indices(self._length))
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        if not np.issubdtype(index.dtype, np.integer):
            raise TypeError(
                f"Windows are indexed by integers, slices or index arrays, got {index.dtype}"
            )
        if index.size and (index.min() < -self._length or index.max() >= self._length):
            raise IndexError(f"window index out of range for {self._length} windows")
        index = np.where(index < 0, index + self._length, index)
        rows = self.ids[index[..., None] + self._positions].astype(np.int64)
        release_pages(self.ids)
        return rows

    def __array__(self, dtype=None, copy=None):
        # Every window at once: block_size copies of the corpus.  Only small corpora (tests,
        # `np.asarray` on purpose) should come here; the trainer never does.
        array = self[np.arange(self._length)]
        return array if dtype is None else array.astype(dtype)

    def __repr__(self):
        return f"Windows({len(self.ids)} ids, block_size={self.block_size}, shift={self.shift})"


def is_array_like(value):
    """Whether ``value`` is an array-like the trainer takes without converting it: not an
    ndarray, but with ``len``, ``shape``, ``dtype`` and ``__getitem__``."""
    return (
        not isinstance(value, np.ndarray)
        and hasattr(value, "shape")
        and hasattr(value, "dtype")
        and hasattr(value, "__getitem__")
        and hasattr(value, "__len__")
    )


def vocab_size_of(dataset):
    """The vocabulary size a dataset gives ``"vocab"`` in a config: its tokenizer's, else its
    own ``vocab_size``; None when it has neither."""
    tokenizer = getattr(dataset, "tokenizer", None)
    if tokenizer is not None:
        return int(tokenizer.vocab_size)
    size = getattr(dataset, "vocab_size", None)
    return int(size) if isinstance(size, (int, np.integer)) and not isinstance(size, bool) else None


VOCAB = "vocab"
VOCAB_KEYS = ("input_dim", "units")


def uses_vocab(layers):
    """Whether any layer spec of a config says ``"vocab"`` for a size."""
    return any(
        isinstance(spec, dict) and any(spec.get(key) == VOCAB for key in VOCAB_KEYS)
        for spec in layers
    )


def with_vocab(layers, dataset, dataset_name="the dataset"):
    """The layer specs with ``"vocab"`` (an ``input_dim`` or ``units``) replaced by the
    dataset's vocabulary size; a `ConfigError` if the dataset has no vocabulary."""
    if not uses_vocab(layers):
        return layers
    size = vocab_size_of(dataset)
    resolved = []
    for index, spec in enumerate(layers):
        if isinstance(spec, dict) and any(spec.get(key) == VOCAB for key in VOCAB_KEYS):
            if size is None:
                key = next(k for k in VOCAB_KEYS if spec.get(k) == VOCAB)
                raise ConfigError(
                    f'model.layers.{index}.{key} = "vocab", but {dataset_name} has no vocabulary '
                    "(no tokenizer or vocab_size): give the number instead"
                )
            spec = {
                key: size if value == VOCAB and key in VOCAB_KEYS else value
                for key, value in spec.items()
            }
        resolved.append(spec)
    return resolved


# --- generation ------------------------------------------------------------------------------


def context_length(model):
    """The number of ids the model was built to read at once (its input's sequence length),
    or None where its input has no sequence axis."""
    shapes = getattr(model, "input_shapes", None) or [getattr(model, "input_shape", None)]
    shape = shapes[0]
    return int(shape[0]) if shape else None


def stepping_layers(model):
    """The model's layers if `generate` can feed it one id at a time, carrying the state of
    its recurrent layers (a chain of layers that each have ``step`` or are ``position_wise``,
    one of them recurrent); else None."""
    layers = list(getattr(model, "layers", []))
    inputs = getattr(model, "input_names", [])
    if len(inputs) != 1 or not any(callable(getattr(layer, "step", None)) for layer in layers):
        return None
    previous = inputs[0]
    for layer in layers:
        if list(model.inbound[layer.name]) != [previous]:
            return None  # not a chain
        if not (callable(getattr(layer, "step", None)) or getattr(layer, "position_wise", False)):
            return None
        previous = layer.name
    return layers


def as_probabilities(out):
    """``(N, vocab)`` float64 probabilities from a model's output for the last position: its
    softmax output as it is, or logits (no softmax on the output layer) softmaxed here."""
    probs = np.asarray(out, dtype=np.float64)
    if not np.all(np.isfinite(probs)):
        raise DataError("the model's output holds NaN or inf: nothing can be sampled from it")
    if probs.min() < 0 or not np.allclose(probs.sum(axis=-1), 1.0, atol=1e-3):
        probs = np.exp(probs - probs.max(axis=-1, keepdims=True))
    return probs


class WindowReader:
    """Next-id probabilities from re-reading the last ``block_size`` ids each time (nanoGPT's
    way; any model).  A context shorter than the model's length is given as it is where the
    model's layers take any length (recurrent, attention), else padded on the left with
    ``pad`` (a fixed-window model: makemore's MLP reads start tokens there)."""

    def __init__(self, model, pad):
        self.model, self.pad, self.block = model, pad, context_length(model)
        self.padded = None  # found at the first short context

    def __call__(self, ids):
        block = self.block
        context = ids[:, -block:] if block else ids
        if block and context.shape[1] < block and self.padded is not True:
            try:
                out = self.model.forward(context, training=False)
                self.padded = False
                return out[:, -1] if out.ndim == 3 else out
            except (ValueError, IndexError):  # layers of a fixed length: pad
                if self.padded is False:
                    raise
                self.padded = True
        if block and context.shape[1] < block:
            pad = np.full((len(ids), block - context.shape[1]), self.pad, dtype=np.int64)
            context = np.concatenate([pad, context], axis=1)
        out = self.model.forward(context, training=False)
        return out[:, -1] if out.ndim == 3 else out


class StateReader:
    """Next-id probabilities from one step of each layer, the recurrent layers' states
    carried from id to id (char-rnn's sampling): the prompt's last ``block_size`` ids are
    read once, then each new id in one step, so 500 ids cost 500 steps rather than 500
    windows of them.  For the first ``block_size`` ids of a sample it gives exactly what
    `WindowReader` gives; after that it remembers further back than a window."""

    def __init__(self, model, layers):
        self.layers, self.block = layers, context_length(model)
        self.states = [None] * len(layers)
        self.read = 0  # ids of the sequence already read

    def one(self, ids):
        h = ids
        for index, layer in enumerate(self.layers):
            if callable(getattr(layer, "step", None)):
                h, self.states[index] = layer.step(h, self.states[index])
            else:
                h = layer.forward(h[:, None], training=False)[:, 0]
        return h

    def __call__(self, ids):
        if self.read == 0 and self.block:
            self.read = max(0, ids.shape[1] - self.block)  # the prompt's last window
        out = None
        while self.read < ids.shape[1]:
            out = self.one(ids[:, self.read])
            self.read += 1
        return out


def sample_next(probs, temperature, top_k, rng):
    """One id per row of ``probs``: at ``temperature`` (0: the most likely), from the
    ``top_k`` most likely ids only if given."""
    if temperature == 0:
        return probs.argmax(axis=-1)
    logits = np.log(np.maximum(probs, 1e-300)) / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = np.partition(logits, -top_k, axis=-1)[:, -top_k][:, None]
        logits = np.where(logits < kth, -np.inf, logits)
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    cumulative = np.cumsum(weights, axis=-1)
    draws = rng.random(len(weights)) * cumulative[:, -1]
    return np.minimum((cumulative < draws[:, None]).sum(axis=-1), weights.shape[-1] - 1)


def generate(
    model, ids, max_new_tokens, temperature=1.0, top_k=None, rng=None, stop=None, callback=None
):
    """``ids`` (``(T,)`` or ``(N, T)``) with ``max_new_tokens`` sampled ids appended, one at a
    time, each drawn from the model's prediction for the position after the last
    ``block_size`` ids (the model's sequence length) — nanoGPT's ``generate``.

    ``temperature`` divides the log-probabilities (below 1 sharper, 0 the arg-max);
    ``top_k`` keeps the k most likely ids; ``rng`` (a seed or a ``numpy.random.Generator``)
    makes the draw reproducible.  ``stop`` (an id): a row that draws it ends there (the rest
    of it is ``stop`` too), and generation ends when every row has.  ``callback(step,
    new_ids)`` sees each step's ids as they are drawn (to print them as they come).

    A recurrent model (a chain of recurrent and position-wise layers: an ``lstm`` between
    an ``embedding`` and a ``dense``) carries its state from id to id instead of re-reading
    a window for each (`StateReader`: the same ids for the first ``block_size``, then a
    memory longer than a window, as char-rnn samples); any other model re-reads the last
    ``block_size`` ids (`WindowReader`).
    """
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if not (isinstance(temperature, (int, float)) and temperature >= 0):
        raise ConfigError(f"temperature must be a number >= 0, got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ConfigError(f"top_k must be a positive integer or None, got {top_k!r}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    ids = np.asarray(ids, dtype=np.int64)
    single = ids.ndim == 1
    ids = np.atleast_2d(ids)
    if ids.shape[1] == 0:
        raise ConfigError("generate needs at least one id to start from (a prompt, or the stop id)")
    layers = stepping_layers(model)
    pad = 0 if stop is None else int(stop)
    reader = StateReader(model, layers) if layers else WindowReader(model, pad)
    done = np.zeros(len(ids), dtype=bool)
    out = np.empty((len(ids), ids.shape[1] + max_new_tokens), dtype=np.int64)
    out[:, : ids.shape[1]] = ids
    length = ids.shape[1]
    for step in range(max_new_tokens):
        probs = as_probabilities(reader(out[:, :length]))
        new = sample_next(probs, temperature, top_k, rng)
        if stop is not None:
            new = np.where(done, stop, new)
            done |= new == stop
        out[:, length] = new
        length += 1
        if callback is not None:
            callback(step, new)
        if stop is not None and done.all():
            break
    out = out[:, :length]
    return out[0] if single else out


def sample_text(
    model,
    prompt=None,
    tokens=None,
    temperature=1.0,
    top_k=None,
    num_samples=1,
    rng=None,
    write=None,
):
    """``num_samples`` texts from a language model with a ``tokenizer`` (what ``plugnet
    sample`` prints), each written to ``write`` as it is drawn if given.

    A text model continues ``prompt`` (default: a newline, where the vocabulary has one) by
    ``tokens`` ids (default 500) and each sample is the prompt and its continuation.  A
    ``lines`` model (its tokenizer has a stop token) writes items that each begin after the
    start token (and ``prompt``, if given) and end at the stop token, within ``tokens`` ids
    (default: the model's length); each is written as one line.
    """
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise DataError(
            "the model has no tokenizer, so its ids cannot be read as text: it was not trained "
            "on a text dataset (text, lines, or tokens with a meta.json)"
        )
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ConfigError(f"num_samples must be a positive integer, got {num_samples!r}")
    if isinstance(rng, (int, np.integer)) and rng < 0:
        raise ConfigError(f"the seed must be >= 0, got {rng}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    lines = tokenizer.stop
    prompt = "" if prompt is None and lines else prompt
    if prompt is None:
        prompt = "\n" if "\n" in tokenizer.chars or tokenizer.kind == "bytes" else ""
    start = tokenizer.encode(prompt)
    if lines:
        start = np.concatenate([[0], start])  # the start token
    elif not len(start):
        start = np.zeros(1, dtype=np.int64)  # nothing to start from: the first id
    if tokens is None:
        tokens = (context_length(model) or 32) if lines else 500
    texts = []
    for _ in range(num_samples):
        decode = tokenizer.decoder()
        if write is not None:
            write(prompt)

        def show(step, new, decode=decode):
            if write is not None:
                write(decode(int(new[0])))

        ids = generate(
            model,
            start,
            tokens,
            temperature=temperature,
            top_k=top_k,
            rng=rng,
            stop=0 if lines else None,
            callback=show,
        )
        text = tokenizer.decode(ids)
        texts.append(text)
        if write is not None:
            write("\n")
    return texts


# --- token files -----------------------------------------------------------------------------

CHUNK_CHARS = 1 << 24  # characters read, decoded and written at a time


def text_chunks(path, kind):
    """The file's text in chunks (str, or bytes for ``"bytes"``), decoded as it is read; a
    byte that is not UTF-8 is a `DataError` naming the file and its offset."""
    import codecs

    decoder = None if kind == "bytes" else codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as f:
        while True:
            raw = f.read(CHUNK_CHARS)
            if decoder is None:
                if not raw:
                    return
                yield raw
                continue
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as exc:
                bad = offset + exc.start - len(decoder.getstate()[0])
                raise DataError(
                    f"{path} is not UTF-8 text: byte {max(bad, 0)} cannot be decoded; convert "
                    'it to UTF-8, or use tokens = "bytes"'
                ) from None
            offset += len(raw)
            if text:
                yield text
            if not raw:
                return


def write_token_files(path, directory, val_fraction=0.1, tokens="chars"):
    """Write nanoGPT's token files for the ``tokens`` dataset from the text file ``path``:
    ``directory/train.bin`` (the first 1 − ``val_fraction`` of the ids) and ``val.bin`` (the
    rest), flat little-endian uint16, and ``meta.json``, the tokenizer (so ``plugnet
    sample`` reads the model's ids as text).  The text is read in chunks of 16 M characters,
    twice for ``"chars"`` (its vocabulary, then its ids), so a corpus larger than memory
    can be prepared.  Returns ``{"train": ids, "val": ids, "vocab_size": n}``.  The files
    are written under temporary names and renamed into place only when all are whole."""
    import os

    if tokens not in TOKEN_KINDS:
        raise ConfigError(f"tokens must be 'chars' or 'bytes', got {tokens!r}")
    if not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"text file not found: {path}")
    if tokens == "bytes":
        tokenizer, total = Tokenizer(kind="bytes"), os.path.getsize(path)
        lookup = None
    else:
        seen, total = set(), 0
        for chunk in text_chunks(path, tokens):
            seen.update(chunk)
            total += len(chunk)
        if len(seen) > 65536:
            raise DataError(f"{path} has {len(seen)} distinct characters; uint16 ids hold 65,536")
        tokenizer = Tokenizer("".join(sorted(seen))) if seen else None
        lookup = np.array([ord(c) for c in tokenizer.chars], dtype=np.uint32) if seen else None
    if not total:
        raise DataError(f"{path} is empty: there is nothing to write")
    n_train = int(total * (1 - val_fraction))
    os.makedirs(directory, exist_ok=True)
    names = {
        "train": os.path.join(directory, "train.bin"),
        "val": os.path.join(directory, "val.bin"),
    }
    temporary = {key: f"{name}.tmp-{os.getpid()}" for key, name in names.items()}
    written = 0
    try:
        with open(temporary["train"], "wb") as train, open(temporary["val"], "wb") as val:
            for chunk in text_chunks(path, tokens):
                if lookup is None:
                    ids = np.frombuffer(chunk, dtype=np.uint8).astype("<u2")
                else:
                    codes = np.frombuffer(chunk.encode("utf-32-le"), dtype=np.uint32)
                    ids = np.searchsorted(lookup, codes).astype("<u2")
                cut = min(max(n_train - written, 0), len(ids))
                ids[:cut].tofile(train)
                ids[cut:].tofile(val)
                written += len(ids)
        meta = os.path.join(directory, "meta.json")
        with open(meta + f".tmp-{os.getpid()}", "w", encoding="utf-8") as f:
            f.write(tokenizer.to_json())
        os.replace(meta + f".tmp-{os.getpid()}", meta)
        for key, name in names.items():
            os.replace(temporary[key], name)
    finally:
        for name in temporary.values():
            if os.path.exists(name):
                os.remove(name)
    return {"train": n_train, "val": total - n_train, "vocab_size": tokenizer.vocab_size}
