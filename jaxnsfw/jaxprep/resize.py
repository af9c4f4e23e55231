"""Pillow's BILINEAR `Image.resize` of 8-bit images (libImaging/Resample.c), as table-driven JAX.

Pillow resamples separably. For each output pixel of one axis it computes, in double precision, the
filter weights of the input pixels under a triangle whose support is widened by the scale when
shrinking (so every input pixel contributes: an area-averaging resize, not a 4-tap one), normalises
them to sum to 1 and rounds them to fixed point with PRECISION_BITS = 22 fraction bits. The first
pass is rounded and clipped to uint8 before the second. Which pass runs first is Pillow 13's choice
(`horizontal_first`): vertical first when the height shrinks by more than twice as many pixels as the
width does, horizontal first otherwise; the order changes the bits. A pass whose
size does not change is skipped; its tables would be the identity (weight 1.0 on the same pixel), so
always running both passes gives the same bits. Plain `resize()` (reducing_gap=None) never takes
the `reduce()` shortcut, and RGB images are not premultiplied.

The tables depend only on (input size, output size); they are computed on the host with NumPy in
Pillow's order of operations and passed to the device as arrays, so images of different sizes padded
to one bucket share one compiled program. Padding is never read: weights beyond a pixel's support
are zero and indices are clipped into the padded array.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

# The tables and the pass order are host-side NumPy, shared with the JAX-free NumPy resize
# (resize_numpy.py); re-exported here, where the device resize's callers look for them.
from jaxnsfw.bilinear_tables import (  # noqa: F401
    BILINEAR_SUPPORT,
    PRECISION_BITS,
    AxisTables,
    axis_tables,
    horizontal_first,
    taps_for,
)
from jaxnsfw.jaxprep.surrogate import Mode, apply_stage


def _resample_leading_axis(image: jax.Array, starts: jax.Array, weights: jax.Array) -> jax.Array:
    """sum_k weights[j, k] * image[starts[j] + k] for every j: one pass along axis 0.

    Gathering whole rows of the leading axis keeps every gather a contiguous copy. The taps are
    unrolled (at most 2 * side / 256 + 1 of them) so that XLA fuses the gathers, products and sum
    into one loop over the output instead of re-reading an accumulator once per tap (1.7-3x
    faster on CPU than a fori_loop, and no (out, taps, ...) intermediate either)."""
    shape = (weights.shape[0],) + (1,) * (image.ndim - 1)
    total = None
    for tap in range(weights.shape[1]):
        rows = jnp.take(image, starts + tap, axis=0, mode="clip").astype(weights.dtype)
        term = rows * weights[:, tap].reshape(shape)
        total = term if total is None else total + term
    assert total is not None  # at least one tap
    return total


def resample_pass_exact(image: jax.Array, starts: jax.Array, weights: jax.Array) -> jax.Array:
    """One Pillow pass on int32 pixels: accumulate from 1/2 (rounding), shift, clip to 0..255."""
    total = _resample_leading_axis(image, starts, weights) + (1 << (PRECISION_BITS - 1))
    # clip8(): Pillow indexes a table with ss >> PRECISION_BITS (an arithmetic, flooring shift).
    return jnp.clip(jnp.right_shift(total, PRECISION_BITS), 0, 255)


def resample_pass_smooth(image: jax.Array, starts: jax.Array, weights: jax.Array) -> jax.Array:
    return jnp.clip(_resample_leading_axis(image, starts, weights), 0.0, 255.0)


@dataclasses.dataclass(frozen=True)
class ResizeTables:
    """Device-side tables of one image (or, with a leading batch axis, of a batch)."""

    row_starts: jax.Array | np.ndarray    # vertical pass
    row_weights: jax.Array | np.ndarray
    row_float_weights: jax.Array | np.ndarray
    col_starts: jax.Array | np.ndarray    # horizontal pass
    col_weights: jax.Array | np.ndarray
    col_float_weights: jax.Array | np.ndarray


jax.tree_util.register_dataclass(
    ResizeTables,
    data_fields=[f.name for f in dataclasses.fields(ResizeTables)],
    meta_fields=[],
)


def resize_tables(in_height: int, in_width: int, out_height: int, out_width: int,
                  row_taps: int | None = None, col_taps: int | None = None) -> ResizeTables:
    rows = axis_tables(in_height, out_height, row_taps)
    cols = axis_tables(in_width, out_width, col_taps)
    return ResizeTables(rows.starts, rows.weights, rows.float_weights,
                        cols.starts, cols.weights, cols.float_weights)


# The parameter is the value of the re-exported horizontal_first() for this image, hence the shadowing (F811).
def resize_bilinear(image: jax.Array, tables: ResizeTables, horizontal_first: bool,  # noqa: F811
           mode: Mode = Mode.EXACT) -> jax.Array:
    """(H, W, C) pixels (any zero padding beyond the image is ignored) -> (out_h, out_w, C).

    `horizontal_first` (static) must be `horizontal_first(H, W, out_h, out_w)` of the real size.
    EXACT: int32 in and out, bit-identical to Pillow's `Image.resize(size, Image.BILINEAR)`."""
    def horizontal(resample_pass, weights):
        # Resampling gathers along the leading axis (contiguous rows), so columns go there and back.
        def run(x):
            return jnp.swapaxes(resample_pass(jnp.swapaxes(x, 0, 1), tables.col_starts, weights), 0, 1)
        return run

    def vertical(resample_pass, weights):
        return lambda x: resample_pass(x, tables.row_starts, weights)

    passes = [
        (horizontal(resample_pass_exact, tables.col_weights),
         horizontal(resample_pass_smooth, tables.col_float_weights)),
        (vertical(resample_pass_exact, tables.row_weights),
         vertical(resample_pass_smooth, tables.row_float_weights)),
    ]
    if not horizontal_first:
        passes.reverse()
    for exact, smooth in passes:  # the first pass's output is rounded to uint8 values, as Pillow's
        image = apply_stage(mode, exact, smooth, image)
    return image
