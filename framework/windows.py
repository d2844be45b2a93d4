"""Sliding windows over NHWC images: the geometry convolution and pooling layers share.

Public for plugin authors: a layer of your own that slides a window (a convolution, a
pooling, a local response normalisation) takes its output size and padding from
`window_geometry`, pads with `pad_images` and reads every window at once through `windows`
or `window_slice`, exactly as the built-in ``conv2d``, ``maxpool2d`` and ``avgpool2d`` do.
"""

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from framework.errors import ShapeError

PADDINGS = ("same", "valid")


def pair(value):
    """``3`` -> ``(3, 3)``; ``[3, 2]`` -> ``(3, 2)``; each a positive integer."""
    items = (value, value) if isinstance(value, (int, np.integer)) else value
    try:
        items = tuple(items)
    except TypeError:
        raise TypeError(f"expected an integer or a pair of integers, got {value!r}") from None
    if len(items) != 2 or not all(
        isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in items
    ):
        raise TypeError(f"expected an integer or a pair of integers, got {value!r}")
    if min(items) < 1:
        raise ValueError(f"expected positive sizes, got {value!r}")
    return int(items[0]), int(items[1])


def padding_name(value):
    if value not in PADDINGS:
        raise ValueError(f"padding must be 'same' or 'valid', got {value!r}")
    return value


def axis_geometry(size, window, stride, padding):
    """``(out, pad_before, pad_after)`` along one axis.

    ``valid``: only whole windows, ``out = (size - window) // stride + 1``.
    ``same`` (TensorFlow's rule): ``out = ceil(size / stride)`` and just enough zeros to
    reach it, ``pad_total = max((out - 1)·stride + window - size, 0)``, split with the odd one
    after (``pad_before = pad_total // 2``).
    """
    if padding == "valid":
        return (size - window) // stride + 1, 0, 0
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + window - size, 0)
    return out, total // 2, total - total // 2


def window_geometry(layer, input_shape, window, strides, padding, what):
    """Output size and padding of ``layer`` sliding ``window`` over images of
    ``input_shape``; a `ShapeError` naming the layer and shapes when it cannot."""
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ShapeError(
            f"layer {layer.name} expects images shaped (height, width, channels), got input "
            f"shape (None, {', '.join(map(str, shape))})"
        )
    height, width, _ = shape
    if padding == "valid" and (window[0] > height or window[1] > width):
        raise ShapeError(
            f"layer {layer.name}: {what} {window[0]}x{window[1]} is larger than its input "
            f"(None, {height}, {width}, {shape[2]}) with padding 'valid'; use padding "
            f"'same' or a smaller {what}"
        )
    rows = axis_geometry(height, window[0], strides[0], padding)
    cols = axis_geometry(width, window[1], strides[1], padding)
    return (rows[0], cols[0]), ((rows[1], rows[2]), (cols[1], cols[2]))


def pad_images(x, pads, value=0.0):
    """``x`` with ``pads = ((top, bottom), (left, right))`` of ``value`` around each image."""
    (top, bottom), (left, right) = pads
    if not (top or bottom or left or right):
        return x
    n, h, w, c = x.shape
    padded = np.empty((n, h + top + bottom, w + left + right, c), dtype=x.dtype)
    padded[:, :top] = value
    padded[:, h + top :] = value
    padded[:, top : h + top, :left] = value
    padded[:, top : h + top, w + left :] = value
    padded[:, top : h + top, left : w + left] = x
    return padded


def crop_images(x, pads, height, width):
    (top, _), (left, _) = pads
    return x[:, top : top + height, left : left + width]


def windows(x, window, strides, out_size):
    """Read-only view ``(N, Ho, Wo, kh, kw, C)`` of every window of ``x`` (already padded):
    element ``[n, i, j, di, dj, c]`` is ``x[n, i·sh + di, j·sw + dj, c]``.  No copy."""
    sn, sh, sw, sc = x.strides
    shape = (x.shape[0], *out_size, *window, x.shape[3])
    steps = (sn, sh * strides[0], sw * strides[1], sh, sw, sc)
    return as_strided(x, shape=shape, strides=steps, writeable=False)


def window_slice(offset, strides, out_size):
    """Index of the input pixels that window offset ``(di, dj)`` touches, one per output
    pixel: ``x[window_slice(...)]`` has shape ``(N, Ho, Wo, C)``."""
    (di, dj), (sh, sw), (ho, wo) = offset, strides, out_size
    return (
        slice(None),
        slice(di, di + sh * (ho - 1) + 1, sh),
        slice(dj, dj + sw * (wo - 1) + 1, sw),
    )
