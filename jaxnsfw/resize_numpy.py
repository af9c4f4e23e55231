"""Pillow 13's BILINEAR `Image.resize` of 8-bit images, in NumPy on the host, bit for bit.

The stand-in for an installed Pillow whose resize differs from Pillow 13's (before 13, Pillow
always ran the horizontal pass first). It reads the same coefficient tables and pass order as the
device resize (bilinear_tables.py) and does Resample.c's integer arithmetic: each output pixel is
an int32 sum of pixel * fixed-point weight, started at 1/2 so that the shift rounds, then shifted
right by PRECISION_BITS and clipped to 0..255; the first pass is rounded to uint8 before the second.
No JAX and no Pillow here: preprocessing worker processes import this.
"""

from __future__ import annotations

import numpy as np

from jaxnsfw.bilinear_tables import PRECISION_BITS, axis_tables, horizontal_first


def resample_leading_axis(pixels: np.ndarray, out_size: int) -> np.ndarray:
    """One Pillow pass along axis 0 of uint8 pixels: (in, ...) -> (out, ...) uint8."""
    tables = axis_tables(pixels.shape[0], out_size)
    # Gathering whole leading-axis rows keeps every gather a contiguous copy; the loop is over the
    # taps (at most 2 * in / out + 3 of them), not over pixels.
    shape = (out_size,) + (1,) * (pixels.ndim - 1)
    total = np.full((out_size,) + pixels.shape[1:], 1 << (PRECISION_BITS - 1), np.int32)
    last = pixels.shape[0] - 1
    for tap in range(tables.weights.shape[1]):
        weights = tables.weights[:, tap]
        if not weights.any():
            continue
        # Beyond a pixel's support the weight is 0, so clipping its index there changes nothing.
        rows = np.take(pixels, np.minimum(tables.starts + tap, last), axis=0)
        # 255 * 2**22 and any sum of weights (which add up to 2**22) fit in int32, as in C.
        total += rows.astype(np.int32) * weights.reshape(shape)
    # clip8(): an arithmetic (flooring) shift, then saturation.
    return np.clip(total >> PRECISION_BITS, 0, 255).astype(np.uint8)


def resize_bilinear(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) uint8 -> (height, width, C) uint8 = size, as Pillow 13's `resize(size[::-1], BILINEAR)`.

    A pass whose axis keeps its size is skipped, as Pillow skips it (its tables are the identity)."""
    in_height, in_width = pixels.shape[:2]
    out_height, out_width = size

    def vertical(x: np.ndarray) -> np.ndarray:
        return x if x.shape[0] == out_height else resample_leading_axis(x, out_height)

    def horizontal(x: np.ndarray) -> np.ndarray:
        if x.shape[1] == out_width:
            return x
        # Columns to the leading axis, copied contiguous: gathering strided rows is ~10x slower.
        columns = np.ascontiguousarray(np.swapaxes(x, 0, 1))
        return np.swapaxes(resample_leading_axis(columns, out_width), 0, 1)

    first, second = ((horizontal, vertical) if horizontal_first(in_height, in_width, out_height, out_width)
                     else (vertical, horizontal))
    return np.ascontiguousarray(second(first(np.asarray(pixels, np.uint8))))
