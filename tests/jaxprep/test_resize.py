"""Pillow 13's BILINEAR resize of 8-bit RGB, reproduced bit for bit: its coefficient tables, its
pass order, each pass alone, and whole resizes of every size (hypothesis) and reference image."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from jaxnsfw.jaxprep import pipeline, resize

from jaxprep_reference import pillow_resample_tables, pillow_resize

resize_jit = jax.jit(resize.resize_bilinear, static_argnames=("horizontal_first", "mode"))


def device_resize(rgb: np.ndarray, size=(256, 256)) -> np.ndarray:
    """The resize as the pipeline runs it: padded to the image's bucket, tables padded to match."""
    height, width = rgb.shape[:2]
    bucket = pipeline.bucket_for(height, width, pipeline.PipelineConfig(resize_to=size))
    padded = pipeline.pad_batch([rgb], bucket, 1)[0]
    tables = resize.resize_tables(height, width, *size, resize.taps_for(bucket.height, size[0]),
                                  resize.taps_for(bucket.width, size[1]))
    return np.asarray(resize_jit(jnp.asarray(padded, jnp.int32), tables, horizontal_first=bucket.horizontal_first))


@pytest.mark.parametrize("in_size, out_size", [(1, 256), (37, 256), (255, 256), (256, 256), (257, 256),
                                               (300, 256), (1000, 256), (8192, 256), (10000, 256), (5, 3)])
def test_coefficient_tables_are_pillows(in_size, out_size):
    starts, weights = pillow_resample_tables(in_size, out_size)
    tables = resize.axis_tables(in_size, out_size)
    np.testing.assert_array_equal(tables.starts, starts)
    for j, row in enumerate(weights):
        np.testing.assert_array_equal(tables.weights[j, :len(row)], row)
        assert not tables.weights[j, len(row):].any()
    assert tables.weights.shape[1] == resize.taps_for(in_size, out_size)


def test_fixed_point_weights_sum_to_one_within_rounding():
    tables = resize.axis_tables(3000, 256)
    sums = tables.weights.sum(axis=1)
    assert np.all(np.abs(sums - (1 << resize.PRECISION_BITS)) <= tables.weights.shape[1])


def test_an_unchanged_axis_has_identity_tables():
    """Pillow skips a pass whose size does not change; identity tables make running it a no-op."""
    tables = resize.axis_tables(256, 256)
    np.testing.assert_array_equal(tables.starts, np.arange(256))
    np.testing.assert_array_equal(tables.weights[:, 0], 1 << resize.PRECISION_BITS)
    assert not tables.weights[:, 1:].any()


@pytest.mark.parametrize("shape, expected", [((500, 400), True), ((400, 500), True), ((300, 257), False),
                                             ((1000, 37), False), ((37, 1000), True), ((600, 300), False),
                                             ((200, 100), True), ((100, 120), True), ((256, 256), True)])
def test_pass_order_is_pillow_13s(shape, expected):
    """Vertical first iff the height shrinks by more than twice as many pixels as the width."""
    assert resize.horizontal_first(*shape, 256, 256) is expected


@pytest.mark.parametrize("shape", [(300, 257), (500, 400), (1000, 37)])
def test_pass_order_matters_and_matches_pillow(shape):
    rgb = np.random.default_rng(1).integers(0, 256, shape + (3,), dtype=np.uint8)
    tables = resize.resize_tables(*shape, 256, 256)
    ours = {order: np.asarray(resize_jit(jnp.asarray(rgb, jnp.int32), tables, horizontal_first=order))
            for order in (True, False)}
    assert (ours[True] != ours[False]).any()  # the test can tell the orders apart
    np.testing.assert_array_equal(ours[resize.horizontal_first(*shape, 256, 256)], pillow_resize(rgb))


@pytest.mark.parametrize("shape, size", [((40, 700), (40, 256)), ((700, 40), (256, 40)), ((3, 5), (3, 256))])
def test_single_pass_matches_pillow(shape, size):
    """Only one axis changes: Pillow runs one pass, which pins each pass on its own."""
    rgb = np.random.default_rng(2).integers(0, 256, shape + (3,), dtype=np.uint8)
    np.testing.assert_array_equal(device_resize(rgb, size), pillow_resize(rgb, size))


def _content(kind: str, height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "flat":
        return np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (height, width, 3)).copy()
    if kind == "noise":
        return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    y = np.linspace(0, 1, height)[:, None, None]
    x = np.linspace(0, 1, width)[None, :, None]
    ramp = (rng.uniform(0, 255, 3) * y + rng.uniform(0, 255, 3) * x) % 256
    return ramp.astype(np.uint8)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(height=st.integers(1, 2000), width=st.integers(1, 3000),
       kind=st.sampled_from(["flat", "noise", "gradient"]), seed=st.integers(0, 2**16))
def test_any_size_and_content_is_bit_identical_to_pillow(height, width, kind, seed):
    rgb = _content(kind, height, width, seed)
    np.testing.assert_array_equal(device_resize(rgb), pillow_resize(rgb))


def test_every_reference_image_resizes_as_pillow(shared_reference):
    """The pipeline's resize (bucketed, batched) on every decodable file of the Caffe reference."""
    images, names = [], []
    for path in sorted((shared_reference / "images").glob("*/*")):
        try:
            images.append(pipeline.decoded_rgb(path))
            names.append(path.name)
        except pipeline.preprocess.ImageError:
            continue  # the truncated JPEG and the unreadable TIFF, which the reference rejects too
    assert len(images) >= 75
    ours = pipeline.DevicePreprocessor().resized(images)
    differing = [name for name, mine, rgb in zip(names, ours, images) if (mine != pillow_resize(rgb)).any()]
    assert differing == []
