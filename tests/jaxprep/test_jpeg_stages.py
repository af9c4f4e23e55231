"""Each stage of libjpeg-turbo's encode/decode, pinned on its own, so a regression names the stage:
quantization tables and rounding, colour conversion both ways, chroma down/upsampling, and the
islow DCTs (through Pillow's own codec on 8x8 greyscale images, where nothing else happens)."""

from __future__ import annotations

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxnsfw.jaxprep import colour, dct, jpeg, quantize, sampling
from jaxnsfw.jaxprep.surrogate import Mode

from jaxprep_reference import (libjpeg_downsample_h2v2, libjpeg_rgb_to_ycc, libjpeg_turbo_quantize,
                               libjpeg_upsample_h2v2_fancy, libjpeg_ycc_to_rgb, pillow_jpeg_round_trip)

ALL_RGB_SAMPLE = np.random.default_rng(0).integers(0, 256, (4096, 3))
ONES = [[1] * 64]


def test_default_tables_are_the_ones_pillow_writes():
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="JPEG")
    with Image.open(buffer) as saved:
        tables = saved.quantization  # natural (row-major) order in Pillow >= 8.3
    np.testing.assert_array_equal(np.reshape(tables[0], (8, 8)), quantize.LUMINANCE_TABLE)
    np.testing.assert_array_equal(np.reshape(tables[1], (8, 8)), quantize.CHROMINANCE_TABLE)


def test_quality_scaling_follows_jcparam():
    assert [quantize.quality_scaling(q) for q in (1, 10, 49, 50, 75, 100)] == [5000, 500, 102, 100, 50, 0]
    assert quantize.scaled_table(quantize.STD_LUMINANCE, 100).min() == 1
    assert quantize.scaled_table(quantize.STD_LUMINANCE, 1).max() == 255  # force_baseline


@pytest.mark.parametrize("table", [quantize.LUMINANCE_TABLE, quantize.CHROMINANCE_TABLE], ids=["luma", "chroma"])
def test_rounded_division_equals_libjpeg_turbos_reciprocal_quantizer_for_every_input(table):
    """Every coefficient the 8-bit forward DCT can produce (|c| < 2**15), at every table entry."""
    coefficients = np.arange(-(2**15) + 1, 2**15)[:, None, None] * np.ones((8, 8), np.int64)
    ours = np.asarray(quantize.quantize_exact(jnp.asarray(coefficients, jnp.int32), jnp.asarray(table)))
    np.testing.assert_array_equal(ours, libjpeg_turbo_quantize(coefficients, table))


def test_rgb_to_ycbcr_is_jccolors():
    ours = np.asarray(colour.rgb_to_ycbcr_exact(jnp.asarray(ALL_RGB_SAMPLE, jnp.int32)))
    np.testing.assert_array_equal(ours, libjpeg_rgb_to_ycc(ALL_RGB_SAMPLE))


def test_ycbcr_to_rgb_is_jdcolors():
    ours = np.asarray(colour.ycbcr_to_rgb_exact(jnp.asarray(ALL_RGB_SAMPLE, jnp.int32)))
    np.testing.assert_array_equal(ours, libjpeg_ycc_to_rgb(ALL_RGB_SAMPLE))


def test_both_colour_conversions_through_pillows_codec():
    """Flat 16x16 colours, 4:4:4, all-ones tables: the DCTs and quantization are then exact, so
    Pillow's round trip is ycc->rgb(rgb->ycc(colour)) alone."""
    colours = ALL_RGB_SAMPLE[:256]
    tiles = np.repeat(np.repeat(colours.reshape(16, 16, 3).astype(np.uint8), 16, 0), 16, 1)
    decoded = pillow_jpeg_round_trip(tiles, qtables=ONES * 2, subsampling=0)[::16, ::16].reshape(-1, 3)
    ycc = colour.rgb_to_ycbcr_exact(jnp.asarray(colours, jnp.int32))
    np.testing.assert_array_equal(np.asarray(colour.ycbcr_to_rgb_exact(ycc)), decoded)


def test_h2v2_downsampling_is_jcsamples():
    plane = np.random.default_rng(3).integers(0, 256, (16, 24))
    ours = np.asarray(sampling.downsample_h2v2_exact(jnp.asarray(plane, jnp.int32)))
    np.testing.assert_array_equal(ours, libjpeg_downsample_h2v2(plane))


def test_downsampling_bias_alternates_along_a_row():
    """(0+0+0+2 + bias) >> 2 is 0 with bias 1 (even columns) and 1 with bias 2 (odd columns)."""
    plane = jnp.asarray(np.tile([[0, 0], [0, 2]], (1, 4)), jnp.int32)
    assert np.asarray(sampling.downsample_h2v2_exact(plane)).tolist() == [[0, 1, 0, 1]]


