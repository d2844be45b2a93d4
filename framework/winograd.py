"""Winograd's minimal filtering F(2×2, 3×3) for 3×3, stride-1 convolutions (`conv2d`'s, or a
plugin's own convolution layer)
(Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2015).

A 2×2 block of outputs of a 3×3 correlation reads a 4×4 tile ``d`` of the padded input.
With the constant matrices below, per channel pair::

    V = Bᵀ d B   (4×4, the input tile)        U = G g Gᵀ   (4×4, the 3×3 filter g)
    Y = Aᵀ [Σ_c U ⊙ V] A                      (2×2, the outputs)

so each of the 16 positions ξ of the 4×4 transform is one matrix product over channels,
``M[ξ] = V[ξ] · U[ξ]`` with ``V[ξ]`` of shape (tiles, C) and ``U[ξ]`` (C, F): 16·C·F
multiply-adds per 2×2 outputs instead of im2col's 4·9·C·F, 2.25 times fewer.  The
transforms are additions and subtractions only (and halves in G), compiled
(`framework.kernels`), one pass over the tiles each.

Backward is the adjoint of the same steps, with ``∇M = A ∇Y Aᵀ``::

    ∇U[ξ] = V[ξ]ᵀ · ∇M[ξ]    ∇g = Gᵀ ∇U G          (dL/dW)
    ∇V[ξ] = ∇M[ξ] · U[ξ]ᵀ    ∇d = B ∇V Bᵀ, the 4×4 tiles added onto the input where they overlap

The outputs equal the direct sums up to float rounding (each output a sum of the same
products in another order); tests hold them to im2col's within float32's precision and
1e-12 in float64.  The padding is never made: the transforms read zeros outside the
image, and where the output's height or width is odd the last tiles reach one row or
column further (zeros too), their extra outputs dropped.
"""

import numpy as np

from framework.kernels import kernel

# G of F(2×2, 3×3); Bᵀ and Aᵀ appear as the additions written out in the kernels below:
#   Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]
#   Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]
G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def tile_counts(out_size):
    """Tiles down and across: one per 2×2 block of outputs, an odd edge rounded up."""
    return (out_size[0] + 1) // 2, (out_size[1] + 1) // 2


# G ⊗ G: row 4i + j, column 3k + l holds G[i, k]·G[j, l], so U = G g Gᵀ of every channel
# pair at once is one (16 × 9) · (9 × C·F) product.
G_KRON = np.kron(G, G)


def filter_transform(weights):
    """U = G g Gᵀ for each (input, output) channel pair: (3, 3, C, F) -> (16, C, F)."""
    _, _, channels, filters = weights.shape
    kron = G_KRON.astype(weights.dtype)
    return (kron @ weights.reshape(9, -1)).reshape(16, channels, filters)


def filter_grad(grad_u):
    """∇g = Gᵀ ∇U G: (16, C, F) -> (3, 3, C, F), the adjoint of `filter_transform`."""
    _, channels, filters = grad_u.shape
    kron = G_KRON.astype(grad_u.dtype)
    return (kron.T @ grad_u.reshape(16, -1)).reshape(3, 3, channels, filters)


@kernel
def input_transform(x, top, left, tile_rows, tile_cols, first, tiles):
    """V = Bᵀ d B of every 4×4 tile of images ``x`` (n, H, W, C) padded by ``top`` rows
    and ``left`` columns of zeros (and as many after as the tiles reach), written to
    ``tiles`` (16, T, C) from tile row ``first`` on (each image's tiles row-major).  The
    padding is read as zeros, never made."""
    n, height, width, channels = x.shape
    d = np.empty((4, 4, channels), x.dtype)
    t = np.empty((4, 4, channels), x.dtype)
    for image in range(n):
        for a in range(tile_rows):
            for b in range(tile_cols):
                tile = first + (image * tile_rows + a) * tile_cols + b
                for i in range(4):
                    row = 2 * a + i - top
                    for j in range(4):
                        col = 2 * b + j - left
                        if 0 <= row < height and 0 <= col < width:
                            source = x[image, row, col]
                            for c in range(channels):
                                d[i, j, c] = source[c]
                        else:
                            for c in range(channels):
                                d[i, j, c] = 0
                for j in range(4):  # Bᵀ d: combinations of rows
                    for c in range(channels):
                        t[0, j, c] = d[0, j, c] - d[2, j, c]
                        t[1, j, c] = d[1, j, c] + d[2, j, c]
                        t[2, j, c] = d[2, j, c] - d[1, j, c]
                        t[3, j, c] = d[1, j, c] - d[3, j, c]
                for i in range(4):  # (Bᵀ d) B: combinations of columns
                    v0, v1 = tiles[4 * i, tile], tiles[4 * i + 1, tile]
                    v2, v3 = tiles[4 * i + 2, tile], tiles[4 * i + 3, tile]
                    for c in range(channels):
                        v0[c] = t[i, 0, c] - t[i, 2, c]
                        v1[c] = t[i, 1, c] + t[i, 2, c]
                        v2[c] = t[i, 2, c] - t[i, 1, c]
                        v3[c] = t[i, 1, c] - t[i, 3, c]


