"""libjpeg-turbo's 4:2:0 chroma resampling: h2v2 downsampling (jcsample.c) and h2v2 "fancy"
(triangle-filter) upsampling (jdsample.c), on (..., H, W) planes with even H and W.

Only full 2x2 blocks are handled: the pipeline's planes are 256x256, a whole number of 16x16 MCUs,
so libjpeg's edge expansion never adds samples and the decoder's edge context is the plane's own
edge rows and columns.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def downsample_h2v2_exact(plane: jax.Array) -> jax.Array:
    """Mean of each 2x2 block, rounded with libjpeg's alternating bias 1, 2, 1, 2, ... along a row
    (so that ties do not all round the same way)."""
    *lead, height, width = plane.shape
    blocks = plane.reshape(*lead, height // 2, 2, width // 2, 2).sum(axis=(-3, -1))
    bias = 1 + (jnp.arange(width // 2, dtype=plane.dtype) & 1)
    return (blocks + bias) >> 2


def downsample_h2v2_smooth(plane: jax.Array) -> jax.Array:
    *lead, height, width = plane.shape
    return plane.reshape(*lead, height // 2, 2, width // 2, 2).mean(axis=(-3, -1))


def _neighbours(plane: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
    """The previous and next sample along `axis`, the edge sample repeated beyond the edges."""
    size = plane.shape[axis]
    previous = jnp.take(plane, jnp.maximum(jnp.arange(size) - 1, 0), axis=axis)
    following = jnp.take(plane, jnp.minimum(jnp.arange(size) + 1, size - 1), axis=axis)
    return previous, following


def _interleave(even: jax.Array, odd: jax.Array, axis: int) -> jax.Array:
    stacked = jnp.stack([even, odd], axis=axis + 1 if axis >= 0 else axis)
    shape = list(even.shape)
    shape[axis] *= 2
    return stacked.reshape(shape)


def upsample_h2v2_fancy_exact(plane: jax.Array) -> jax.Array:
    """(..., h, w) -> (..., 2h, 2w) with weights 9/16, 3/16, 3/16, 1/16 from the nearest samples.

    Vertically, each output row is 3 * nearest row + next-nearest row (unrounded column sums);
    horizontally, 3 * nearest sum + next-nearest sum, plus 8 for the left output of a pair and 7 for
    the right one, over 16: libjpeg's biases that keep the rounding from drifting one way."""
    above, below = _neighbours(plane, axis=-2)
    colsums = _interleave(3 * plane + above, 3 * plane + below, axis=-2)
    left, right = _neighbours(colsums, axis=-1)
    return _interleave((3 * colsums + left + 8) >> 4, (3 * colsums + right + 7) >> 4, axis=-1)


def upsample_h2v2_fancy_smooth(plane: jax.Array) -> jax.Array:
    above, below = _neighbours(plane, axis=-2)
    colsums = _interleave(3 * plane + above, 3 * plane + below, axis=-2)
    left, right = _neighbours(colsums, axis=-1)
    return _interleave(3 * colsums + left, 3 * colsums + right, axis=-1) / 16.0
