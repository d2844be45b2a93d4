"""Pictures for TensorBoard's Images tab, drawn with numpy alone: a classifier's decision
boundary over two-dimensional data, a grid of input images, and PNG encoding (zlib), so no
plotting library or Pillow is needed."""

import struct
import zlib

import numpy as np
from tensorboardX.proto.summary_pb2 import Summary

# Ten distinct class colours (Tableau 10), as RGB.
PALETTE = np.array(
    [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ],
    dtype=np.float64,
)


def encode_png(image):
    """PNG bytes of a ``(height, width)`` grey or ``(height, width, 1|3|4)`` uint8 image."""
    image = np.asarray(image, dtype=np.uint8)
    if image.ndim == 2:
        image = image[..., np.newaxis]
    height, width, channels = image.shape
    colour_type = {1: 0, 3: 2, 4: 6}[channels]
    # Each row starts with filter byte 0 (none); zlib does the compressing.
    rows = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, -1)], axis=1)

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def image_value(tag, image):
    """A summary value of a uint8 ``(height, width[, channels])`` image."""
    image = np.asarray(image, dtype=np.uint8)
    channels = 1 if image.ndim == 2 else image.shape[2]
    encoded = Summary.Image(
        height=image.shape[0],
        width=image.shape[1],
        colorspace=channels,
        encoded_image_string=encode_png(image),
    )
    return Summary.Value(tag=tag, image=encoded)


def class_labels(y):
    """Integer class labels from class indices, one-hot rows or 0/1 floats; None when ``y``
    are not class labels (regression targets)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return np.argmax(y, axis=1)
    y = y.reshape(len(y))
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.array_equal(y, np.round(y)):
            return None
    elif not np.issubdtype(y.dtype, np.integer) and y.dtype != bool:
        return None
    labels = y.astype(np.int64)
    return labels if labels.size and labels.min() >= 0 else None


def predicted_classes(outputs):
    """``(classes, confidence in [0, 1])`` from a classifier's outputs: the arg-max of class
    scores, or a single output thresholded at 0.5 (a sigmoid)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    outputs = outputs.reshape(len(outputs), -1)
    if outputs.shape[1] == 1:
        p = outputs[:, 0]
        classes = (p >= 0.5).astype(np.int64)
        confidence = np.clip(np.abs(p - 0.5) * 2, 0, 1)
    else:
        classes = np.argmax(outputs, axis=1)
        k = outputs.shape[1]
        top = outputs[np.arange(len(outputs)), classes]
        confidence = np.clip((top - 1 / k) / (1 - 1 / k), 0, 1)
    return classes, confidence


def decision_boundary(predict, x, labels, size=256, margin=0.08):
    """An RGB uint8 ``(size, size, 3)`` picture of ``predict``'s classes over the plane of
    the two-dimensional points ``x``: each class region in its colour (paler where the
    model is less sure), the boundary darkened, and the points in their true classes' colours.

    ``predict`` maps an ``(n, 2)`` array to outputs (class scores or one sigmoid)."""
    x = np.asarray(x, dtype=np.float64)
    low, high = x.min(axis=0), x.max(axis=0)
    pad = np.maximum((high - low) * margin, 1e-6)
    low, high = low - pad, high + pad
    columns = np.linspace(low[0], high[0], size)
    rows = np.linspace(high[1], low[1], size)  # image rows run downwards, y upwards
    grid = np.stack(np.meshgrid(columns, rows), axis=-1).reshape(-1, 2)
    classes, confidence = predicted_classes(predict(grid))
    classes, confidence = classes.reshape(size, size), confidence.reshape(size, size)

    colours = PALETTE[classes % len(PALETTE)]
    strength = (0.2 + 0.45 * confidence)[..., np.newaxis]
    image = 255 - (255 - colours) * strength
    edge = np.zeros((size, size), bool)
    edge[:, 1:] |= classes[:, 1:] != classes[:, :-1]
    edge[1:, :] |= classes[1:, :] != classes[:-1, :]
    image[edge] *= 0.45

    # Points: a dark ring around a disc of the true class colour, stamped offset by offset
    # for all points at once.
    px = np.round((x[:, 0] - low[0]) / (high[0] - low[0]) * (size - 1)).astype(np.int64)
    py = np.round((high[1] - x[:, 1]) / (high[1] - low[1]) * (size - 1)).astype(np.int64)
    point_colours = PALETTE[labels % len(PALETTE)]
    for radius, colour in ((3.2, None), (2.2, point_colours)):
        reach = int(radius)
        for dy in range(-reach, reach + 1):
            for dx in range(-reach, reach + 1):
                if dx * dx + dy * dy > radius * radius:
                    continue
                ys, xs = np.clip(py + dy, 0, size - 1), np.clip(px + dx, 0, size - 1)
                image[ys, xs] = 40 if colour is None else colour
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def image_grid(images, columns=4, pad=2):
    """Images ``(n, h, w[, c])`` tiled into one uint8 picture, each scaled to 0-255 by the
    batch's range (data in [0, 1] stay as they are)."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        images = (images - low) / (high - low) if high > low else np.zeros_like(images)
    n, h, w, c = images.shape
    columns = min(columns, n)
    rows = -(-n // columns)
    grid = np.zeros((rows * (h + pad) + pad, columns * (w + pad) + pad, c))
    for index in range(n):
        top, left = pad + (index // columns) * (h + pad), pad + (index % columns) * (w + pad)
        grid[top : top + h, left : left + w] = images[index]
    grid = np.round(grid * 255).astype(np.uint8)
    return grid[..., 0] if c == 1 else grid