def test_h2v2_fancy_upsampling_is_jdsamples():
    plane = np.random.default_rng(4).integers(0, 256, (8, 12))
    ours = np.asarray(sampling.upsample_h2v2_fancy_exact(jnp.asarray(plane, jnp.int32)))
    np.testing.assert_array_equal(ours, libjpeg_upsample_h2v2_fancy(plane))


def _greyscale_codec(block: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Our forward DCT, quantizer and inverse DCT on one 8x8 block."""
    samples = jnp.asarray(block, jnp.int32)
    q = quantize.quantize_exact(dct.fdct_islow(samples), jnp.asarray(table))
    return np.asarray(dct.idct_islow(quantize.dequantize(q, jnp.asarray(table))))


BLOCKS = {
    "noise": np.random.default_rng(5).integers(0, 256, (8, 8)),
    "extremes": np.where(np.indices((8, 8)).sum(0) % 2, 255, 0),
    "ramp": np.arange(64).reshape(8, 8) * 4,
    "flat": np.full((8, 8), 200),
}


@pytest.mark.parametrize("name", BLOCKS)
@pytest.mark.parametrize("table_name", ["ones", "luma", "chroma", "coarse"])
def test_islow_dct_and_quantization_through_pillows_greyscale_codec(name, table_name):
    """A greyscale 8x8 JPEG is one block through fdct, quantize, dequantize, idct and nothing else.
    All-ones tables expose the DCTs' own rounding; a coarse table exercises the clipping."""
    table = {"ones": np.ones((8, 8), np.int32), "luma": quantize.LUMINANCE_TABLE,
             "chroma": quantize.CHROMINANCE_TABLE, "coarse": np.full((8, 8), 255, np.int32)}[table_name]
    block = BLOCKS[name].astype(np.uint8)
    decoded = pillow_jpeg_round_trip(block, qtables=[table.reshape(-1).tolist()])
    np.testing.assert_array_equal(_greyscale_codec(block, table), decoded)


def test_forward_dct_is_eight_times_the_orthonormal_dct_within_rounding():
    block = jnp.asarray(BLOCKS["noise"], jnp.int32)
    exact = np.asarray(dct.fdct_islow(block))
    real = np.asarray(dct.fdct_smooth(block.astype(jnp.float32)))
    assert np.abs(exact - real).max() <= 2.0


def test_inverse_dct_inverts_the_forward_dct_within_rounding():
    block = jnp.asarray(BLOCKS["noise"], jnp.int32)
    coefficients = (dct.fdct_islow(block) + 4) >> 3  # back to JPEG's scale, as an all-ones table
    assert np.abs(np.asarray(dct.idct_islow(coefficients)) - BLOCKS["noise"]).max() <= 1


def test_inverse_dct_saturates_out_of_range_values():
    """A lone huge DC coefficient decodes to 255 everywhere (and its negation to 0)."""
    dc = jnp.zeros((8, 8), jnp.int32).at[0, 0].set(4000)
    assert (np.asarray(dct.idct_islow(dc)) == 255).all()
    assert (np.asarray(dct.idct_islow(-dc)) == 0).all()


def test_smooth_stages_track_the_exact_ones():
    """The gradient stand-ins compute what the integer code rounds: each within a rounding step."""
    rgb = jnp.asarray(np.random.default_rng(6).integers(0, 256, (32, 32, 3)), jnp.int32)
    pairs = [(colour.rgb_to_ycbcr_exact, colour.rgb_to_ycbcr_smooth, 1.0),
             (colour.ycbcr_to_rgb_exact, colour.ycbcr_to_rgb_smooth, 1.0),
             (lambda x: sampling.downsample_h2v2_exact(x[..., 0]),
              lambda x: sampling.downsample_h2v2_smooth(x[..., 0]), 0.75),
             (lambda x: sampling.upsample_h2v2_fancy_exact(x[..., 0]),
              lambda x: sampling.upsample_h2v2_fancy_smooth(x[..., 0]), 0.5)]
    for exact, smooth, tolerance in pairs:
        difference = np.asarray(exact(rgb)) - np.asarray(smooth(rgb.astype(jnp.float32)))
        assert np.abs(difference).max() <= tolerance


def test_round_trip_rejects_partial_mcus():
    with pytest.raises(ValueError, match="16x16"):
        jpeg.jpeg_round_trip(jnp.zeros((24, 32, 3), jnp.int32), Mode.EXACT)
