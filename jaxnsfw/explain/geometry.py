"""Where things land: boxes on the source image, and the reference preprocessing's geometry.

The reference preprocessing resizes the whole source image (H x W, any aspect ratio) to 256 x 256
and keeps the centre 224 x 224. Pillow's resize maps pixel centres half-pixel style, so in
continuous coordinates the model input covers source rows [16/256 * H, 240/256 * H) and columns
[16/256 * W, 240/256 * W); a 1/16 rim of every image is never seen by the network.

Boxes are int arrays of (top, left, bottom, right), bottom/right exclusive, in source pixels.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image

from jaxnsfw.constants import CROP, RESIZE


@dataclasses.dataclass(frozen=True)
class InputGeometry:
    """How a model input sits in its source image: the source is resized to `resize` x `resize`
    (aspect ratio ignored) and the centred `crop` x `crop` square is the input."""

    resize: int = RESIZE[0]
    crop: int = CROP

    @property
    def offset(self) -> int:
        return (self.resize - self.crop) // 2


REFERENCE_GEOMETRY = InputGeometry()


def box_starts(size: int, box: int, stride: int) -> np.ndarray:
    """Offsets of `box`-pixel boxes every `stride` pixels along an axis of `size` pixels.

    The last box is moved flush with the far edge when the stride does not land there, so with
    stride <= box every pixel is covered; a box longer than the axis is clipped to it."""
    if box < 1 or stride < 1:
        raise ValueError(f"box and stride must be positive, got box={box} stride={stride}")
    box = min(box, size)
    starts = list(range(0, size - box + 1, stride))
    if starts[-1] != size - box:
        starts.append(size - box)
    return np.asarray(starts)


def box_grid(shape: tuple[int, int], box: int, stride: int) -> np.ndarray:
    """(N, 4) boxes (top, left, bottom, right) of `box` x `box` pixels every `stride` pixels, row-major."""
    height, width = shape
    tops, lefts = box_starts(height, box, stride), box_starts(width, box, stride)
    top, left = np.meshgrid(tops, lefts, indexing="ij")
    top, left = top.ravel(), left.ravel()
    return np.stack([top, left, top + min(box, height), left + min(box, width)], axis=1)


def average_over_boxes(boxes: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Per pixel, the mean of `values` over the boxes that cover it; NaN where no box does.

    Summed with 2-D difference arrays (a +v/-v at each box corner, then cumulative sums), so the
    cost is O(boxes + pixels) rather than O(boxes * box area)."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(boxes) != len(values):
        raise ValueError(f"{len(boxes)} boxes but {len(values)} values")
    height, width = shape
    boxes = np.clip(boxes, 0, [height, width, height, width])
    nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, values = boxes[nonempty], values[nonempty]
    totals = np.zeros((height + 1, width + 1))
    counts = np.zeros((height + 1, width + 1))
    top, left, bottom, right = boxes.T
    for grid, weight in ((totals, values), (counts, np.ones_like(values))):
        np.add.at(grid, (top, left), weight)
        np.add.at(grid, (top, right), -weight)
        np.add.at(grid, (bottom, left), -weight)
        np.add.at(grid, (bottom, right), weight)
    totals = totals.cumsum(0).cumsum(1)[:height, :width]
    counts = np.rint(counts.cumsum(0).cumsum(1)[:height, :width])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan).astype(np.float32)


def _seen_pixels(start: np.ndarray, length: np.ndarray, geometry: InputGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Along one axis: the pixels of a window [start, start + length) whose centres fall inside the
    part of the window that survives the resize to `geometry.resize` and the centre crop."""
    low = start + length * geometry.offset / geometry.resize
    high = start + length * (geometry.offset + geometry.crop) / geometry.resize
    # pixel p (centre p + 0.5) is seen when low <= p + 0.5 < high
    return np.ceil(low - 0.5).astype(np.int64), np.ceil(high - 0.5).astype(np.int64)


def seen_part(boxes: np.ndarray, geometry: InputGeometry = REFERENCE_GEOMETRY) -> np.ndarray:
    """For windows that are each preprocessed as a whole image: the part of each window the model
    sees after the resize and the centre crop, as boxes in the same source coordinates."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    top, bottom = _seen_pixels(boxes[:, 0], boxes[:, 2] - boxes[:, 0], geometry)
    left, right = _seen_pixels(boxes[:, 1], boxes[:, 3] - boxes[:, 1], geometry)
    return np.stack([top, left, bottom, right], axis=1)


def input_map_to_source(values: np.ndarray, shape: tuple[int, int],
                        geometry: InputGeometry = REFERENCE_GEOMETRY) -> np.ndarray:
    """A map on the model-input grid (crop x crop) drawn back onto the H x W source image.

    The map is placed at the crop's position in the resize x resize canvas (zero elsewhere: the
    network never sees the rim) and the canvas is resized to the source size with Pillow's
    bilinear filter, which maps pixel centres the same way the preprocessing's resize did. This is
    an interpolation of the map, not the adjoint of the resize (nor of the JPEG round trip)."""
    values = np.asarray(values, dtype=np.float32)
    if values.shape != (geometry.crop, geometry.crop):
        raise ValueError(f"expected a {geometry.crop}x{geometry.crop} map, got {values.shape}")
    canvas = np.zeros((geometry.resize, geometry.resize), np.float32)
    o = geometry.offset
    canvas[o:o + geometry.crop, o:o + geometry.crop] = values
    height, width = shape
    resized = Image.fromarray(canvas).resize((width, height), resample=Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)


def source_box_of_input(shape: tuple[int, int], geometry: InputGeometry = REFERENCE_GEOMETRY) -> tuple[float, ...]:
    """(top, left, bottom, right) in continuous source coordinates of what the model input shows."""
    height, width = shape
    low, high = geometry.offset / geometry.resize, (geometry.offset + geometry.crop) / geometry.resize
    return low * height, low * width, high * height, high * width


def default_stride(box: int) -> int:
    """A quarter box: every pixel is covered by ~16 boxes, enough to smooth box edges."""
    return max(1, math.ceil(box / 4))
