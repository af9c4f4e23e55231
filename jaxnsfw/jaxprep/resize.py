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
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxnsfw.jaxprep.surrogate import Mode, apply_stage

PRECISION_BITS = 32 - 8 - 2  # Resample.c: fixed-point fraction bits for 8-bit images
BILINEAR_SUPPORT = 1.0


@dataclasses.dataclass(frozen=True)
class AxisTables:
    """How one axis of length `in_size` is resampled to `len(starts)` pixels.

    Output pixel j is sum_k weights[j, k] * input[starts[j] + k] (in 2**-PRECISION_BITS units)."""

    starts: np.ndarray         # (out,) int32: first input pixel of each output pixel
    weights: np.ndarray        # (out, taps) int32: Pillow's fixed-point coefficients, 0-padded
    float_weights: np.ndarray  # (out, taps) float32: the same, normalised, before fixed point


def taps_for(in_size: int, out_size: int) -> int:
    """Pillow's ksize: the most input pixels any output pixel reads."""
    filterscale = max(in_size / out_size, 1.0)
    return int(math.ceil(BILINEAR_SUPPORT * filterscale)) * 2 + 1


def _bilinear(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


@functools.lru_cache(maxsize=4096)
def axis_tables(in_size: int, out_size: int, taps: int | None = None) -> AxisTables:
    """Resample.c's precompute_coeffs + normalize_coeffs_8bpc for box (0, in_size), as arrays.

    `taps` pads the tables to a bucket's width (>= Pillow's own ksize for this size)."""
    ksize = taps_for(in_size, out_size)
    taps = ksize if taps is None else taps
    if taps < ksize:
        raise ValueError(f"{taps} taps cannot hold the {ksize} coefficients of {in_size} -> {out_size}")
    # The box is float in C; (float)in_size - 0.0f is exact for any size an image can have.
    scale = float(np.float32(in_size)) / out_size
    filterscale = max(scale, 1.0)
    support = BILINEAR_SUPPORT * filterscale
    inv_filterscale = 1.0 / filterscale  # C multiplies by the reciprocal; dividing would differ

    center = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)  # C's (int) truncates
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size) - xmin

    k = np.arange(ksize)
    inside = k[None, :] < xmax[:, None]
    weights = np.where(inside, _bilinear(((k[None, :] + xmin[:, None]) - center[:, None] + 0.5)
                                         * inv_filterscale), 0.0)
    total = np.zeros(out_size)
    for tap in range(ksize):  # C sums left to right; np.sum's pairwise order could differ in the ulp
        total = total + weights[:, tap]
    weights = np.where(total[:, None] != 0.0, weights / np.where(total == 0.0, 1.0, total)[:, None], weights)

    scaled = weights * (1 << PRECISION_BITS)
    fixed = np.trunc(np.where(weights < 0, scaled - 0.5, scaled + 0.5)).astype(np.int32)
    padding = ((0, 0), (0, taps - ksize))
    return AxisTables(
        starts=xmin.astype(np.int32),
        weights=np.pad(fixed, padding),
        float_weights=np.pad(weights.astype(np.float32), padding),
    )


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


def horizontal_first(in_height: int, in_width: int, out_height: int, out_width: int) -> bool:
    """Pillow 13's pass order (ImagingResampleInner): the vertical pass goes first only when the
    height shrinks by more than twice as many pixels as the width."""
    shrink_rows, shrink_cols = in_height - out_height, in_width - out_width
    return not (shrink_rows > 0 and shrink_rows > shrink_cols * 2)


def resize_bilinear(image: jax.Array, tables: ResizeTables, horizontal_first: bool,
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
