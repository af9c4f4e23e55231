"""Pillow 13's BILINEAR coefficient tables and pass order (libImaging/Resample.c), in plain NumPy.

Both exact resizes read these: the JAX one on the device (jaxprep/resize.py) and the NumPy one on
the host (resize_numpy.py), which stands in for an installed Pillow that resizes differently. This
module imports neither JAX nor Pillow, so that preprocessing worker processes start without JAX.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

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


def horizontal_first(in_height: int, in_width: int, out_height: int, out_width: int) -> bool:
    """Pillow 13's pass order (ImagingResampleInner): the vertical pass goes first only when the
    height shrinks by more than twice as many pixels as the width."""
    shrink_rows, shrink_cols = in_height - out_height, in_width - out_width
    return not (shrink_rows > 0 and shrink_rows > shrink_cols * 2)