@kernel
def output_transform(products, first, bias, z):
    """Y = Aᵀ M A of each tile's 4×4 ``products`` (16, T, F), plus ``bias``, written to the
    outputs ``z`` (n, Ho, Wo, F) of the images whose tiles start at tile row ``first``; a
    tile's outputs past an odd edge are dropped."""
    n, height, width, filters = z.shape
    rows, cols = (height + 1) // 2, (width + 1) // 2
    s = np.empty((2, 4, filters), z.dtype)
    for image in range(n):
        for a in range(rows):
            for b in range(cols):
                tile = first + (image * rows + a) * cols + b
                for j in range(4):  # Aᵀ M: two combinations of rows
                    m0, m1 = products[j, tile], products[4 + j, tile]
                    m2, m3 = products[8 + j, tile], products[12 + j, tile]
                    for f in range(filters):
                        s[0, j, f] = m0[f] + m1[f] + m2[f]
                        s[1, j, f] = m1[f] - m2[f] - m3[f]
                for i in range(2):
                    if 2 * a + i < height:
                        y0 = z[image, 2 * a + i, 2 * b]
                        for f in range(filters):
                            y0[f] = s[i, 0, f] + s[i, 1, f] + s[i, 2, f] + bias[f]
                        if 2 * b + 1 < width:
                            y1 = z[image, 2 * a + i, 2 * b + 1]
                            for f in range(filters):
                                y1[f] = s[i, 1, f] - s[i, 2, f] - s[i, 3, f] + bias[f]


@kernel
def output_grad_transform(grad_z, first, grad_products):
    """∇M = A ∇Y Aᵀ of each tile's 2×2 block of ``grad_z`` (n, Ho, Wo, F) (zero past an odd
    edge), written to ``grad_products`` (16, T, F) from tile row ``first`` on."""
    n, height, width, filters = grad_z.shape
    rows, cols = (height + 1) // 2, (width + 1) // 2
    g = np.zeros((2, 2, filters), grad_z.dtype)
    u = np.empty((4, 2, filters), grad_z.dtype)
    for image in range(n):
        for a in range(rows):
            for b in range(cols):
                tile = first + (image * rows + a) * cols + b
                for i in range(2):
                    for j in range(2):
                        inside = 2 * a + i < height and 2 * b + j < width
                        if inside:
                            source = grad_z[image, 2 * a + i, 2 * b + j]
                            for f in range(filters):
                                g[i, j, f] = source[f]
                        else:
                            for f in range(filters):
                                g[i, j, f] = 0
                for j in range(2):  # A ∇Y: four combinations of the two rows
                    for f in range(filters):
                        u[0, j, f] = g[0, j, f]
                        u[1, j, f] = g[0, j, f] + g[1, j, f]
                        u[2, j, f] = g[0, j, f] - g[1, j, f]
                        u[3, j, f] = -g[1, j, f]
                for i in range(4):  # (A ∇Y) Aᵀ
                    m0, m1 = grad_products[4 * i, tile], grad_products[4 * i + 1, tile]
                    m2, m3 = grad_products[4 * i + 2, tile], grad_products[4 * i + 3, tile]
                    for f in range(filters):
                        m0[f] = u[i, 0, f]
                        m1[f] = u[i, 0, f] + u[i, 1, f]
                        m2[f] = u[i, 0, f] - u[i, 1, f]
                        m3[f] = -u[i, 1, f]


@kernel
def input_grad_transform(grad_tiles, top, left, tile_rows, tile_cols, first, grad_x):
    """∇d = B ∇V Bᵀ of each tile's ``grad_tiles`` (16, T, C), added onto the gradient
    ``grad_x`` (n, H, W, C) of the pixels the 4×4 tile read, where the tiles overlap; the
    padding's share (`input_transform`'s zeros) is dropped."""
    n, height, width, channels = grad_x.shape
    w = np.empty((4, 4, channels), grad_x.dtype)
    d = np.empty((4, 4, channels), grad_x.dtype)
    for image in range(n):
        for a in range(tile_rows):
            for b in range(tile_cols):
                tile = first + (image * tile_rows + a) * tile_cols + b
                for j in range(4):  # B ∇V: combinations of rows
                    v0, v1 = grad_tiles[j, tile], grad_tiles[4 + j, tile]
                    v2, v3 = grad_tiles[8 + j, tile], grad_tiles[12 + j, tile]
                    for c in range(channels):
                        w[0, j, c] = v0[c]
                        w[1, j, c] = v1[c] - v2[c] + v3[c]
                        w[2, j, c] = v2[c] + v1[c] - v0[c]
                        w[3, j, c] = -v3[c]
                for i in range(4):  # (B ∇V) Bᵀ: combinations of columns
                    for c in range(channels):
                        d[i, 0, c] = w[i, 0, c]
                        d[i, 1, c] = w[i, 1, c] - w[i, 2, c] + w[i, 3, c]
                        d[i, 2, c] = w[i, 2, c] + w[i, 1, c] - w[i, 0, c]
                        d[i, 3, c] = -w[i, 3, c]
                for i in range(4):
                    row = 2 * a + i - top
                    if 0 <= row < height:
                        for j in range(4):
                            col = 2 * b + j - left
                            if 0 <= col < width:
                                target = grad_x[image, row, col]
                                for c in range(channels):
                                    target[c] += d[i, j, c]
