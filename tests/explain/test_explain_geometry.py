"""Boxes cover the image, per-pixel averages are averages, and maps on the model input land where
the reference preprocessing took those pixels from, for non-square images too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxnsfw import preprocess
from jaxnsfw.explain.geometry import (average_over_boxes, box_grid, box_starts, input_map_to_source, seen_part,
                                      source_box_of_input)
from jaxnsfw.explain.scoring import reference_input, source_rgb

IMAGES = Path(__file__).resolve().parents[1] / "data" / "images"


@given(size=st.integers(1, 300), box=st.integers(1, 100), stride=st.integers(1, 60))
def test_boxes_cover_every_pixel_and_stay_inside(size, box, stride):
    starts = box_starts(size, box, stride)
    length = min(box, size)
    assert starts[0] == 0 and starts[-1] == size - length
    assert (np.diff(starts) > 0).all() and (np.diff(starts) <= stride).all()


@settings(max_examples=50)
@given(height=st.integers(1, 40), width=st.integers(1, 40), box=st.integers(1, 20), stride=st.integers(1, 12),
       seed=st.integers(0, 1000))
def test_average_over_boxes_is_the_mean_of_the_covering_boxes(height, width, box, stride, seed):
    boxes = box_grid((height, width), box, stride)
    values = np.random.default_rng(seed).normal(size=len(boxes))
    total, count = np.zeros((height, width)), np.zeros((height, width))
    for (top, left, bottom, right), value in zip(boxes, values):
        total[top:bottom, left:right] += value
        count[top:bottom, left:right] += 1
    if stride <= box:
        assert count.min() >= 1  # with stride > box there are gaps between boxes, left NaN
    with np.errstate(invalid="ignore"):
        expected = np.where(count > 0, total / count, np.nan)
    np.testing.assert_allclose(average_over_boxes(boxes, values, (height, width)), expected, rtol=1e-5, atol=1e-6)


def test_pixels_no_box_covers_are_nan():
    averaged = average_over_boxes(np.array([[1, 2, 3, 5]]), np.array([7.0]), (4, 6))
    assert (averaged[1:3, 2:5] == 7).all()
    assert np.isnan(averaged).sum() == 4 * 6 - 2 * 3


def test_the_model_sees_the_centre_224_of_256_of_each_window():
    windows = np.array([[0, 0, 256, 256], [10, 20, 74, 84], [0, 0, 300, 500]])
    np.testing.assert_array_equal(seen_part(windows), [[16, 16, 240, 240], [14, 24, 70, 80],
                                                       # rows 18.75..281.25, columns 31.25..468.75
                                                       [19, 31, 281, 469]])


@pytest.mark.parametrize("shape", [(300, 500), (500, 300), (100, 150)])
def test_a_map_on_the_model_input_lands_where_those_pixels_came_from(shape):
    """Input pixel (i, j) shows the source at ((i + 16 + 0.5) * H / 256, (j + 16 + 0.5) * W / 256):
    a map equal to the input's own coordinates comes back as that linear function of the source
    coordinates: exactly when upsampling (bilinear interpolation reproduces linear functions), to
    within 0.1 input pixels when Pillow downsamples (its triangle filter sampled at pixel centres
    is not quite symmetric)."""
    height, width = shape
    rows, cols = np.meshgrid(np.arange(224.0), np.arange(224.0), indexing="ij")
    source_rows, source_cols = np.arange(height) + 0.5, np.arange(width) + 0.5
    expected_rows = source_rows * 256 / height - 16 - 0.5  # input row whose centre maps onto it
    expected_cols = source_cols * 256 / width - 16 - 0.5
    top, left, bottom, right = source_box_of_input(shape)
    # Stay clear of the crop's edge by the resize filter's reach: 2 canvas pixels, or 2 source
    # pixels when the source is smaller than the canvas (Pillow then widens the filter).
    row_margin, col_margin = max(height / 128, 2), max(width / 128, 2)
    inner_rows = (source_rows > top + row_margin) & (source_rows < bottom - row_margin)
    inner_cols = (source_cols > left + col_margin) & (source_cols < right - col_margin)
    mapped_rows = input_map_to_source(rows, shape)
    mapped_cols = input_map_to_source(cols, shape)
    np.testing.assert_allclose(mapped_rows[np.ix_(inner_rows, inner_cols)],
                               np.broadcast_to(expected_rows[inner_rows, None], (inner_rows.sum(), inner_cols.sum())),
                               atol=0.1)
    np.testing.assert_allclose(mapped_cols[np.ix_(inner_rows, inner_cols)],
                               np.broadcast_to(expected_cols[None, inner_cols], (inner_rows.sum(), inner_cols.sum())),
                               atol=0.1)
    # Outside what the crop shows the map is 0 (the network never saw those pixels).
    assert not mapped_cols[:, : int(left) - 1].any() and not mapped_rows[int(bottom) + 2:].any()


@pytest.mark.parametrize("name", ["skimage__color.png", "astronaut_cmyk.jpg", "astronaut_1bit.png",
                                  "chelsea_rgba_halftransparent.png", "skimage__no_time_for_that_tiny.gif"])
def test_explanations_start_from_exactly_the_reference_input(name):
    path = IMAGES / name
    np.testing.assert_array_equal(reference_input(source_rgb(path)), preprocess.preprocess(path))
