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
        return self.ids[index[..., None] + self._positions].astype(np.int64)

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
    """The number of ids the model reads at once (its input's sequence length), or None for a
    model that takes sequences of any length."""
    shapes = getattr(model, "input_shapes", None) or [getattr(model, "input_shape", None)]
    shape = shapes[0]
    return int(shape[0]) if shape and shape[0] is not None else None


def next_token_probabilities(model, context):
    """``(N, vocab)`` float64 probabilities of the id after each row of ``context``: the model's
    last position for a per-token model, its output for one that predicts only the next id."""
    out = model.predict(context)
    if out.ndim == 3:
        out = out[:, -1]
    probs = np.asarray(out, dtype=np.float64)
    if not np.all(np.isfinite(probs)):
        raise DataError("the model's output holds NaN or inf: nothing can be sampled from it")
    if probs.min() < 0 or not np.allclose(probs.sum(axis=-1), 1.0, atol=1e-3):
        # Logits (no softmax on the output layer): softmax them here.
        probs = np.exp(probs - probs.max(axis=-1, keepdims=True))
    return probs


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
    time, each fed the last ``block_size`` ids (the model's sequence length, where it has one)
    — nanoGPT's ``generate``.

    ``temperature`` divides the log-probabilities (below 1 sharper, 0 the arg-max);
    ``top_k`` keeps the k most likely ids; ``rng`` (a seed or a ``numpy.random.Generator``)
    makes the draw reproducible.  ``stop`` (an id): a row that draws it ends there (the rest
    of it is ``stop`` too), and generation ends when every row has.  ``callback(step,
    new_ids)`` sees each step's ids as they are drawn (to print them as they come).

    A model of a fixed sequence length needs a context that long: a shorter one is padded on
    the left with ``stop`` (or 0), as the ``lines`` dataset's models were trained on.
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
    block = context_length(model)
    pad = 0 if stop is None else int(stop)
    done = np.zeros(len(ids), dtype=bool)
    out = np.empty((len(ids), ids.shape[1] + max_new_tokens), dtype=np.int64)
    out[:, : ids.shape[1]] = ids
    length = ids.shape[1]
    for step in range(max_new_tokens):
        context = out[:, max(0, length - block) : length] if block else out[:, :length]
        if block and context.shape[1] < block:
            context = np.concatenate(
                [np.full((len(out), block - context.shape[1]), pad, dtype=np.int64), context],
                axis=1,
            )
        if context.shape[1] == 0:
            raise ConfigError("generate needs at least one id of context for this model")
        new = sample_next(next_token_probabilities(model, context), temperature, top_k, rng)
        if stop is not None:
            new = np.where(done, stop, new)
            done |= new == stop
        out[:, length] = new
        length += 1
        if callback is not None:
            callback(step, new)
        if stop is not None and done.all():
            out = out[:, :length]
            break
    return out[0] if single else out
